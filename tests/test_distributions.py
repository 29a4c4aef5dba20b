"""PercolatedNormal and the Normal box probability with infinite ends: hand formulas, Monte Carlo,
finite gradients."""

import math

import pytest
import torch
from torch.special import ndtr

from psppyro.distributions import PercolatedNormal, log_normal_box

INF = math.inf


def _toy(dtype=torch.float64, requires_grad=False):
    logits = torch.tensor([0.4, -1.0, 3.0], dtype=dtype, requires_grad=requires_grad)
    loc = torch.tensor([-5.0, -7.0, 0.3], dtype=dtype, requires_grad=requires_grad)
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=dtype, requires_grad=requires_grad)
    return logits, loc, scale


def _hand_box(logits, loc, scale, mask, low, high):
    p = torch.where(mask, torch.sigmoid(logits), torch.ones_like(logits))
    inside = p * (ndtr((high - loc) / scale) - ndtr((low - loc) / scale))
    return torch.log(torch.where(torch.isneginf(low), 1 - p, torch.zeros_like(p)) + inside).sum()


@pytest.mark.parametrize(
    "low, high",
    [
        ([-INF, -7.5, -1.0], [-4.0, -6.0, 2.0]),  # blocked allowed in component 0
        ([-INF, -INF, -INF], [INF, INF, INF]),  # everything: probability 1
        ([-6.0, -INF, 0.0], [INF, -6.5, INF]),  # blocked excluded in 0, allowed in 1
        ([-6.0, -8.0, -3.0], [-4.0, -6.0, 3.0]),  # finite box: blocked excluded everywhere
    ],
)
def test_box_log_prob_matches_hand_formula_and_monte_carlo(low, high):
    logits, loc, scale = _toy()
    mask = torch.tensor([True, True, False])
    d = PercolatedNormal(logits, loc, scale, blocked_mask=mask)
    low, high = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
    got = d.box_log_prob(low, high)
    torch.testing.assert_close(got, _hand_box(logits, loc, scale, mask, low, high))
    # Monte Carlo: 200 000 draws, binomial SE; 4 SE tolerance.
    torch.manual_seed(0)
    m = d.sample((200_000,))
    assert bool(torch.isneginf(m[:, 2]).any()) is False  # the unblockable component never blocks
    frac = ((m >= low) & (m <= high)).all(-1).double().mean()
    p = float(got.exp())
    se = math.sqrt(max(p * (1 - p), 1e-12) / m.shape[0])
    assert abs(float(frac) - p) < 4 * se + 1e-12, (float(frac), p)


def test_blocking_frequency_and_log_prob_of_blocked_entries():
    logits, loc, scale = _toy()
    d = PercolatedNormal(logits, loc, scale, blocked_mask=torch.tensor([True, True, False]))
    torch.manual_seed(1)
    m = d.sample((100_000,))
    freq = torch.isneginf(m).double().mean(0)
    q = torch.tensor([1 - torch.sigmoid(logits[0]), 1 - torch.sigmoid(logits[1]), 0.0],
                     dtype=torch.float64)
    se = (q * (1 - q) / m.shape[0]).sqrt()
    assert ((freq - q).abs() <= 4 * se + 1e-12).all(), (freq, q)
    value = torch.tensor([-INF, -7.2, 0.0], dtype=torch.float64)
    want = (torch.log(q[0]) + torch.log(1 - q[1])
            + torch.distributions.Normal(loc[1], scale[1]).log_prob(value[1])
            + torch.distributions.Normal(loc[2], scale[2]).log_prob(value[2]))
    torch.testing.assert_close(d.log_prob(value), want)
    # −inf where the component cannot block; NaN is refused by validation.
    assert torch.isneginf(d.log_prob(torch.tensor([0.0, 0.0, -INF], dtype=torch.float64)))
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([math.nan, 0.0, 0.0], dtype=torch.float64))


def test_box_log_prob_gradients_are_finite_with_infinite_bounds():
    logits, loc, scale = _toy(requires_grad=True)
    d = PercolatedNormal(logits.unsqueeze(0).expand(4, 3), loc, scale)
    low = torch.tensor([-INF, -60.0, -INF], dtype=torch.float64)
    high = torch.tensor([-45.0, INF, INF], dtype=torch.float64)
    lp = d.box_log_prob(low, high)
    assert lp.shape == (4,) and bool(torch.isfinite(lp).all())
    lp.sum().backward()
    for t in (logits, loc, scale):
        assert bool(torch.isfinite(t.grad).all()), t.grad
    # A finite gradient check of the log probability (float64 central differences).
    torch.autograd.gradcheck(
        lambda a, b, c: PercolatedNormal(a, b, c).box_log_prob(low, high),
        (logits.detach().requires_grad_(), loc.detach().requires_grad_(),
         scale.detach().requires_grad_()),
    )


@pytest.mark.parametrize("low, high", [(-INF, 0.3), (-0.2, INF), (-INF, INF), (-50.0, -45.0)])
def test_log_normal_box_infinite_ends_value_and_gradient(low, high):
    loc = torch.tensor([0.1, -2.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.0, 3.0], dtype=torch.float64, requires_grad=True)
    lo = torch.tensor(low, dtype=torch.float64)
    hi = torch.tensor(high, dtype=torch.float64)
    lp = log_normal_box(loc, scale, lo, hi)
    want = torch.log(ndtr((hi - loc) / scale) - ndtr((lo - loc) / scale))
    if low == -50.0:  # far tail: the log-CDF difference, compared through log_ndtr
        want = torch.special.log_ndtr((hi - loc) / scale) + torch.log1p(
            -torch.exp(torch.special.log_ndtr((lo - loc) / scale)
                       - torch.special.log_ndtr((hi - loc) / scale)))
    torch.testing.assert_close(lp, want)
    lp.sum().backward()
    assert bool(torch.isfinite(loc.grad).all()) and bool(torch.isfinite(scale.grad).all())


def test_mean_variance_expand_and_bad_input():
    logits, loc, scale = _toy()
    d = PercolatedNormal(logits, loc, scale, blocked_mask=torch.tensor([True, False, False]))
    assert torch.isneginf(d.mean[0]) and d.mean[1] == loc[1]
    assert torch.isnan(d.variance[0]) and d.variance[2] == scale[2] ** 2
    e = d.expand((5,))
    assert e.batch_shape == (5,) and e.event_shape == (3,)
    assert e.log_prob(torch.zeros(3, dtype=torch.float64)).shape == (5,)
    with pytest.raises(ValueError, match="event dimension"):
        PercolatedNormal(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0))
    with pytest.raises(TypeError, match="blocked_mask"):
        PercolatedNormal(logits, loc, scale, blocked_mask=torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        PercolatedNormal(torch.tensor([math.nan, 0.0, 0.0]), loc, scale)
