"""Set-up for the doctests of ``psppyro/`` (``python -m pytest`` collects them: see setup.cfg).

The tests under ``tests/`` have their own ``tests/conftest.py``; this file only gives every
docstring example the same fresh state: Pyro validation on, an empty parameter store, a fixed
global seed and one torch thread, so an example's output and speed do not depend on which examples
ran before it or on how busy the machine is.
"""

import os

import pyro
import pytest
import torch
from _pytest.doctest import DoctestItem

# The examples are tiny: intra-op parallelism does not pay for them, and on a busy 2-core machine
# two spinning OpenMP threads per op made the flow example ~10x slower in CPU time (measured:
# run_flow's example 1.6 s of CPU on one thread, 19 s on two). PSPPYRO_DOCTEST_THREADS overrides.
DOCTEST_THREADS = int(os.environ.get("PSPPYRO_DOCTEST_THREADS", "1"))


@pytest.fixture(autouse=True)
def _doctest_state(request):
    """Fresh Pyro state, seed 0 and one torch thread around each docstring example."""
    if not isinstance(request.node, DoctestItem):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(DOCTEST_THREADS)
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    try:
        yield
    finally:
        pyro.clear_param_store()
        torch.set_num_threads(threads)
