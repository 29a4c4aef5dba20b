"""Design with a PercolatedNormal property model: every method runs; SGA finds the exact optimum.

Toy: φ ∈ [−3, 3], z ~ N(0, 1). Component 0 percolates with probability sigmoid(2φ) and is then
N(φ + 0.3 z, 0.5²); component 1 never blocks, N(−φ + 0.3 z, 0.5²). Box: m0 ∈ [−∞, −1] (blocked
counts as inside), m1 ∈ [−0.5, 1.5]. P(m ∈ box | φ) = E_z[...] is computed by Gauss–Hermite
quadrature on a φ grid.
"""

import math

import numpy as np
import pytest
import torch

from psppyro.design import Box, TargetDensity, TargetValue, infer_design
from psppyro.distributions import PercolatedNormal

INF = math.inf
BOX = Box([-INF, -0.5], [-1.0, 1.5])


class PercolatingToy:
    phi_bounds = torch.tensor([[-3.0, 3.0]])
    latent_dim = 1

    def property_dist(self, phi, z):
        batch = torch.broadcast_shapes(phi.shape[:-1], z.shape[:-1])
        p, zz = phi[..., 0].expand(batch), z[..., 0].expand(batch)
        logits = torch.stack([2.0 * p, torch.zeros_like(p)], -1)
        loc = torch.stack([p + 0.3 * zz, -p + 0.3 * zz], -1)
        return PercolatedNormal(logits, loc, torch.full_like(loc, 0.5),
                                blocked_mask=torch.tensor([True, False]))


def _exact_probability(phi):
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    z = torch.tensor(nodes, dtype=torch.float64)
    w = torch.tensor(weights / weights.sum(), dtype=torch.float64)
    d = PercolatingToy().property_dist(phi.double()[:, None, None], z[None, :, None])
    return (BOX.log_utility(d).exp() * w).sum(-1)


def test_box_utility_is_exact_for_percolated_normal_and_matches_simulation():
    d = PercolatingToy().property_dist(torch.tensor([[0.3]]), torch.tensor([[0.1]]))
    assert BOX.exact_log_density(d) and not Box([0.0, 0.0], [1.0, 1.0],
                                                 temperature=0.1).exact_log_density(d)
    torch.testing.assert_close(BOX.log_utility(d),
                               d.box_log_prob(BOX.low, BOX.high))
    torch.manual_seed(0)
    m = d.sample((100_000,))
    p, se = BOX.from_simulations(m.reshape(-1, 2))
    assert abs(float(p) - float(BOX.log_utility(d).exp())) < 4 * float(se)
    # The smooth (temperature) utility: per-component Monte Carlo, near the exact one at small T.
    smooth = Box([-INF, -0.5], [-1.0, 1.5], temperature=0.01, num_mc=20_000)
    assert float(smooth.log_utility(d).exp()) == pytest.approx(float(BOX.log_utility(d).exp()),
                                                               abs=0.02)


def test_target_value_and_density_with_percolated_normal():
    d = PercolatingToy().property_dist(torch.tensor([[0.4]]), torch.tensor([[0.0]]))
    tv = TargetValue([0.4, -0.4], tau=2.0)
    # Blocked components have utility 0: E[u] = p_0 · Gaussian integrals.
    torch.manual_seed(1)
    m = d.sample((200_000,))
    u = tv.utility(m)
    assert abs(float(u.mean()) - float(tv.log_utility(d).exp())) < 4 * float(u.std()) / math.sqrt(
        m.shape[0])
    assert tv.exact_log_density(d)
    td = TargetDensity.normal([0.4, -0.4], [[0.1, 0.0], [0.0, 0.1]])
    draws = td.sample(5, seed=0)
    lp = td.log_terms(d, draws)
    want = (torch.log(torch.sigmoid(torch.tensor(0.8)))
            + torch.distributions.Normal(d.loc, d.scale).log_prob(draws[:, None]).sum(-1))
    torch.testing.assert_close(lp, want)


def test_sga_finds_the_quadrature_optimum():
    grid = torch.linspace(-3, 3, 601)
    p = _exact_probability(grid)
    phi_opt, p_opt = float(grid[p.argmax()]), float(p.max())
    res = infer_design(PercolatingToy(), BOX, "sga", seed=0, num_z=1000, epochs=3, restarts=2,
                       num_eval_samples=2000, progress=False)
    # The objective is flat at the optimum: compare probabilities (1 % of the maximum) and φ.
    p_star = float(_exact_probability(res.phi_star.reshape(1)))
    assert p_star > 0.99 * p_opt, (res.phi_star, phi_opt, p_star, p_opt)
    assert abs(float(res.phi_star) - phi_opt) < 0.3


@pytest.mark.parametrize(
    "method, options",
    [
        ("svi", dict(num_steps=100, num_samples=100)),
        ("nuts", dict(num_samples=30, warmup_steps=30, num_chains=1)),
        ("flow", dict(num_steps=60, num_samples=100, hidden_features=(8, 8), transforms=1)),
    ],
)
def test_posterior_methods_run_on_a_percolating_model(method, options):
    import warnings

    from psppyro.design.results import DesignWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)  # short runs: diagnostics may complain
        res = infer_design(PercolatingToy(), BOX, method, seed=0, progress=False,
                           num_eval_samples=1000, num_candidates=4, **options)
    p = _exact_probability(torch.linspace(-3, 3, 601))
    assert -3.0 <= float(res.phi_star) <= 3.0 and math.isfinite(res.probability)
    # The posterior p(φ | m ∈ box) ∝ P(m ∈ box | φ) concentrates where P is large.
    assert float(_exact_probability(res.phi_star.reshape(1))) > 0.5 * float(p.max())
