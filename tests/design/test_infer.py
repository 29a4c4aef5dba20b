"""infer_design on a linear-Gaussian toy chain whose answers are known in closed form.

Toy (a user-written protocol class, as in a notebook): φ ∈ [−3, 3]², z ~ N(0, I₂),
m | φ, z ~ N(Aφ + 0.5 z, 0.5² I). Integrating z, m | φ ~ N(Aφ, s² I) with s² = 0.5, so

- P(m ∈ [l, h] | φ) = ∏_i Φ((h_i − (Aφ)_i)/s) − Φ((l_i − (Aφ)_i)/s), maximized at Aφ = (l + h)/2
  (each factor is maximal when its interval is centred), i.e. φ* = A⁻¹ c;
- the posterior p(φ | m ∈ box) ∝ P(m ∈ box | φ) on the square, computed by quadrature on a 601²
grid;
- KL(N(μ_t, s² I) ‖ p(m|φ)) = ‖Aφ − μ_t‖² / (2 s²), minimized at φ = A⁻¹ μ_t.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal
from torch.special import ndtr

import psppyro as pp
from psppyro._random import derive_seed
from psppyro.design import Box, TargetDensity, TargetValue, infer_design
from psppyro.design.arviz_io import import_arviz

A = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
S2 = 0.5


class LinearToy:
    """m = Aφ + 0.5 z + 0.5 ε — written the way a user would in a notebook."""

    phi_bounds = torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    latent_dim = 2
    phi_names = ["alpha", "beta"]

    def property_dist(self, phi, z):
        return Independent(Normal(phi @ A.T + 0.5 * z, 0.5), 1)


BOX = Box([0.4, -0.6], [0.8, -0.2])
PHI_OPT = torch.linalg.solve(A, BOX.center)  # (0.8, -0.4)


def _quadrature_posterior(box, n=601):
    g = torch.linspace(-3, 3, n, dtype=torch.float64)
    p1, p2 = torch.meshgrid(g, g, indexing="ij")
    phi = torch.stack([p1, p2], -1)
    m = phi @ A.double().T
    s = math.sqrt(S2)
    lo, hi = box.low.double(), box.high.double()
    w = (ndtr((hi - m) / s) - ndtr((lo - m) / s)).prod(-1)
    w = w / w.sum()
    mean = (w[..., None] * phi).sum((0, 1))
    sd = (w[..., None] * (phi - mean) ** 2).sum((0, 1)).sqrt()
    return mean, sd


def test_user_protocol_class_and_sga_finds_optimum():
    res = pp.infer_design(LinearToy(), BOX, method="sga", seed=0, num_z=2000, epochs=6, restarts=2)
    # The fixed-sample optimum differs from φ* by the mean of 0.5 z over 2000 draws (s.e. 0.011 per
    # component of Aφ; ≤ 0.02 for φ after A⁻¹); 0.06 leaves room for the optimizer's last steps.
    assert torch.allclose(res.phi_star, PHI_OPT, atol=0.06), res.phi_star
    p_true = float(
        (
            ndtr((BOX.high - PHI_OPT @ A.T) / math.sqrt(S2))
            - ndtr((BOX.low - PHI_OPT @ A.T) / math.sqrt(S2))
        ).prod()
    )
    # Model-predicted P at φ* vs the closed form at the optimum (flat there: second order in the
    # φ error) within 4 Monte Carlo standard errors plus that second-order slack.
    assert abs(res.probability - p_true) < 4 * res.probability_se + 2e-3
    assert res.objective_name == "probability" and res.method == "sga"
    assert res.probability == res.objective and res.probability_se == res.objective_se
    assert len(res.history["objective"]) == 7  # initial + one per epoch
    assert "alpha" in res.summary()


def test_sga_respects_bounds_when_optimum_outside():
    # Box centre needs φ_0 = 5.2 > 3: the constrained optimum sits on the boundary φ_0 = 3.
    box = Box([4.8, -0.6], [5.2, -0.2])
    res = infer_design(LinearToy(), box, "sga", seed=1, num_z=1000, epochs=8, restarts=3)
    bounds = LinearToy.phi_bounds
    assert res.samples is None  # restart end points are not posterior draws
    assert bool(((res.endpoints >= bounds[:, 0]) & (res.endpoints <= bounds[:, 1])).all())
    assert float(res.phi_star[0]) > 2.9


def test_sga_target_value_and_o2_known_minimizers():
    res = infer_design(
        LinearToy(),
        TargetValue([0.6, -0.4], tau=2.0),
        "sga",
        seed=2,
        num_z=2000,
        epochs=5,
        restarts=2,
    )
    assert torch.allclose(res.phi_star, PHI_OPT, atol=0.06)
    assert res.objective_name == "expected_utility"
    target = TargetDensity(MultivariateNormal(torch.tensor([0.6, -0.4]), S2 * torch.eye(2)))
    res = infer_design(
        LinearToy(),
        target,
        "sga",
        seed=3,
        num_z=1000,
        epochs=5,
        restarts=2,
        num_target_samples=400,
        o2_eval_samples=500,
    )
    # Minimizer of the MC objective: A φ = mean of 400 target draws (s.e. 0.035 per component)
    # → 0.15 ≈ 4 s.e. after A⁻¹.
    assert torch.allclose(res.phi_star, PHI_OPT, atol=0.15), res.phi_star
    # KL at the optimum is 0; the estimate is biased high (module docstring) by O(1/M) and has
    # outer s.e. objective_se.
    assert (
        res.objective_name == "kl"
        and -4 * res.objective_se < res.objective < 0.05 + 4 * res.objective_se
    )
    # A KL is not a probability: the O1-only name says so instead of returning it.
    with pytest.raises(AttributeError, match="utility targets"):
        _ = res.probability


def _check_moments(samples, mean, sd, ess, bias_allowance):
    # Monte Carlo error of a sample mean: sd/√ESS (4 s.e.); the sample sd has relative s.e.
    # ≈ 1/√(2 ESS) for near-Gaussian marginals. ``bias_allowance`` (in posterior sds) covers the
    # variational approximation error of a guide; it is 0 for an exact sampler.
    got_mean, got_sd = samples.double().mean(0), samples.double().std(0)
    tol_mean = 4 * sd / math.sqrt(ess) + bias_allowance * sd
    tol_sd = sd * (4 / math.sqrt(2 * ess) + bias_allowance)
    assert ((got_mean - mean).abs() < tol_mean).all(), (got_mean, mean, tol_mean)
    assert ((got_sd - sd).abs() < tol_sd).all(), (got_sd, sd, tol_sd)


def _psis_weighted_mean(res):
    lw = res.idata.sample_stats["log_weight"].values.reshape(-1)
    lw = torch.as_tensor(lw - lw.max())
    w = lw.exp() / lw.exp().sum()
    kish = float(1.0 / (w**2).sum())
    return (w[:, None] * res.samples.double()).sum(0), kish


def test_svi_matches_quadrature_posterior():
    mean, sd = _quadrature_posterior(BOX)
    res = infer_design(LinearToy(), BOX, "svi", seed=0, num_steps=1500, lr=0.02, num_samples=1000)
    assert res.diagnostics["khat"] < 0.7
    # Raw guide moments: a Gaussian in logit space, allowed 0.25 sd of variational bias.
    _check_moments(res.samples, mean, sd, ess=1000, bias_allowance=0.25)
    # Self-normalized importance weights remove the guide's bias; error from the Kish ESS.
    wmean, kish = _psis_weighted_mean(res)
    assert ((wmean - mean).abs() < 4 * sd / math.sqrt(kish)).all(), (wmean, mean, kish)


def test_flow_matches_quadrature_posterior():
    mean, sd = _quadrature_posterior(BOX)
    res = infer_design(
        LinearToy(),
        BOX,
        "flow",
        seed=0,
        num_steps=600,
        lr=0.01,
        num_samples=1000,
        hidden_features=(32, 32),
        transforms=2,
    )
    assert res.diagnostics["khat"] < 0.7
    _check_moments(res.samples, mean, sd, ess=1000, bias_allowance=0.25)
    wmean, kish = _psis_weighted_mean(res)
    assert ((wmean - mean).abs() < 4 * sd / math.sqrt(kish)).all(), (wmean, mean, kish)
    assert len(res.history["elbo"]) == 600


def test_nuts_matches_quadrature_posterior_and_idata(tmp_path):
    mean, sd = _quadrature_posterior(BOX)
    res = infer_design(
        LinearToy(), BOX, "nuts", seed=0, num_samples=300, warmup_steps=200, num_chains=2
    )
    ess = min(res.diagnostics["ess_bulk"])
    _check_moments(res.samples, mean, sd, ess=ess, bias_allowance=0.0)
    assert max(res.diagnostics["r_hat"]) < 1.05
    assert res.diagnostics["divergences"] == 0
    idata = res.idata
    assert set(idata.groups()) >= {"posterior", "sample_stats"}
    assert dict(idata.posterior["phi"].sizes) == {"chain": 2, "draw": 300, "phi_dim": 2}
    assert list(idata.posterior["phi_dim"].values) == ["alpha", "beta"]
    assert idata.sample_stats["diverging"].shape == (2, 300)
    # Results a user can keep: JSON + NetCDF, read back with arviz.
    json_path, nc_path = res.save(str(tmp_path / "r.json"))
    assert nc_path == str(tmp_path / "r.nc")
    back = import_arviz().from_netcdf(nc_path)
    assert list(back.posterior["phi_dim"].values) == ["alpha", "beta"]
    assert torch.allclose(
        torch.as_tensor(back.posterior["phi"].values).reshape(-1, 2), res.samples.double()
    )
    for var in ("energy", "lp", "diverging"):
        assert back.sample_stats[var].shape == (2, 300)
    # energy[i] is the Hamiltonian at the start of the transition to draw i: the potential energy
    # at draw i - 1 (= -lp[i - 1]) plus a kinetic energy >= 0.
    energy, lp = back.sample_stats["energy"].values, back.sample_stats["lp"].values
    assert (energy[:, 1:] >= -lp[:, :-1] - 1e-9).all() and not (energy[:, 1:] == -lp[:, :-1]).all()
    # BFMI (what az.plot_energy shows): well above the usual 0.3 alarm for this easy posterior.
    assert bool((import_arviz().bfmi(back) > 0.3).all())
    attrs = back.posterior.attrs
    assert attrs["psppyro_method"] == "nuts" and int(attrs["psppyro_seed"]) == 0
    assert json.loads(attrs["psppyro_target"])["low"] == [0.4, -0.6]
    d = json.loads(open(json_path).read())
    assert d["posterior_file"] == "r.nc" and d["target"]["high"] == [0.8, -0.2]
    # float32 values are written with their shortest round-trip digits (numpy's str of the
    # float32), which read back to exactly the same float32.
    for name, v in zip(res.phi_names, res.phi_star):
        f32 = np.float32(v.item())
        assert d["phi_star"][name] == float(str(f32)) and np.float32(d["phi_star"][name]) == f32


def test_o2_posterior_concentrates_on_pseudo_data_mle():
    # With N pseudo-data m_i ~ p_target, p(φ | m_1..N) ∝ ∏ N(m_i; Aφ, s² I): Gaussian with mean
    # A⁻¹ m̄ and covariance s² (AᵀA)⁻¹ / N (the box is wide enough not to truncate it).
    target = TargetDensity.normal([0.6, -0.4], S2 * torch.eye(2))
    n, seed = 20, 4
    res = infer_design(
        LinearToy(),
        target,
        "svi",
        seed=seed,
        num_steps=1500,
        lr=0.02,
        num_samples=1000,
        num_pseudo_data=n,
    )
    m_bar = target.sample(n, seed=derive_seed(seed, 3)).mean(0)
    mean = torch.linalg.solve(A, m_bar).double()
    sd = (S2 * torch.linalg.inv(A.T @ A) / n).diagonal().sqrt().double()
    _check_moments(res.samples, mean, sd, ess=1000, bias_allowance=0.25)


# 200 SVI steps: k-hat ≈ 0.74 (measured), judged as a DesignWarning; not what this test checks.
@pytest.mark.filterwarnings("ignore::psppyro.design.DesignWarning")
def test_point_choices_and_reproducibility():
    kw = dict(num_steps=200, lr=0.05, num_samples=200)
    a = infer_design(LinearToy(), BOX, "svi", seed=5, point="median", **kw)
    b = infer_design(LinearToy(), BOX, "svi", seed=5, point="median", **kw)
    assert torch.equal(a.phi_star, b.phi_star) and torch.equal(a.samples, b.samples)
    assert torch.equal(a.phi_star, a.samples.median(0).values)
    c = infer_design(
        LinearToy(),
        BOX,
        "svi",
        seed=5,
        point="best",
        num_candidates=16,
        num_eval_samples=2000,
        **kw,
    )
    assert any(torch.equal(c.phi_star, s) for s in c.samples)


class PriorToy:
    """Unbounded φ ∈ R² with a N(0, I) prior (Rixner-style)."""

    phi_bounds = torch.tensor([[-math.inf, math.inf], [-math.inf, math.inf]])
    latent_dim = 0
    phi_prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)

    def property_dist(self, phi, z):
        return Independent(Normal(phi, 0.5), 1)


def test_unbounded_phi_with_prior():
    res = infer_design(
        PriorToy(),
        Box([0.9, -1.1], [1.1, -0.9]),
        "sga",
        seed=0,
        num_z=10,
        epochs=30,
        batch_size=10,
        lr=0.1,
    )
    assert torch.allclose(res.phi_star, torch.tensor([1.0, -1.0]), atol=0.02)
    # Posterior: prior N(0, 1) × likelihood ≈ N(c; φ, 0.25) → mean 0.8 c, sd √0.2 (box width 0.2
    # adds variance 0.2²/12 to the likelihood: mean 0.789 c, sd 0.449).
    res = infer_design(
        PriorToy(),
        Box([0.9, -1.1], [1.1, -0.9]),
        "svi",
        seed=0,
        num_steps=800,
        lr=0.03,
        num_samples=1000,
    )
    v = 0.25 + 0.2**2 / 12
    post_mean = torch.tensor([1.0, -1.0], dtype=torch.float64) / (1 + v)
    post_sd = torch.full((2,), math.sqrt(v / (1 + v)), dtype=torch.float64)
    _check_moments(res.samples, post_mean, post_sd, ess=1000, bias_allowance=0.1)


class NotAModel:
    phi_bounds = torch.tensor([[0.0, 1.0]])


class MCToy(LinearToy):
    def property_dist(self, phi, z):  # not a diagonal Normal: box probability by Monte Carlo
        loc = phi @ A.T + 0.5 * z
        return MultivariateNormal(loc, 0.25 * torch.eye(2))


class InfiniteBounds(LinearToy):
    phi_bounds = torch.tensor([[-3.0, math.inf], [-3.0, 3.0]])


class NaNBounds(LinearToy):
    phi_bounds = torch.tensor([[-3.0, math.nan], [-3.0, 3.0]])


class BadOrder(LinearToy):
    phi_bounds = torch.tensor([[3.0, -3.0], [-3.0, 3.0]])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        infer_design(LinearToy(), BOX, "hmc")
    with pytest.raises(ValueError, match="unknown option"):
        infer_design(LinearToy(), BOX, "sga", num_stepz=3)
    with pytest.raises(ValueError, match="d_m=3"):
        infer_design(LinearToy(), Box([0.0] * 3, [1.0] * 3), "sga")
    with pytest.raises(TypeError, match="property_dist"):
        infer_design(NotAModel(), BOX, "sga")
    with pytest.raises(TypeError, match="target"):
        infer_design(LinearToy(), (0.0, 1.0), "sga")
    with pytest.raises(ValueError, match="finite unless"):
        infer_design(InfiniteBounds(), BOX, "sga")
    with pytest.raises(ValueError, match="NaN"):
        infer_design(NaNBounds(), BOX, "sga")
    with pytest.raises(ValueError, match="low < high"):
        infer_design(BadOrder(), BOX, "sga")
    with pytest.raises(ValueError, match="exact log utility"):
        infer_design(MCToy(), BOX, "nuts")
    with pytest.raises(ValueError, match="exact log utility"):
        infer_design(LinearToy(), Box([0.0, 0.0], [1.0, 1.0], temperature=0.1), "nuts")
    with pytest.raises(ValueError, match="flow must be one of"):
        infer_design(LinearToy(), BOX, "flow", flow="realnvp")
    with pytest.raises(ValueError, match="init"):
        infer_design(LinearToy(), BOX, "sga", restarts=1, init=[5.0, 0.0])
    with pytest.raises(ValueError, match="seed"):
        infer_design(LinearToy(), BOX, "sga", seed=-1)


def test_monte_carlo_box_with_sga():
    # The MC box estimator with an indicator has no gradient; with a temperature it does.
    box = Box([0.4, -0.6], [0.8, -0.2], temperature=0.02, num_mc=16)
    res = infer_design(MCToy(), box, "sga", seed=0, num_z=400, epochs=5, restarts=2)
    assert torch.allclose(res.phi_star, PHI_OPT, atol=0.25), res.phi_star


def _marginal_quantiles(box, qs, n=601):
    """Posterior marginal quantiles and densities at them (quadrature), per φ component."""
    g = torch.linspace(-3, 3, n, dtype=torch.float64)
    p1, p2 = torch.meshgrid(g, g, indexing="ij")
    m = torch.stack([p1, p2], -1) @ A.double().T
    s = math.sqrt(S2)
    w = (ndtr((box.high.double() - m) / s) - ndtr((box.low.double() - m) / s)).prod(-1)
    h = float(g[1] - g[0])
    out = []
    for marg in (w.sum(1), w.sum(0)):
        dens = marg / (marg.sum() * h)
        cdf = torch.cumsum(dens, 0) * h
        idx = [int(torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64))) for q in qs]
        out.append([(float(g[i]), float(dens[i])) for i in idx])
    return out


@pytest.mark.slow
def test_nuts_long_run_matches_quadrature_quantiles():
    res = infer_design(
        LinearToy(), BOX, "nuts", seed=11, num_samples=1000, warmup_steps=500, num_chains=4
    )
    mean, sd = _quadrature_posterior(BOX)
    ess = min(res.diagnostics["ess_bulk"])
    _check_moments(res.samples, mean, sd, ess=ess, bias_allowance=0.0)
    qs = (0.1, 0.5, 0.9)
    for i, marg in enumerate(_marginal_quantiles(BOX, qs)):
        for q, (x_q, f_q) in zip(qs, marg):
            # s.e. of a sample quantile: √(q(1−q)/ESS) / f(x_q); 4 s.e. plus the grid step.
            tol = 4 * math.sqrt(q * (1 - q) / ess) / f_q + 0.01
            got = float(torch.quantile(res.samples[:, i].double(), q))
            assert abs(got - x_q) < tol, (i, q, got, x_q, tol)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["svi", "flow"])
@pytest.mark.filterwarnings("ignore::psppyro.design.DesignWarning")  # svi: k-hat 0.76, see below
def test_guides_long_run_importance_weighted_quantiles(method):
    opts = dict(num_steps=4000, lr=0.01, num_samples=4000)
    res = infer_design(LinearToy(), BOX, method, seed=12, **opts)
    # Measured k̂: flow ≈ 0.3–0.5; the Gaussian guide ≈ 0.76 at this length (a Gaussian in the
    # logit space of the box cannot match the posterior's tails: docs/architecture.md) — so
    # importance weights are still usable (k̂ < 1: finite mean) but their error is only roughly that
    # of the Kish ESS.
    assert res.diagnostics["khat"] < (0.7 if method == "flow" else 1.0)
    mean, sd = _quadrature_posterior(BOX)
    # Reverse-KL fits are under-dispersed: measured sd 14–20 % low for both guides.
    _check_moments(res.samples, mean, sd, ess=4000, bias_allowance=0.25)
    lw = torch.as_tensor(res.idata.sample_stats["log_weight"].values.reshape(-1))
    w = (lw - lw.max()).exp()
    w = w / w.sum()
    kish = float(1.0 / (w**2).sum())
    qs = (0.1, 0.5, 0.9)
    for i, marg in enumerate(_marginal_quantiles(BOX, qs)):
        order = torch.argsort(res.samples[:, i])
        cdf = torch.cumsum(w[order], 0)
        for q, (x_q, f_q) in zip(qs, marg):
            got = float(
                res.samples[
                    order[int(torch.searchsorted(cdf, torch.tensor(q, dtype=cdf.dtype)))], i
                ]
            )
            tol = 4 * math.sqrt(q * (1 - q) / kish) / f_q + 0.01
            assert abs(got - x_q) < tol, (method, i, q, got, x_q, tol)


@pytest.mark.parametrize("flow", ["maf", pytest.param("cnf", marks=pytest.mark.slow)])
@pytest.mark.filterwarnings("ignore::psppyro.design.DesignWarning")  # 100 steps: k-hat ≈ 0.8
def test_other_flows_learn(flow):
    res = infer_design(
        LinearToy(),
        BOX,
        "flow",
        seed=0,
        flow=flow,
        num_steps=100,
        lr=0.01,
        num_samples=100,
        hidden_features=(16, 16),
        num_eval_samples=500,
    )
    elbo = torch.tensor(res.history["elbo"])
    # An untrained flow spreads φ over the whole square (log P ≈ −8 and worse); training must raise
    # the ELBO by far more than its step-to-step noise (≈ 0.5 with 4 particles).
    assert float(elbo[-20:].mean()) > float(elbo[:10].mean()) + 1.0
    bounds = LinearToy.phi_bounds
    assert bool(((res.samples >= bounds[:, 0]) & (res.samples <= bounds[:, 1])).all())
