import math

import pytest
import torch

from psppyro.process import correlation_length, two_point_correlation


def _direct_s2(x):
    """S2(r) = mean_j x_j x_{j+r} by explicit circular shifts (a second implementation)."""
    ndim = x.dim()
    out = torch.empty_like(x)
    for r in torch.cartesian_prod(*[torch.arange(n) for n in x.shape]).reshape(-1, ndim).tolist():
        shifted = torch.roll(x, tuple(-v for v in r), tuple(range(ndim)))
        out[tuple(r)] = (x * shifted).mean()
    return out


@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3)])
def test_two_point_correlation_matches_direct_sum(shape):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((3,) + shape, generator=gen) < 0.4).double()
    S2 = two_point_correlation(x, ndim=len(shape))
    assert S2.shape == x.shape
    for b in range(3):
        torch.testing.assert_close(S2[b], _direct_s2(x[b]), rtol=1e-12, atol=1e-12)
    # S2(0) is the volume fraction of phase 1 for binary images
    origin = (slice(None),) + (0,) * len(shape)
    torch.testing.assert_close(S2[origin], x.mean(tuple(range(1, x.dim()))))


def test_correlation_length_of_stripes_and_interpolation():
    x = torch.zeros(8, 8)
    x[:, :4] = 1.0  # vertical stripes: constant along axis -2, square wave of period 8 along -1
    # along -1: C(r) = 1 - r/2 -> crosses 1/e between r = 1 (0.5) and r = 2 (0)
    expected = 1 + (0.5 - math.exp(-1)) / 0.5
    assert float(correlation_length(x, axis=-1)) == pytest.approx(expected, rel=1e-6)
    assert float(correlation_length(x, axis=1)) == pytest.approx(expected, rel=1e-6)
    assert float(correlation_length(x, axis=-2)) == 4.0  # never decorrelates: censored at N/2
    assert float(correlation_length(x.T, axis=-2)) == pytest.approx(expected, rel=1e-6)


def test_correlation_length_of_ar1_field():
    """An AR(1) sequence along x with coefficient a has C(r) = a^r: length = 1/ln(1/a) in theory.

    Estimated from 400 rows of 256 pixels; for a = exp(-1/3) the true length is 3 (C(3) = 1/e).
    The estimator's spread is a few percent here; 10 % tolerance.
    """
    a, n, rows = math.exp(-1 / 3), 256, 400
    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(rows, n + 200, generator=gen, dtype=torch.float64)
    y = torch.zeros_like(eps)
    for j in range(1, n + 200):
        y[:, j] = a * y[:, j - 1] + math.sqrt(1 - a**2) * eps[:, j]
    field = y[:, 200:].reshape(1, rows, n)  # one image; rows are independent along axis -2
    length = correlation_length(field, axis=-1)
    # the periodic wrap joins two independent ends: a negligible (a^128) effect at this length
    assert float(length) == pytest.approx(3.0, rel=0.1)
    assert float(correlation_length(field, axis=-2)) < 0.7  # rows are independent


def test_batched_3d_and_edge_cases():
    x = torch.zeros(2, 6, 6, 6)
    x[0, :3] = 1.0  # layers along axis -3
    x[1, :, :, :3] = 1.0  # layers along axis -1
    L = torch.stack([correlation_length(x, axis=a, ndim=3) for a in (-3, -2, -1)], -1)
    assert L.shape == (2, 3)
    assert L[0, 1] == 3.0 and L[0, 2] == 3.0 and L[0, 0] < 3.0
    assert L[1, 0] == 3.0 and L[1, 1] == 3.0 and L[1, 2] < 3.0
    assert torch.isnan(correlation_length(torch.ones(5, 5)))  # constant image: undefined


def test_bad_inputs():
    with pytest.raises(ValueError, match="axis must be one of the spatial axes"):
        correlation_length(torch.zeros(3, 4, 4), axis=0)
    with pytest.raises(ValueError, match="axis must be one of the spatial axes"):
        correlation_length(torch.zeros(4, 4), axis=-3)
    with pytest.raises(ValueError, match="ndim"):
        two_point_correlation(torch.zeros(4, 4), ndim=4)
    with pytest.raises(ValueError, match="at least ndim=3"):
        two_point_correlation(torch.zeros(4, 4), ndim=3)
    with pytest.raises(ValueError, match="x must be finite"):
        two_point_correlation(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))
