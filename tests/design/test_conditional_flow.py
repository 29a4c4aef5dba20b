"""Tests of the competitor's conditional normalizing flow q(phi | m) and its point estimate."""

import pytest
import torch

from psppyro._doctest_fixtures import ToyChain
from psppyro.design import Box, TargetValue
from psppyro.design.conditional_flow import (
    ConditionalFlow,
    design_with_flow,
    flow_design,
    simulate_pairs,
)

# ToyChain: m = phi + 0.3 z + N(0, 0.3^2), phi ~ U(-3, 3): for |m| well inside the box the exact
# posterior p(phi | m) is N(m, 0.18) (sd 0.424), truncated to [-3, 3].
SD = (0.3**2 + 0.3**2) ** 0.5


@pytest.fixture(scope="module")
def toy_flow():
    phi, m = simulate_pairs(ToyChain(), 3000, seed=0)
    flow = ConditionalFlow(ToyChain().phi_bounds, 1, transforms=1, hidden=(32, 32), seed=0)
    return flow.fit(phi, m, epochs=12, batch_size=250, lr=5e-3, seed=0, progress=False), m


def test_simulate_pairs_follow_the_model():
    phi, m = simulate_pairs(ToyChain(), 4000, seed=1)
    assert bool(((phi >= -3) & (phi <= 3)).all())
    resid = m - phi
    assert abs(float(resid.mean())) < 4 * SD / 4000**0.5
    assert abs(float(resid.std()) - SD) < 0.03


@pytest.mark.parametrize("m_value", [-1.0, 0.5, 1.5])
def test_flow_conditions_on_m(toy_flow, m_value):
    flow, _ = toy_flow
    s = flow.sample(torch.tensor([m_value]), 4000, seed=2)[:, 0]
    assert bool(((s > -3) & (s < 3)).all())
    # flow approximation error dominates the Monte Carlo s.e. (0.007): tolerance 0.1 / 20 %
    assert abs(float(s.mean()) - m_value) < 0.1, float(s.mean())
    assert abs(float(s.std()) / SD - 1) < 0.2, float(s.std())
    # the log-density integrates to about 1 over the box
    grid = torch.linspace(-3, 3, 2001)[:, None]
    with torch.no_grad():
        dens = flow.log_prob(grid, torch.tensor([m_value])).exp()
    assert abs(float(torch.trapezoid(dens, grid[:, 0])) - 1) < 0.05


def test_point_estimate_targets_the_box(toy_flow):
    flow, m = toy_flow
    out = design_with_flow(flow, Box([0.9], [1.1]), m, num_candidates=256, num_conditions=64,
                           seed=0)
    assert out.conditions == "model" and out.num_conditions >= 32
    assert abs(float(out.phi[0]) - 1.0) < 0.15, out.phi
    mean = design_with_flow(flow, Box([0.9], [1.1]), m, point="mean", num_candidates=256,
                            seed=0)
    assert abs(float(mean.phi[0]) - 1.0) < 0.15
    value = design_with_flow(flow, TargetValue([-1.0]), m, num_candidates=256, seed=0)
    assert value.conditions == "value" and abs(float(value.phi[0]) + 1.0) < 0.15
    # a box outside the model's reach falls back to uniform conditions in the box
    far = design_with_flow(flow, Box([5.0], [6.0]), m, num_candidates=64, num_conditions=16,
                           seed=0)
    assert far.conditions == "uniform"


def test_flow_design_end_to_end_and_errors():
    out = flow_design(ToyChain(), Box([-1.2], [-0.8]), num_pairs=1500, epochs=6, lr=5e-3,
                      hidden=(32, 32), transforms=1, num_candidates=128, num_conditions=32,
                      seed=0)
    assert abs(float(out.phi[0]) + 1.0) < 0.3
    assert set(out.to_dict()["timings"]) == {"pairs_s", "flow_fit_s", "design_s"}
    with pytest.raises(ValueError, match="point"):
        flow_design(ToyChain(), Box([0.9], [1.1]), point="median")
    with pytest.raises(ValueError, match="phi_bounds"):
        ConditionalFlow(torch.tensor([[0.0, float("inf")]]), 1)
    with pytest.raises(ValueError, match="same n"):
        ConditionalFlow(ToyChain().phi_bounds, 1).fit(torch.zeros(3, 1), torch.zeros(2, 1))
