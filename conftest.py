"""Set-up for the doctests of ``psppyro/`` (``python -m pytest`` collects them: see setup.cfg).

The tests under ``tests/`` have their own ``tests/conftest.py``; this file only gives every
docstring example the same fresh state: Pyro validation on, an empty parameter store and a fixed
global seed, so an example's output does not depend on which examples ran before it.
"""

import os

import pyro
import pytest
import torch
from _pytest.doctest import DoctestItem

# Keep doctest runs predictable on a 2-core machine (the same default as tests/conftest.py).
torch.set_num_threads(int(os.environ.get("PSPPYRO_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _doctest_state(request):
    """Fresh Pyro state and seed 0 around each docstring example (tests are left alone)."""
    if not isinstance(request.node, DoctestItem):
        yield
        return
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
