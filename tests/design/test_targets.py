"""Targets: closed-form box probabilities (both tails), Monte Carlo fallback, bad input."""

import math

import mpmath
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from psppyro.design import Box, TargetDensity, TargetValue
from psppyro.design.targets import log1mexp, log_normal_box


def _exact_log_box(mu, sigma, lo, hi):
    """log P(lo < N(mu, sigma) < hi) with 50-digit arithmetic."""
    mpmath.mp.dps = 50
    cdf = lambda t: mpmath.ncdf((mpmath.mpf(t) - mu) / sigma)  # noqa: E731
    return float(mpmath.log(cdf(hi) - cdf(lo)))


@pytest.mark.parametrize(
    "mu,lo,hi",
    [
        (0.0, -1.0, 1.0),
        (0.0, 2.0, 3.0),
        (0.0, -3.0, -2.0),
        (0.0, 10.0, 11.0),
        (0.0, -41.0, -40.0),
        (0.0, 30.0, 30.001),
        (5.0, -1.0, 1.0),
        (0.0, -1e-3, 1e-3),
    ],
)
def test_log_normal_box_matches_high_precision(mu, lo, hi):
    got = log_normal_box(
        torch.tensor(mu, dtype=torch.float64),
        torch.tensor(1.0, dtype=torch.float64),
        torch.tensor(lo, dtype=torch.float64),
        torch.tensor(hi, dtype=torch.float64),
    )
    want = _exact_log_box(mu, 1.0, lo, hi)
    assert math.isfinite(float(got))
    assert abs(float(got) - want) <= 1e-9 * max(1.0, abs(want))


def test_log_normal_box_gradient_finite_in_far_tails():
    loc = torch.tensor([-45.0, 0.0, 45.0], dtype=torch.float64, requires_grad=True)
    lp = log_normal_box(
        loc, torch.ones(3, dtype=torch.float64), torch.tensor(-1.0), torch.tensor(1.0)
    )
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(loc.grad).all()
    # d/dmu log P points back towards the box: positive on the left, negative on the right.
    assert loc.grad[0] > 0 and loc.grad[2] < 0 and abs(float(loc.grad[1])) < 1e-12


def test_log1mexp_accuracy():
    x = torch.tensor([-1e-12, -1e-3, -0.5, -0.7, -2.0, -50.0], dtype=torch.float64)
    want = torch.tensor(
        [float(mpmath.log(1 - mpmath.exp(float(v)))) for v in x], dtype=torch.float64
    )
    assert torch.allclose(log1mexp(x), want, rtol=1e-12, atol=1e-300)


def test_box_closed_form_is_product_of_marginals():
    box = Box([-1.0, 0.0], [1.0, 2.0])
    loc = torch.tensor([[0.0, 0.5], [1.0, -1.0]], dtype=torch.float64)
    scale = torch.tensor([[1.0, 0.5], [2.0, 1.0]], dtype=torch.float64)
    lp = box.log_utility(Independent(Normal(loc, scale), 1))
    assert lp.shape == (2,)
    for r in range(2):
        want = sum(
            _exact_log_box(
                float(loc[r, i]), float(scale[r, i]), float(box.low[i]), float(box.high[i])
            )
            for i in range(2)
        )
        assert abs(float(lp[r]) - want) < 1e-6


def test_box_monte_carlo_matches_closed_form():
    # A MultivariateNormal (diagonal covariance) takes the Monte Carlo path; P = 0.6827 * 0.4772.
    box = Box([-1.0, 0.0], [1.0, 2.0], num_mc=20000)
    p_exact = float(box.log_utility(Independent(Normal(torch.zeros(2), torch.ones(2)), 1)).exp())
    torch.manual_seed(0)
    p_mc = float(box.log_utility(MultivariateNormal(torch.zeros(2), torch.eye(2))).exp())
    se = math.sqrt(p_exact * (1 - p_exact) / 20000)  # binomial standard error of the MC mean
    assert abs(p_mc - p_exact) < 4 * se


def test_box_temperature_smooth_and_differentiable():
    box_hard = Box([-1.0], [1.0])
    box_soft = Box([-1.0], [1.0], temperature=0.01, num_mc=20000)
    loc = torch.tensor([0.3], requires_grad=True)
    torch.manual_seed(1)
    lp = box_soft.log_utility(Independent(Normal(loc, torch.ones(1)), 1))
    lp.backward()
    exact = float(
        box_hard.log_utility(Independent(Normal(torch.tensor([0.3]), torch.ones(1)), 1)).exp()
    )
    # T = 0.01 changes P by O(T^2 * density') (negligible); MC s.e. as above.
    assert abs(float(lp.detach().exp()) - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000) + 1e-3
    assert float(loc.grad) < 0  # moving right pushes mass out of the box
    m = torch.tensor([[0.0], [1.5]])
    assert box_soft.utility(m)[0] > 0.99 and box_soft.utility(m)[1] < 1e-6
    assert box_hard.utility(m).tolist() == [1.0, 0.0]


