"""robustness / robustness_curve on toy processes whose answers are known.

- ``_SharpProcess``: a 1 × 1 "image" x = φ + 0.05 ε and m = x, so P(m ∈ [0.9, 1.1] | φ = 1) ≈ 0.95
  and the probability falls off within |δ| ≈ 0.1: a sharp optimum.
- ``CoinProcess`` (psppyro._doctest_fixtures): P(m ∈ [0.5, 1.5] | φ) = φ, so under a symmetric
  tolerance ball inside [0, 1] the read-out is E[φ] = φ*.
"""

import math

import pytest
import torch

from psppyro._doctest_fixtures import CoinProcess, white_fraction
from psppyro.design import (
    Box,
    DesignResult,
    RobustnessCurve,
    evaluate,
    robustness,
    robustness_curve,
)
from psppyro.diagnostics import plot_robustness


class _SharpProcess:
    phi_bounds = torch.tensor([[0.0, 2.0]])

    def sample(self, phi, num_samples, seed):
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(num_samples, 1, 1, generator=g, dtype=torch.float64)
        return phi.double().reshape(1, 1, 1) + 0.05 * eps


def _mean_pixel(x):
    return x.mean((-1, -2))[..., None]


BOX = Box([0.9], [1.1])


def test_zero_tolerance_equals_plain_probability():
    phi = torch.tensor([1.02])
    p, se = robustness(phi, _SharpProcess(), _mean_pixel, BOX, tolerance=0.0, num_phi=8,
                       num_samples=64, seed=1)
    q, se_q = evaluate(phi, _SharpProcess(), _mean_pixel, BOX, num_samples=512, seed=2)
    assert abs(p - float(q)) < 4 * math.sqrt(se**2 + float(se_q) ** 2)
    # the curve at r = 0 is the same read-out as robustness(tolerance=0)
    c = robustness_curve(phi, _SharpProcess(), _mean_pixel, BOX, tolerance=0.3, radii=(0.0,),
                         num_phi=8, num_samples=64, seed=1)
    assert float(c.values[0]) == pytest.approx(p)


def test_sharp_optimum_decreases_with_the_radius():
    c = robustness_curve(torch.tensor([1.0]), _SharpProcess(), _mean_pixel, BOX, tolerance=0.1,
                         radii=(0.0, 1.0, 2.0, 4.0), num_phi=32, num_samples=16, seed=0)
    v, se = c.values, c.se
    assert float(v[0]) > 0.9
    for i in range(len(v) - 1):
        assert float(v[i] - v[i + 1]) > 2 * math.sqrt(float(se[i] ** 2 + se[i + 1] ** 2))
    # exact mixture value at r = 4 (uniform |delta| <= 0.4): the box is hit for |delta| <~ 0.1
    assert float(v[-1]) < 0.4 and c.drop() > 0.5


def test_uniform_and_normal_balls_average_the_probability():
    # CoinProcess: P(m in [0.5, 1.5] | phi) = phi, so the read-out is E[phi] = phi* inside [0, 1]
    for dist in ("uniform", "normal"):
        p, se = robustness(torch.tensor([0.5]), CoinProcess(), white_fraction, Box([0.5], [1.5]),
                           tolerance=0.1, num_phi=64, num_samples=32, seed=3, distribution=dist)
        assert abs(p - 0.5) < 4 * se


def test_clipping_to_the_process_bounds_is_reported():
    c = robustness_curve(torch.tensor([0.95]), CoinProcess(), white_fraction, Box([0.5], [1.5]),
                         tolerance=0.2, radii=(0.0, 1.0), num_phi=32, num_samples=4, seed=0)
    assert float(c.clipped[0]) == 0.0 and 0.2 < float(c.clipped[1]) < 0.8
    d = c.to_dict()
    assert d["radii"] == [0.0, 1.0] and d["distribution"] == "uniform"


def test_design_result_input_and_plot():
    res = DesignResult(method="sga", target=BOX, phi_star=torch.tensor([1.0]), objective=0.9,
                       objective_se=0.01, objective_name="probability")
    c = robustness_curve(res, _SharpProcess(), _mean_pixel, tolerance=0.1, radii=(0.0, 1.0),
                         num_phi=4, num_samples=8)
    assert c.label == "sga" and c.objective == "probability"
    fig = plot_robustness(c, labels=["SGA"])
    assert fig.axes[0].get_legend_handles_labels()[1] == ["SGA"]
    with pytest.raises(TypeError, match="RobustnessCurve"):
        plot_robustness(torch.zeros(2))
    with pytest.raises(ValueError, match="at least one"):
        plot_robustness()
    assert isinstance(c, RobustnessCurve)


def test_bad_input_refused():
    phi = torch.tensor([1.0])
    args = (phi, _SharpProcess(), _mean_pixel, BOX)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        robustness(*args, tolerance=-0.1)
    with pytest.raises(ValueError, match="tolerance must be a number or have shape"):
        robustness(*args, tolerance=[0.1, 0.1])
    with pytest.raises(ValueError, match="distribution"):
        robustness(*args, tolerance=0.1, distribution="cauchy")
    with pytest.raises(ValueError, match="num_phi"):
        robustness(*args, tolerance=0.1, num_phi=0)
    with pytest.raises(TypeError, match="target is required"):
        robustness(phi, _SharpProcess(), _mean_pixel, tolerance=0.1)
    with pytest.raises(ValueError, match="radii must be >= 0"):
        robustness_curve(*args, tolerance=0.1, radii=(0.0, -1.0))
    with pytest.raises(ValueError, match="shape"):
        robustness(torch.zeros(2, 1), _SharpProcess(), _mean_pixel, BOX)
