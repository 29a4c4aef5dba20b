"""AmortizedDesigner on the analytic toy chain (psppyro._doctest_fixtures.ToyChain).

Toy: m | φ, z ~ N(φ + 0.3 z, 0.3²), so m | φ ~ N(φ, σ²) with σ² = 0.18 and, for a box [c − h, c + h]
with c well inside φ ∈ [−3, 3], P(m ∈ box | φ) = Φ((c + h − φ)/σ) − Φ((c − h − φ)/σ) is maximal
at φ = c with value 2Φ(h/σ) − 1. The design posterior ∝ P(m ∈ box | φ) is symmetric about c, so
its mean (the default φ*) is c as well: one trained designer must return φ* ≈ c for every box.
"""

import math
import warnings

import pytest
import torch
from torch.special import ndtr

from psppyro._doctest_fixtures import ToyChain
from psppyro.design import (
    AmortizedDesigner,
    Box,
    BoxFamily,
    DensityFamily,
    DesignWarning,
    TargetDensity,
    TargetValue,
    ValueFamily,
    infer_design,
)

SIGMA = math.sqrt(0.18)


def _p_exact(phi, box):
    lo, hi = float(box.low[0]), float(box.high[0])
    return float(ndtr(torch.tensor((hi - phi) / SIGMA)) - ndtr(torch.tensor((lo - phi) / SIGMA)))


