"""evaluate / reference_map: agreement with a direct simulation loop and exact probabilities."""

import math

import pytest
import torch
from scipy.stats import binom

import psppyro as pp
from psppyro._random import derive_seed
from psppyro.design import (
    Box,
    TargetDensity,
    TargetValue,
    design_table,
    evaluate,
    reference_map,
    simulate_properties,
)


class BernoulliProcess:
    """8×8 images with i.i.d. pixels, phase 1 with probability φ — a cheap stand-in process."""

    phi_bounds = torch.tensor([[0.1, 0.9]])

    def sample(self, phi, num_samples, seed):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(num_samples, 8, 8, generator=g) < phi).double()


class GaussianProcess:
    """'Images' (1, 2) holding m ~ N((φ, −φ), I) directly: p(m | φ) is known exactly."""

    phi_bounds = torch.tensor([[-2.0, 2.0]])

    def sample(self, phi, num_samples, seed):
        g = torch.Generator().manual_seed(seed)
        loc = torch.stack([phi[0], -phi[0]]).double()
        return (loc + torch.randn(num_samples, 2, generator=g, dtype=torch.float64))[:, None, :]


def volume_fraction(x):
    return x.mean((-1, -2))[..., None]


def identity(x):
    return x[..., 0, :]


def test_evaluate_matches_direct_loop_with_real_property_map():
    proc, phi = BernoulliProcess(), torch.tensor([[0.3], [0.6]])
    box = Box([3.0, 3.0], [6.0, 6.0])
    p, se, m = evaluate(
        phi, proc, "rixner_o2", box, num_samples=40, seed=7, chunk_size=16, return_samples=True
    )
    pm = pp.properties.property_map("rixner_o2")
    for i in range(2):
        ms = []
        for c, start in enumerate(range(0, 40, 16)):
            x = proc.sample(phi[i], num_samples=min(16, 40 - start), seed=derive_seed(7, i, c))
            ms.append(pm(x))
        direct = torch.cat(ms).double()
        assert torch.equal(m[i], direct)
        hit = ((direct >= 3.0) & (direct <= 6.0)).all(-1).double().mean()
        assert float(p[i]) == float(hit)
        assert math.isclose(float(se[i]), math.sqrt(float(hit) * (1 - float(hit)) / 40))
    assert p.shape == (2,)


def test_evaluate_binomial_probability_exact():
    # vf = k/64 with k ~ Bin(64, φ); P(0.25 <= vf <= 0.4) = P(16 <= k <= 25) exactly.
    phi = 0.3
    exact = binom.cdf(25, 64, phi) - binom.cdf(15, 64, phi)
    p, se = evaluate(
        torch.tensor([phi]),
        BernoulliProcess(),
        volume_fraction,
        Box([0.25], [0.4]),
        num_samples=2000,
        seed=0,
    )
    assert p.shape == () and abs(float(p) - exact) < 4 * math.sqrt(exact * (1 - exact) / 2000)


def test_evaluate_target_value_and_density():
    # E exp(−τ‖m − t‖²) for m ~ N(μ, I): ∏ (1 + 2τ)^(−1/2) exp(−τ(μ_i − t_i)²/(1 + 2τ)).
    tau, t, phi = 0.5, torch.tensor([0.5, 0.0]), 0.8
    mu = torch.tensor([phi, -phi])
    exact = float(((1 + 2 * tau) ** -0.5 * torch.exp(-tau * (mu - t) ** 2 / (1 + 2 * tau))).prod())
    v, se = evaluate(
        torch.tensor([phi]), GaussianProcess(), identity, TargetValue(t, tau), 4000, seed=1
    )
    assert abs(float(v) - exact) < 4 * float(se)
    # KL(N(μ_t, I) ‖ N(μ, I)) = ‖μ − μ_t‖²/2; the Gaussian fit adds O(d²/n) bias.
    mu_t = torch.tensor([0.0, 0.0])
    target = TargetDensity.normal(mu_t, torch.eye(2))
    kl, se = evaluate(torch.tensor([phi]), GaussianProcess(), identity, target, 4000, seed=2)
    exact_kl = float(((mu - mu_t) ** 2).sum() / 2)
    assert abs(float(kl) - exact_kl) < 4 * float(se) + 2 * 4 / 4000


