r"""Posterior design: p(φ, z | target) explored by SVI, NUTS or a normalizing-flow guide.

**O1 as conditioning** (``docs/architecture.md`` § "The design problem"). With a prior p(φ) (uniform
on the φ box, or the model's ``phi_prior``) and z ~ N(0, I),

.. math::

    p(φ, z \mid m ∈ M_d) ∝ u(φ, z)\, p(z)\, p(φ), \qquad u(φ, z) = P(m ∈ M_d \mid φ, z),

written as a Pyro model with ``pyro.factor("target", log u)``. Its φ-marginal is ∝ p(φ) P(m∈M_d
| φ):
the mode is the O1 optimum (under a flat prior) and the spread shows how robust a design is. A
``TargetValue`` uses u = E[exp(−τ‖m − m_t‖²) | φ, z] (≤ 1, so still a valid likelihood).

**O2 as pseudo-data** (``TargetDensity``). KL(p_target ‖ p(m|φ)) is minimized by the
maximum-likelihood φ
of infinitely many draws from p_target, so the Bayesian analogue conditions on N target draws
m_1..N ~ p_target, each with its own latent: p(φ, z_{1:N} | m_{1:N}) ∝ p(φ) ∏_i p(m_i | φ, z_i)
p(z_i).
Its φ-marginal concentrates on the O2 minimizer as N grows (width ∝ 1/√N, so N sets the "strength"
of the target; option ``num_pseudo_data``, default 20).

**Methods.**

- ``svi``: ``AutoLowRankMultivariateNormal`` (option ``rank``) + ``Trace_ELBO`` + Adam. A low-rank
  Gaussian in the unconstrained space fits box-shaped posteriors poorly
  (``docs/architecture.md`` § "Measured figures"): check the PSIS k̂ reported in ``diagnostics`` (k̂
  > 0.7: the guide is unreliable).
- ``nuts``: ``pyro.infer.NUTS`` in ``MCMC``. Chains run one after another in this process (each
with its
  own derived seed): Pyro's multi-chain mode forks worker processes (``mp_context``) which is
  fragile with
  torch threads and not faster on a 2-core machine. NUTS needs an exact log-density, so O1 is only
  allowed when the target's log utility has a closed form (diagonal-Normal property model, no
  temperature); otherwise the Monte Carlo factor would be noisy and the sampler invalid.
- ``flow``: a zuko flow (``nsf`` default, ``maf``, ``cnf``) over the unconstrained joint vector
  (φ, z), wrapped by :class:`pyro.contrib.zuko.ZukoToPyro` as an auxiliary guide site; φ is
  mapped to its
  box by ``biject_to`` and enters the model through a ``Delta`` site whose ``log_density`` is
  minus the
  log-Jacobian, so the guide density of φ is exact. (``ZukoToPyro`` has no ``support``; the subclass
  here adds it for Pyro's validation.)

After fitting a guide, ``num_samples`` guide draws are scored against the model: log w = log p
− log q.
Their Pareto-smoothed k̂ (``arviz.psislw``) is the guide-quality diagnostic; the draws themselves are
the returned posterior samples (unweighted: they are samples of q).
"""

from __future__ import annotations

import math
import time
import warnings

import pyro
import pyro.distributions as pdist
import torch
from pyro.contrib.zuko import ZukoToPyro
from pyro.infer.importance import vectorized_importance_weights
from torch.distributions import biject_to, constraints

from .._random import derive_seed
from .._validation import check_choice, check_positive
from .objectives import _check_int, check_model, phi_prior, sample_latents
from .targets import TargetDensity, _diag_normal

__all__ = ["design_model", "import_arviz", "run_flow", "run_nuts", "run_svi"]