@pytest.fixture(scope="module")
def designer():
    torch.manual_seed(0)
    d = AmortizedDesigner(ToyChain(), BoxFamily(width=(0.4, 1.2)), hidden_features=(32, 32),
                          transforms=2, pool_size=1024, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d.fit(num_steps=150, targets_per_step=4, num_particles=4, lr=1e-2, final_lr=1e-3)
    return d


def _design(d, box, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)  # short training: k-hat may exceed 0.7
        return d(box, seed=seed, num_samples=500, num_eval_samples=500)


def test_known_optima_for_several_targets_from_one_training(designer):
    # posterior sd of phi is ~0.45 for these boxes; the MC error of the mean of 500 draws ~0.02
    for c in (-1.5, -0.5, 0.5, 1.5):
        res = _design(designer, Box([c - 0.5], [c + 0.5]))
        assert abs(float(res.phi_star[0]) - c) < 0.25, (c, float(res.phi_star[0]))
        assert res.method == "amortized" and res.samples.shape == (500, 1)


def test_held_out_targets_designed_without_retraining(designer):
    steps = designer.num_steps_trained
    held_out = designer.sample_targets(4, seed=123)  # not among the training draws
    for box in held_out:
        if designer.out_of_distribution(box) is not None:
            continue
        c = float(box.center[0])
        if abs(c) > 2.0:  # near the phi bounds the optimum is clipped; skip for a clean check
            continue
        res = _design(designer, box)
        best = _p_exact(c, box)
        assert _p_exact(float(res.phi_star[0]), box) > 0.9 * best
    assert designer.num_steps_trained == steps


def test_training_objective_is_the_design_models_elbo(designer):
    # designer.elbo (batched training objective) and Pyro's importance weights of the same guide
    # against target.pyro_model (posterior.score_guide) estimate the same E_q[log p - log q].
    box = Box([0.2], [1.0])
    with torch.no_grad():
        elbo = float(designer.elbo([box], num_particles=2000, seed=1)[0])
        _, log_w = designer.posterior(box, num_samples=2000, seed=2)
    se = float(log_w.std()) / math.sqrt(2000)
    assert abs(elbo - float(log_w.mean())) < 5 * se * math.sqrt(2)


def test_infer_design_method_amortized_matches_call(designer):
    box = Box([0.0], [1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        a = infer_design(designer.model, box, method="amortized", designer=designer, seed=3,
                         num_samples=500, num_eval_samples=1000)
        b = designer(box, seed=3, num_samples=500, num_eval_samples=1000)
    assert torch.equal(a.phi_star, b.phi_star)
    assert a.idata.posterior["phi"].shape == (1, 500, 1)
    assert a.wall_time < 5.0


def test_save_load_round_trip(designer, tmp_path):
    path = tmp_path / "designer.pt"
    designer.save(path)
    loaded = AmortizedDesigner.load(path, ToyChain())
    box = Box([0.3], [1.1])
    phi_a, lw_a = designer.posterior(box, num_samples=64, seed=5)
    phi_b, lw_b = loaded.posterior(box, num_samples=64, seed=5)
    assert torch.allclose(phi_a, phi_b) and torch.allclose(lw_a, lw_b)
    assert loaded.config() == designer.config()
    assert torch.equal(loaded.family.pool, designer.family.pool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        by_path = infer_design(ToyChain(), box, "amortized", designer=str(path), seed=5,
                               num_samples=64, num_eval_samples=100)
        direct = designer(box, seed=5, num_samples=64, num_eval_samples=100)
    assert torch.allclose(by_path.phi_star, direct.phi_star)
    with pytest.raises(ValueError, match="trained for"):
        AmortizedDesigner.load(path, _TwoPhi())
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="not a psppyro designer file"):
        AmortizedDesigner.load(tmp_path / "junk.pt", ToyChain())


def test_out_of_distribution_target_warns(designer):
    far = Box([30.0], [30.6])  # centre far outside the predictive range of phi in [-3, 3]
    assert "centre" in designer.out_of_distribution(far)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        designer(far, num_samples=50, num_eval_samples=100)
    ood = [w for w in rec if "outside the amortized designer's training" in str(w.message)]
    assert len(ood) == 1 and issubclass(ood[0].category, DesignWarning)
    wide = Box([-4.0], [4.0])  # centred, but 4.4 predictive sd wide (> 1.2)
    assert "widths" in designer.out_of_distribution(wide)
    assert designer.out_of_distribution(Box([0.0], [1.0])) is None


class _TwoPhi:
    phi_bounds = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])
    latent_dim = 1

    def property_dist(self, phi, z):
        from torch.distributions import Independent, Normal

        return Independent(Normal(phi[..., :1] + phi[..., 1:] + z, 0.3), 1)


def test_bad_input_refused(designer):
    with pytest.raises(ValueError, match="target_family"):
        AmortizedDesigner(ToyChain(), "boxes")
    with pytest.raises(TypeError, match="target_family"):
        AmortizedDesigner(ToyChain(), 3)
    with pytest.raises(ValueError, match="flow"):
        AmortizedDesigner(ToyChain(), flow="cnf")
    with pytest.raises(TypeError, match="hidden_features"):
        AmortizedDesigner(ToyChain(), hidden_features=32)
    with pytest.raises(ValueError, match="width"):
        BoxFamily(width=(2.0, 1.0))
    with pytest.raises(TypeError, match="trained on Box"):
        designer(TargetValue([0.0]))
    with pytest.raises(TypeError, match="designer=AmortizedDesigner"):
        infer_design(ToyChain(), Box([0.0], [1.0]), method="amortized")
    with pytest.raises(ValueError, match="num_steps"):
        designer.fit(num_steps=0)
    with pytest.raises(ValueError, match="trained for"):
        infer_design(_TwoPhi(), Box([0.0], [1.0]), method="amortized", designer=designer)


def test_value_and_density_families_train_and_design():
    model = ToyChain()
    dv = AmortizedDesigner(model, ValueFamily(), hidden_features=(8,), transforms=1,
                           pool_size=256).fit(num_steps=3, targets_per_step=2)
    tv = TargetValue([0.5], tau=2.0)
    assert dv.family.context(tv).shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        res = dv(tv, num_samples=20, num_eval_samples=100)
    assert res.objective_name == "expected_utility" and math.isfinite(res.objective)
    dd = AmortizedDesigner(model, DensityFamily(), hidden_features=(8,), transforms=1,
                           num_pseudo_data=4, pool_size=256).fit(num_steps=3, targets_per_step=2)
    assert dd.copies == 4 and dd.features == 1 + 4
    td = TargetDensity.normal([0.5], [[0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        res = dd(td, num_samples=20, num_eval_samples=100)
    assert res.objective_name == "kl" and res.samples.shape == (20, 1)
    assert len(dd.history["elbo"]) == 3 and all(math.isfinite(e) for e in dd.history["elbo"])


@pytest.mark.slow
def test_known_optima_two_dimensional_linear_toy():
    """LinearToy of test_infer (m | φ ~ N(Aφ, 0.5 I)): φ*(box) = A⁻¹ c for every box."""
    from tests.design.test_infer import A, LinearToy

    d = AmortizedDesigner(LinearToy(), BoxFamily(width=(0.5, 1.5)), hidden_features=(64, 64),
                          pool_size=2048)
    d.fit(num_steps=1500, targets_per_step=8, num_particles=4, lr=5e-3, final_lr=3e-4)
    for c in ([0.5, -0.5], [-1.0, 1.0], [1.0, 0.8]):
        c = torch.tensor(c)
        box = Box(c - 0.6, c + 0.6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DesignWarning)
            res = d(box, num_samples=2000, num_eval_samples=2000)
        phi_opt = torch.linalg.solve(A, c)
        assert torch.allclose(res.phi_star, phi_opt, atol=0.2), (res.phi_star, phi_opt)
