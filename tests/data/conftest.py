import pytest

from ._standins import FRACTIONS, NoiseThresholdProcess


@pytest.fixture
def process():
    return NoiseThresholdProcess(size=12)


@pytest.fixture
def fractions():
    return FRACTIONS