def import_arviz():
    """Import arviz without its import-time FutureWarning banner."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def design_model(model, target, num_pseudo_data=20, seed=0):
    """The Pyro model of posterior design (module docstring) — a callable with no arguments.

    Sites: ``phi`` (d_φ,), ``z`` (latent_dim,) — or (N, latent_dim) inside plate ``data`` for O2 —
    and the factor ``target`` (O1) or observed ``m`` (O2).

    Args:
        model: design-protocol model; target: Box, TargetValue or TargetDensity.
        num_pseudo_data: N, target draws conditioned on for O2.
        seed: seed of the O2 pseudo-data draw.

    Returns:
        A Pyro model function.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + z, 0.5), 1)
        >>> tr = pyro.poutine.trace(design_model(M(), Box([0.0], [1.0]))).get_trace()
        >>> sorted(n for n in tr.nodes if n in ("phi", "z", "target"))
        ['phi', 'target', 'z']
    """
    bounds, latent_dim = check_model(model)
    prior = phi_prior(model)
    zeros = torch.zeros(latent_dim, dtype=bounds.dtype, device=bounds.device)
    if isinstance(target, TargetDensity):
        n = _check_int("num_pseudo_data", num_pseudo_data)
        m_data = target.sample(n, seed=derive_seed(seed, 3)).to(bounds)

        def o2_model():
            phi = pyro.sample("phi", prior)
            with pyro.plate("data", n):
                z = pyro.sample("z", pdist.Normal(zeros, 1.0).to_event(1))
                pyro.sample("m", model.property_dist(phi, z), obs=m_data)

        return o2_model

    def o1_model():
        phi = pyro.sample("phi", prior)
        if latent_dim > 0:
            z = pyro.sample("z", pdist.Normal(zeros, 1.0).to_event(1))
        else:
            z = zeros
        pyro.factor("target", target.log_utility(model.property_dist(phi, z)))

    return o1_model


def _score_guide(pyro_model, guide, num_samples):
    """Draw from the guide and score against the model: (phi (S, d), log_w (S,)), vectorized."""
    with torch.no_grad():
        log_w, _, g_tr = vectorized_importance_weights(
            pyro_model, guide, num_samples=num_samples, max_plate_nesting=1
        )
        phi = g_tr.nodes["phi"]["value"].detach()
    return phi.reshape(num_samples, phi.shape[-1]), log_w.detach().double().reshape(num_samples)


def _psis_khat(log_w):
    az = import_arviz()
    lw = log_w.numpy().astype("float64")
    if not (lw == lw).all() or not math.isfinite(float(lw.max())):
        return float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, khat = az.psislw(lw - lw.max())
    return float(khat)


def _fit(pyro_model, guide, num_steps, lr, num_particles, progress, desc):
    optim = pyro.optim.Adam({"lr": lr})
    loss = pyro.infer.Trace_ELBO(
        num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1
    )
    svi = pyro.infer.SVI(pyro_model, guide, optim, loss)
    steps = range(num_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, unit="step")
    elbo = []
    for _ in steps:
        elbo.append(-float(svi.step()))
    return elbo


def _check_common(num_steps, lr, num_particles, num_samples):
    _check_int("num_steps", num_steps)
    check_positive("lr", lr)
    _check_int("num_particles", num_particles)
    _check_int("num_samples", num_samples, minimum=2)


def run_svi(
    model,
    target,
    seed=0,
    num_steps=2000,
    lr=0.01,
    rank=None,
    num_particles=4,
    num_samples=1000,
    num_pseudo_data=20,
    progress=False,
):
    """SVI with an ``AutoLowRankMultivariateNormal`` guide; returns samples, ELBO trace and k̂.

    Args:
        model, target: as for :func:`design_model`.
        seed: int seed. num_steps, lr: Adam steps and learning rate. rank: low-rank size (default
            Pyro's ≈ √D). num_particles: ELBO particles per step. num_samples: guide draws returned.
        num_pseudo_data: N for O2. progress: tqdm bar.

    Returns:
        dict with ``samples`` (S, d_φ), ``log_weights`` (S,), ``elbo`` (list), ``khat``, ``guide``.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
        >>> out = run_svi(M(), Box([0.5], [1.5]), num_steps=300, lr=0.05, num_samples=50)
        >>> out["samples"].shape
        torch.Size([50, 1])
    """
    _check_common(num_steps, lr, num_particles, num_samples)
    if rank is not None:
        rank = _check_int("rank", rank)
    pyro_model = design_model(model, target, num_pseudo_data, seed)
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(derive_seed(seed, 10))
        guide = pyro.infer.autoguide.AutoLowRankMultivariateNormal(
            pyro_model, rank=rank, init_loc_fn=pyro.infer.autoguide.init_to_median
        )
        elbo = _fit(pyro_model, guide, num_steps, lr, num_particles, progress, "svi")
        samples, log_w = _score_guide(pyro_model, guide, num_samples)
    return {
        "samples": samples,
        "log_weights": log_w,
        "elbo": elbo,
        "khat": _psis_khat(log_w),
        "guide": guide,
    }


class _ZukoDistribution(ZukoToPyro):
    """``ZukoToPyro`` with a ``support`` (for Pyro's validation) and ``expand`` (for plates:
    vectorized
    ELBO particles and importance sampling draw ``batch_shape`` flow samples at once)."""

    support = constraints.real_vector

    def __init__(self, dist, batch_shape=()):
        super().__init__(dist)
        self._expanded = torch.Size(batch_shape)

    @property
    def batch_shape(self):
        return self._expanded

    def expand(self, batch_shape, _instance=None):
        return _ZukoDistribution(self.dist, batch_shape)

    def __call__(self, shape=()):
        return super().__call__(torch.Size(shape) + self._expanded)


_FLOWS = ("nsf", "maf", "cnf")


def _make_flow(kind, features, transforms, hidden_features, passes):
    import zuko

    hidden = tuple(hidden_features)
    if kind == "nsf":
        return zuko.flows.NSF(
            features, transforms=transforms, hidden_features=hidden, passes=passes
        )
    if kind == "maf":
        return zuko.flows.MAF(
            features, transforms=transforms, hidden_features=hidden, passes=passes
        )
    return zuko.flows.CNF(features, hidden_features=hidden)


def _flow_guide(model, target, flow, num_pseudo_data):
    bounds, latent_dim = check_model(model)
    d_phi = bounds.shape[0]
    to_phi = biject_to(phi_prior(model).support)
    o2 = isinstance(target, TargetDensity)

    def guide():
        pyro.module("design_flow", flow)
        u = pyro.sample("_flow_latent", _ZukoDistribution(flow()), infer={"is_auxiliary": True})
        u_phi = u[..., :d_phi]
        phi = to_phi(u_phi)
        ladj = to_phi.log_abs_det_jacobian(u_phi, phi)
        pyro.sample("phi", pdist.Delta(phi, log_density=-ladj, event_dim=1))
        if latent_dim == 0:
            return
        if o2:
            # u is (D,) or, under the particle plate left of plate "data", (P, 1, D) -> z (P,
            # N, d_z).
            lead = u.shape[:-1]
            if len(lead) and lead[-1] == 1:
                lead = lead[:-1]
            z = u[..., d_phi:].reshape(lead + (num_pseudo_data, latent_dim))
            with pyro.plate("data", num_pseudo_data):
                pyro.sample("z", pdist.Delta(z, event_dim=1))
        else:
            pyro.sample("z", pdist.Delta(u[..., d_phi:], event_dim=1))

    return guide


def run_flow(
    model,
    target,
    seed=0,
    flow="nsf",
    num_steps=2000,
    lr=0.005,
    transforms=3,
    hidden_features=(64, 64),
    passes=2,
    num_particles=4,
    num_samples=1000,
    num_pseudo_data=20,
    progress=False,
):
    """SVI with a zuko normalizing-flow guide over (φ, z); returns samples, ELBO trace and k̂.

    Args:
        model, target: as for :func:`design_model`.
        seed: int seed. flow: ``"nsf"`` (neural spline flow, default), ``"maf"`` or ``"cnf"``.
        num_steps, lr: Adam steps and learning rate. transforms, hidden_features: flow size
        (CNF ignores
            ``transforms``). passes: sequential passes of each autoregressive transform's inverse
            (2 = coupling layers, default: sampling — needed at every ELBO step — costs 2 network
            calls instead of D; ``None`` = fully autoregressive, more expressive, D× slower to
            sample). num_particles: ELBO particles. num_samples: guide draws returned.
        num_pseudo_data: N for O2. progress: tqdm bar.

    Returns:
        dict with ``samples`` (S, d_φ), ``log_weights`` (S,), ``elbo``, ``khat`` and ``flow``.

    Raises:
        ValueError: unknown ``flow``.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
        >>> out = run_flow(M(), Box([0.5], [1.5]), num_steps=50, num_samples=20)
        >>> out["samples"].shape
        torch.Size([20, 1])
    """
    check_choice("flow", flow, _FLOWS)
    _check_common(num_steps, lr, num_particles, num_samples)
    transforms = _check_int("transforms", transforms)
    bounds, latent_dim = check_model(model)
    n_z = latent_dim * (num_pseudo_data if isinstance(target, TargetDensity) else 1)
    pyro_model = design_model(model, target, num_pseudo_data, seed)
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(derive_seed(seed, 11))
        net = _make_flow(flow, bounds.shape[0] + n_z, transforms, hidden_features, passes).to(
            bounds
        )
        guide = _flow_guide(model, target, net, num_pseudo_data)
        elbo = _fit(pyro_model, guide, num_steps, lr, num_particles, progress, f"flow ({flow})")
        samples, log_w = _score_guide(pyro_model, guide, num_samples)
    return {
        "samples": samples,
        "log_weights": log_w,
        "elbo": elbo,
        "khat": _psis_khat(log_w),
        "flow": net,
    }


def run_nuts(
    model,
    target,
    seed=0,
    num_samples=500,
    warmup_steps=500,
    num_chains=2,
    target_accept_prob=0.8,
    max_tree_depth=10,
    full_mass=False,
    num_pseudo_data=20,
    progress=False,
):
    """NUTS on the posterior-design model, chains run sequentially (module docstring).

    Args:
        model, target: as for :func:`design_model`.
        seed: int seed (chain c uses ``derive_seed(seed, 20, c)``). num_samples, warmup_steps:
        per chain.
        num_chains: number of chains. target_accept_prob, max_tree_depth: NUTS settings.
        full_mass: adapt a dense mass matrix (helps the strong φ–z correlations of the design
            posterior: m depends on φ and z jointly), else a diagonal one.
        num_pseudo_data: N for O2. progress: Pyro's progress bar.

    Returns:
        dict with ``samples`` (chains, draws, d_φ), ``diverging`` (chains, draws) bool,
        ``accept_rate`` (chains,), ``sampling_time`` (s, sum over chains, warm-up included).

    Raises:
        ValueError: the O1 log utility has no closed form for this model/target (NUTS needs an
            exact log density).

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
        >>> out = run_nuts(M(), Box([0.5], [1.5]), num_samples=20, warmup_steps=20, num_chains=1)
        >>> out["samples"].shape
        torch.Size([1, 20, 1])
    """
    num_samples = _check_int("num_samples", num_samples)
    warmup_steps = _check_int("warmup_steps", warmup_steps, minimum=0)
    num_chains = _check_int("num_chains", num_chains)
    _check_int("max_tree_depth", max_tree_depth)
    bounds, latent_dim = check_model(model)
    if not isinstance(target, TargetDensity):
        phi0 = phi_prior(model).mean if getattr(model, "phi_prior", None) else bounds.mean(-1)
        z0 = sample_latents(model, 1, torch.Generator().manual_seed(0), bounds)[0]
        dist = model.property_dist(phi0, z0)
        if getattr(target, "temperature", None) is not None or _diag_normal(dist) is None:
            raise ValueError(
                "method='nuts' needs an exact log utility: the target must be a Box without "
                "temperature or a TargetValue, and model.property_dist must return "
                f"Independent(Normal, 1); got {type(dist).__name__} for {target!r}"
            )
    pyro_model = design_model(model, target, num_pseudo_data, seed)
    samples, diverging, accept = [], [], []
    t0 = time.perf_counter()
    for c in range(num_chains):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 20, c))
            kernel = pyro.infer.NUTS(
                pyro_model,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
                full_mass=bool(full_mass),
            )
            mcmc = pyro.infer.MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=1,
                disable_progbar=not progress,
            )
            mcmc.run()
        samples.append(mcmc.get_samples()["phi"].detach())
        diag = mcmc.diagnostics()
        div = torch.zeros(num_samples, dtype=torch.bool)
        idx = diag.get("divergences", {}).get("chain 0", [])
        if len(idx):
            div[torch.as_tensor(list(idx), dtype=torch.long)] = True
        diverging.append(div)
        accept.append(float(diag.get("acceptance rate", {}).get("chain 0", float("nan"))))
    return {
        "samples": torch.stack(samples),
        "diverging": torch.stack(diverging),
        "accept_rate": accept,
        "sampling_time": time.perf_counter() - t0,
    }
