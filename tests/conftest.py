"""Shared test set-up, modelled on Pyro's own ``tests/conftest.py``."""

import os

import pyro
import pytest
import torch

# Keep test runs predictable on a 2-core machine.
torch.set_num_threads(int(os.environ.get("PSPPYRO_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _pyro_state():
    """Validation on, fresh parameter store and a fixed global seed for every test."""
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