def test_target_value_closed_form_matches_monte_carlo():
    tv = TargetValue([0.5, -1.0], tau=0.7, num_mc=50000)
    loc, scale = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.5])
    exact = float(tv.log_utility(Independent(Normal(loc, scale), 1)).exp())
    torch.manual_seed(2)
    m = Independent(Normal(loc, scale), 1).sample((50000,))
    u = tv.utility(m)
    assert abs(exact - float(u.mean())) < 4 * float(u.std()) / math.sqrt(50000)
    torch.manual_seed(2)
    mc = float(tv.log_utility(MultivariateNormal(loc, torch.diag(scale**2))).exp())
    assert abs(mc - exact) < 4 * float(u.std()) / math.sqrt(50000)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(low=[0.0, 1.0], high=[1.0, 1.0]), "low must be < high"),
        (dict(low=[0.0, 2.0], high=[1.0, 1.0]), "low must be < high"),
        (dict(low=[0.0], high=[1.0, 2.0]), "same shape"),
        (dict(low=[0.0, float("inf")], high=[1.0, 2.0]), "-inf and high"),
        (dict(low=[0.0, 0.0], high=[1.0, float("-inf")]), "-inf and high"),
        (dict(low=[0.0, float("nan")], high=[1.0, 2.0]), "NaN"),
        (dict(low=[-25.0], high=[-9.0], floor=-20.0), "floor"),
        (dict(low=[0.0], high=[1.0], floor=float("nan")), "floor"),
        (dict(low=[[0.0]], high=[[1.0]]), "1-D"),
        (dict(low=[0.0], high=[1.0], temperature=-1.0), "temperature"),
    ],
)
def test_box_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Box(**kwargs)


def test_box_rejects_wrong_event_shape():
    with pytest.raises(ValueError, match="event shape"):
        Box([0.0, 0.0], [1.0, 1.0]).log_utility(Independent(Normal(torch.zeros(3), 1.0), 1))
    with pytest.raises(TypeError, match="Distribution"):
        Box([0.0], [1.0]).log_utility(torch.zeros(1))


def test_target_density_checks():
    with pytest.raises(ValueError, match="positive definite"):
        TargetDensity.normal([0.0, 0.0], [[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="positive definite"):
        TargetDensity(
            MultivariateNormal(
                torch.zeros(2),
                scale_tril=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
                validate_args=False,
            )
        )
    with pytest.raises(ValueError, match="covariance"):
        TargetDensity.normal([0.0, 0.0], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="event shape"):
        TargetDensity(Normal(0.0, 1.0))
    with pytest.raises(TypeError):
        TargetDensity([0.0, 1.0])
    with pytest.raises(ValueError, match="m_target"):
        TargetValue([float("nan")])
    with pytest.raises(ValueError, match="tau"):
        TargetValue([0.0], tau=0.0)
    td = TargetDensity(MultivariateNormal(torch.zeros(2), torch.eye(2)))
    a, b = td.sample(5, seed=3), td.sample(5, seed=3)
    assert torch.equal(a, b) and a.shape == (5, 2)
    # O2 targets own their behaviour: no (raising) per-sample utility inherited from O1.
    assert td.kind == "density" and td.objective_name == "kl" and td.direction == "minimize"
    assert not hasattr(td, "log_utility") and not hasattr(td, "utility")


def test_box_with_infinite_bounds_probability_contains_and_json_round_trip():
    import json

    inf = math.inf
    box = Box([-inf, -1.0], [0.0, inf])
    d = Independent(Normal(torch.tensor([0.5, 0.0]), torch.tensor([2.0, 1.0])), 1)
    want = torch.special.ndtr(torch.tensor(-0.25)) * torch.special.ndtr(torch.tensor(1.0))
    torch.testing.assert_close(box.log_utility(d).exp(), want)
    assert box.exact_log_density(d)
    m = torch.tensor([[-inf, 5.0], [-20.0, -2.0], [0.5, 0.0]])
    assert box.contains(m).tolist() == [True, False, False]
    # The explicit floor rule: simulated values <= floor are blocked (-inf).
    floored = Box([-inf, -1.0], [-9.0, inf], floor=-20.0)
    assert floored.contains(torch.tensor([[-20.0, 0.0], [-25.0, 0.0], [-5.0, 0.0]])).tolist() == [
        True, True, False]
    assert not Box([-10.0, -1.0], [-9.0, 1.0]).contains(torch.tensor([[-inf, 0.0]])).item()
    # JSON (allow_nan=False) and back, also from the null that to_json_value writes for inf.
    text = json.dumps(floored.config(), allow_nan=False)
    back = Box.from_config(json.loads(text))
    assert repr(back) == repr(floored) and back.floor == -20.0
    nulls = {"kind": "box", "low": [None, -1.0], "high": [0.0, None], "temperature": None}
    assert repr(Box.from_config(nulls)) == repr(box)
    # Temperature with infinite bounds: finite smooth utility and gradient.
    smooth = Box([-inf, -1.0], [0.0, inf], temperature=0.05, num_mc=4000)
    loc = torch.tensor([0.5, 0.0], requires_grad=True)
    torch.manual_seed(0)
    lu = smooth.log_utility(Independent(Normal(loc, torch.tensor([2.0, 1.0])), 1))
    lu.backward()
    assert math.isfinite(float(lu.detach())) and bool(torch.isfinite(loc.grad).all())
    assert float(lu.detach().exp()) == pytest.approx(float(want), abs=0.03)