def test_reference_map_matches_evaluate_and_table():
    box = Box([0.25], [0.4])
    ref = reference_map(BernoulliProcess(), volume_fraction, box, grid=5, per_phi=64, seed=3)
    assert ref.values.shape == (5,) and ref.objective == "probability"
    pts = ref.grid()
    assert torch.allclose(pts[:, 0].double(), torch.linspace(0.1, 0.9, 5, dtype=torch.float64))
    p, _ = evaluate(pts.float(), BernoulliProcess(), volume_fraction, box, 64, seed=3)
    assert torch.equal(p.reshape(-1), ref.values.reshape(-1))
    # The exact P(16 <= k <= 25) peaks near φ = 0.32: of the grid {0.1, 0.3, 0.5, ...} it is 0.3.
    assert float(ref.argmax()[0]) == pytest.approx(0.3)

    class R:  # a DesignResult-like row for the table
        method, phi_star, objective, objective_se, wall_time = (
            "sga",
            torch.tensor([0.3]),
            0.5,
            0.01,
            1.0,
        )

    text = design_table({"L": R()}, {"L": (p[1], 0.05)}, {"L": ref})
    assert "L" in text.splitlines()[2] and "sga" in text


def test_evaluate_bad_input():
    with pytest.raises(ValueError, match="outside its bounds"):
        evaluate(torch.tensor([0.95]), BernoulliProcess(), volume_fraction, Box([0.0], [1.0]), 10)
    with pytest.raises(ValueError, match="last dimension"):
        evaluate(
            torch.tensor([0.5, 0.5]), BernoulliProcess(), volume_fraction, Box([0.0], [1.0]), 10
        )
    with pytest.raises(ValueError, match="d_m=2"):
        evaluate(
            torch.tensor([0.5]), BernoulliProcess(), volume_fraction, Box([0.0] * 2, [1.0] * 2), 10
        )
    with pytest.raises(ValueError, match="properties must be one of"):
        evaluate(torch.tensor([0.5]), BernoulliProcess(), "viscosity", Box([0.0], [1.0]), 10)
    with pytest.raises(ValueError, match="num_samples"):
        evaluate(torch.tensor([0.5]), BernoulliProcess(), volume_fraction, Box([0.0], [1.0]), 0)
    with pytest.raises(ValueError, match="grid"):
        reference_map(BernoulliProcess(), volume_fraction, Box([0.0], [1.0]), grid=[3, 3])


def test_workers_do_not_change_the_answer():
    phi = torch.tensor([[0.3], [0.5]])
    a = simulate_properties(
        phi, BernoulliProcess(), volume_fraction, 48, seed=5, workers=1, chunk_size=16
    )
    b = simulate_properties(
        phi, BernoulliProcess(), volume_fraction, 48, seed=5, workers=2, chunk_size=16
    )
    assert torch.equal(a, b)


@pytest.mark.slow
def test_evaluate_with_real_process_preset():
    proc = pp.process.preset("rixner64")
    phi = torch.zeros(proc.phi_bounds.shape[0])
    box = Box([0.0, 0.0], [100.0, 100.0])
    p, se, m = evaluate(
        phi, proc, "rixner_o2", box, num_samples=8, seed=0, chunk_size=4, return_samples=True
    )
    pm = pp.properties.property_map("rixner_o2")
    direct = torch.cat(
        [pm(proc.sample(phi, num_samples=4, seed=derive_seed(0, 0, c))) for c in range(2)]
    )
    assert torch.equal(m, direct.double())
    assert float(p) == float(box.contains(direct).double().mean())
