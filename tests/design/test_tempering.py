"""Adaptive tempering: ESS, the bisection step, the schedule reaching the target, start boxes."""

import pytest
import torch

from psppyro.design import Box, TargetValue
from psppyro.design.tempering import (
    TemperedTarget,
    effective_sample_size,
    next_level,
    start_box,
    tempering_schedule,
)


def test_effective_sample_size_limits():
    assert float(effective_sample_size(torch.zeros(50))) == pytest.approx(1.0)
    one_hot = torch.full((8,), -torch.inf)
    one_hot[3] = 0.0
    assert float(effective_sample_size(one_hot)) == pytest.approx(1 / 8)
    # two equal weights among four: ESS = 4 / (4 * 2) * ... = 0.5
    lw = torch.tensor([0.0, 0.0, -torch.inf, -torch.inf])
    assert float(effective_sample_size(lw)) == pytest.approx(0.5)
    assert float(effective_sample_size(torch.full((3,), -torch.inf))) == 0.0
    with pytest.raises(ValueError, match="log_weights"):
        effective_sample_size(torch.tensor(1.0))


def _gauss_log_f(x, shift):
    return lambda lam: -0.5 * (x - shift * lam) ** 2


def test_next_level_is_the_largest_admissible_step():
    x = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    log_f = _gauss_log_f(x, 5.0)
    lam, ess = next_level(log_f, 0.0, ess_threshold=0.5, tol=1e-4)
    assert 0.0 < lam < 1.0 and ess >= 0.5
    above = float(effective_sample_size(log_f(lam + 5e-3) - log_f(0.0)))
    assert above < 0.5                              # a slightly longer step violates the ESS
    # a target already within reach is taken in one step
    assert next_level(_gauss_log_f(x, 0.1), 0.0)[0] == 1.0
    with pytest.raises(ValueError, match="ess_threshold"):
        next_level(log_f, 0.0, ess_threshold=1.5)
    with pytest.raises(ValueError, match="current"):
        next_level(log_f, 1.0)


def test_schedule_reaches_the_target_with_every_step_above_threshold():
    g = torch.Generator().manual_seed(1)

    def refit(lam):          # the exact "posterior" at each level: N(8 λ, 1)
        x = 8.0 * lam + torch.randn(2000, generator=g)
        return _gauss_log_f(x, 8.0)

    levels = tempering_schedule(refit, ess_threshold=0.6)
    lams = [lv for lv, _ in levels]
    assert lams[0] == 0.0 and lams[-1] == 1.0
    assert all(b > a for a, b in zip(lams, lams[1:]))
    assert len(lams) > 3                           # a shift of 8 sd needs several levels
    assert all(e >= 0.6 for _, e in levels[1:])
    with pytest.raises(RuntimeError, match="max_levels"):
        tempering_schedule(refit, ess_threshold=0.99, max_levels=3)


def test_start_box_and_tempered_path():
    target = Box([8.5, 6.75], [11.0, 9.0])
    m = torch.stack([6.0 + 0.5 * torch.randn(500), 5.5 + 0.1 * torch.randn(500)], -1)
    k0 = start_box(target, m, min_fraction=0.5)
    inside = ((m >= k0.low) & (m <= k0.high)).float().mean(0)
    assert bool((inside >= 0.5).all())
    assert torch.allclose(k0.high - k0.low, torch.maximum(target.high - target.low,
                          k0.high - k0.low).float().to(k0.low))
    path = TemperedTarget(target, k0)
    mid = path.at(0.5)
    assert torch.allclose(mid.low.float(), 0.5 * (k0.low.float() + target.low))
    assert path.at(1.0) is target
    tv = TemperedTarget(TargetValue([2.0], tau=3.0), torch.tensor([0.0]))
    assert float(tv.at(0.25).m_target) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="level"):
        path.at(1.5)
    with pytest.raises(TypeError, match="Box"):
        TemperedTarget(target, torch.zeros(2))
