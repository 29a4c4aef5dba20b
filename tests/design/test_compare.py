"""compare_posteriors: energy distance, marginal Wasserstein-1 and in-target fractions."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal
from torch.special import ndtr

from psppyro.design import Box, compare_posteriors, energy_distance, wasserstein_1d


class ShiftModel:
    phi_bounds = torch.tensor([[-3.0, 3.0]])
    latent_dim = 1

    def property_dist(self, phi, z):
        return Independent(Normal(phi + 0.5 * z, 0.5), 1)


def test_energy_distance_of_shifted_normals():
    # 1-D: D² = 2E|X − Y| − E|X − X'| − E|Y − Y'| for N(0,1) vs N(1,1):
    # E|N(1, 2)| = 2/√π·e^{−1/4} + (1 − 2Φ(−1/√2)) and E|N(0, 2)| = 2/√π.
    e_xy = 2 / math.sqrt(math.pi) * math.exp(-0.25) + (
        1 - 2 * float(ndtr(torch.tensor(-(0.5**0.5))))
    )
    exact = 2 * e_xy - 2 * 2 / math.sqrt(math.pi)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 1, generator=g, dtype=torch.float64)
    y = torch.randn(2000, 1, generator=g, dtype=torch.float64) + 1.0
    # U-statistic s.e. ≈ 2·sd(|X − Y|)/√n ≈ 2·0.85/√2000 = 0.038; 4 s.e.
    assert abs(float(energy_distance(x, y)) - exact) < 0.15
    same = float(energy_distance(x, torch.randn(2000, 1, generator=g, dtype=torch.float64)))
    assert abs(same) < 0.15
    # W1(N(0,1), N(δ,1)) = δ; empirical s.e. ≈ √(2/n)·1 = 0.03.
    assert abs(float(wasserstein_1d(x[:, 0], y[:, 0])) - 1.0) < 0.12


def test_compare_posteriors_table_and_in_target():
    g = torch.Generator().manual_seed(1)
    a = 0.1 * torch.randn(500, 1, generator=g)  # φ ≈ 0
    b = 1.0 + 0.1 * torch.randn(500, 1, generator=g)  # φ ≈ 1
    box = Box([0.5], [1.5])
    c = compare_posteriors(
        a, b, model=ShiftModel(), target=box, labels=("svi", "nuts"), num_samples=4000, seed=0
    )
    assert c.labels == ("svi", "nuts") and len(c.wasserstein) == 1
    assert abs(c.wasserstein[0] - 1.0) < 0.1
    # m | φ ~ N(φ, 0.5 + 0.01): in-target fraction P(0.5 <= m <= 1.5), binomial s.e. over 4000
    # draws.
    s = math.sqrt(0.5 + 0.01)
    for lab, mu in (("svi", 0.0), ("nuts", 1.0)):
        exact = float(ndtr(torch.tensor((1.5 - mu) / s)) - ndtr(torch.tensor((0.5 - mu) / s)))
        v, se = c.in_target[lab]
        assert abs(v - exact) < 4 * math.sqrt(exact * (1 - exact) / 4000)
        assert se > 0
    text = c.table()
    assert "energy distance" in text and "in-target fraction under nuts" in text


def test_compare_bad_input():
    with pytest.raises(ValueError, match="same d_phi"):
        compare_posteriors(torch.zeros(10, 1), torch.zeros(10, 2))
    with pytest.raises(ValueError, match="together"):
        compare_posteriors(torch.zeros(10, 1), torch.zeros(10, 1), model=ShiftModel())
    with pytest.raises(ValueError, match="S >= 2"):
        compare_posteriors(torch.zeros(1, 1), torch.zeros(10, 1))
