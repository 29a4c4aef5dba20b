r"""Variational-Bayes EM over the nuisance latent (Rixner & Koutsourelakis 2022): method ``vbem``.

**O1** (a utility u ≥ 0: :class:`~psppyro.design.Box` or
:class:`~psppyro.design.TargetValue`). With z the standard-normal nuisance latent of the design
protocol (for the surrogate chain: the GRF white noise) and p_M(κ | φ, z) the model,

.. math::

    \log U(φ) = \log \int u(κ)\, p_M(κ \mid φ, z)\, p(z)\, dκ\, dz
    \;\ge\; E_{q_ξ(κ, z)}\Big[\log u(κ) + \log p_M(κ \mid φ, z) + \log p(z) - \log q_ξ(κ, z)\Big]
    = F(ξ, φ).

VB-EM alternates an **E-step** — ``e_steps`` Adam steps on ξ with φ fixed (stochastic variational
inference with the reparameterization trick, ``num_particles`` draws per step; only the model
term is estimated by Monte Carlo, E_q[log p(z)] and the entropy of q are exact — in 4 096
dimensions their Monte Carlo estimate, as Pyro's ``Trace_ELBO`` would form it, is so noisy that
Adam drifts q away from the prior and the ELBO falls) — and an **M-step** — ``m_steps``
Adam steps on φ with q fixed, whose gradient is :math:`E_q[∇_φ \log p_M(κ \mid φ, z)]` — until
the ELBO stalls: the mean of the iteration ELBOs (each the mean of its E-step ELBOs) over the
last ``patience`` iterations is not ``tol`` above their mean over the ``patience`` iterations
before (or ``max_iter`` is reached). φ* is the φ of the best iteration. Comparing window means,
not the best single value, matters twice on the 4 096-D chain: the iteration ELBOs scatter by
nats, so a lucky early value is not beaten for many iterations; and the first iteration, with q
still the prior, is often the highest for a while (Adam's first steps on the 200 000 entries of L
lower the ELBO before q fits), so "no new best for ``patience`` iterations" stopped warm-started
runs at iteration ``patience`` + 1 with φ one step from its start (O2,
``docs/results/rixner.md``). The
variational family is the paper's low-rank Gaussian

.. math::

    q_ξ(κ, z) = \mathcal N\big(μ,\ \mathrm{diag}(d) + L L^\top\big),\qquad L ∈ R^{(d_m + n)×M},

rank M = 50 by default. The indicator u = 1_K has no useful log, so a Box is smoothed,
:math:`\log u(κ) = \sum_i \log σ((κ_i - l_i)/T) + \log σ((h_i - κ_i)/T)`, with the Box's own
``temperature`` or this method's ``temperature`` option (default 5 % of the narrowest box side);
for TargetValue :math:`\log u = -τ\|κ - κ_t\|^2` exactly.

**O2** (:class:`~psppyro.design.TargetDensity`). With S draws κ_s ~ p_target
(``num_target_samples``, paper: 20),

.. math::

    \frac1S \sum_s \log p_M(κ_s \mid φ) \;\ge\; \frac1S\sum_s E_{q_s(z)}\big[\log p_M(κ_s \mid φ, z)
    + \log p(z) - \log q_s(z)\big],

one low-rank Gaussian q_s per target draw (as in the paper), all updated in each E-step.
KL(p_target ‖ p(κ | φ)) ≤ −H(p_target) − F.

**Tempering** (``tempering=True``, :mod:`psppyro.design.tempering`): VB-EM starts on a target
reachable at φ(0) (λ = 0) and, each time the ELBO stalls at a level λ < 1, moves to the largest
λ whose importance weights for ``num_weight_samples`` draws of q keep the normalized ESS
≥ ``ess_threshold``; convergence is only declared at λ = 1.

The method is registered as ``infer_design(model, target, method="vbem", ...)`` and works on any
design-protocol model (``docs/architecture.md`` § "The design protocol"); it was written for the
surrogate chain :class:`~psppyro.models.SurrogateChain`, where z has 4 096 components.
``extras["q"]`` holds the fitted :class:`LowRankQ` and ``extras["sample_latents"](n, seed)``
draws z from q's z-marginal (a mixture over the q_s for O2) — what active learning uses for its
candidate pool.

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). Self-supervised optimization of random material
    microstructures in the small-data regime. npj Computational Materials 8, 46 (Eqs. 4–5; SI:
    VB-EM algorithm, low-rank variational approximation, tempering).
    Beal, M. J., Ghahramani, Z. (2003). The variational Bayesian EM algorithm.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import LowRankMultivariateNormal

from .._random import derive_seed, make_generator
from .._validation import check_int, check_interval, check_positive
from .protocol import as_checked
from .registry import MethodOutput, register_method
from .sga import _initial_phi, phi_transform
from .targets import Box, TargetDensity, TargetValue, as_target
from .tempering import TemperedTarget, next_level, start_box

__all__ = ["LowRankQ", "run_vbem"]


class LowRankQ(torch.nn.Module):
    r"""Low-rank Gaussian :math:`\mathcal N(μ, \mathrm{diag}(d) + LL^\top)`, optionally batched.

    Args:
        dim: event size. rank: columns of L (capped at ``dim``). batch: batch shape (O2: (S,)).
        loc: initial mean (broadcast to ``(*batch, dim)``); scale: initial standard deviations.
        seed: seed of the small random initial L.

    Example::

        >>> q = LowRankQ(5, rank=2)
        >>> q.dist().rsample((3,)).shape
        torch.Size([3, 5])
    """

    def __init__(self, dim, rank=50, batch=(), loc=None, scale=None, seed=0, dtype=None):
        super().__init__()
        dim = check_int("dim", dim)
        rank = min(check_int("rank", rank), dim)
        dtype = dtype or torch.get_default_dtype()
        shape = tuple(batch) + (dim,)
        loc = torch.zeros(shape, dtype=dtype) if loc is None else torch.as_tensor(loc).to(dtype)
        if scale is None:
            scale = torch.ones(shape, dtype=dtype)
        scale = torch.as_tensor(scale).to(dtype)
        g = make_generator(derive_seed(seed, 7))
        self.loc = torch.nn.Parameter(loc.expand(shape).clone())
        self.log_diag = torch.nn.Parameter((2 * scale.expand(shape).log()).clone())
        self.factor = torch.nn.Parameter(
            0.01 * torch.randn(shape + (rank,), generator=g, dtype=torch.float64).to(dtype)
        )

    def dist(self) -> LowRankMultivariateNormal:
        """The distribution (batch shape ``batch``, event shape (dim,))."""
        return LowRankMultivariateNormal(self.loc, self.factor, self.log_diag.exp())


def _smooth_log_utility(target, temperature):
    """κ (..., d_m) → log u(κ) (...,) for the ELBO (module docstring)."""
    if isinstance(target, Box):
        t = target.temperature or temperature
        if t is None:
            t = 0.05 * float((target.high - target.low).min())
        lo, hi = target.low, target.high

        def log_u(k):
            return (torch.nn.functional.logsigmoid((k - lo.to(k)) / t)
                    + torch.nn.functional.logsigmoid((hi.to(k) - k) / t)).sum(-1)

        return log_u
    if isinstance(target, TargetValue):
        return lambda k: -target.tau * ((k - target.m_target.to(k)) ** 2).sum(-1)

    def generic(k):
        u = target.utility(k)
        return torch.log(u.clamp_min(torch.finfo(u.dtype).tiny))

    return generic


def _stalled(values, patience, tol):
    """Mean of the last ``patience`` values not ``tol`` above that of the ``patience`` before.

    Example::

        >>> _stalled([1.0, 2.0, 3.0, 4.0], 2, 0.05), _stalled([1.0, 2.0, 1.5, 1.5], 2, 0.05)
        (False, True)
    """
    if len(values) < 2 * patience:
        return False
    new, old = values[-patience:], values[-2 * patience:-patience]
    return sum(new) / patience < sum(old) / patience + tol


def _exact_log_utility(target, dist):
    """log E_{p_M}[u] in closed form where possible (weights of the tempering step)."""
    if isinstance(target, Box) and target.temperature is not None:
        target = Box(target.low, target.high)
    return target.log_utility(dist)


def _moments(cm, phi, num, seed):
    """Mean and standard deviation of κ under the model at φ (num z draws from the prior)."""
    g = make_generator(derive_seed(seed, 5))
    with torch.no_grad():
        z = cm.sample_latents(num, g)
        d = cm.property_dist(phi, z)
        mean, var = d.mean, d.variance
        if not (torch.isfinite(mean).all() and torch.isfinite(var).all()):
            m = d.sample()
            mean, var = m, torch.zeros_like(m)
        mu = mean.mean(0)
        sd = (var.mean(0) + mean.var(0, unbiased=False)).sqrt().clamp_min(1e-3)
        return mu, sd, mean


def run_vbem(
    model,
    target,
    seed=0,
    progress=False,
    rank=50,
    num_particles=4,
    e_steps=10,
    m_steps=1,
    lr_q=0.01,
    lr_phi=0.05,
    max_iter=200,
    patience=10,
    tol=0.05,
    init=None,
    temperature=None,
    num_target_samples=20,
    tempering=False,
    ess_threshold=0.5,
    num_weight_samples=256,
):
    """VB-EM on the ELBO of log U(φ) (O1) or of the O2 cross-entropy, low-rank Gaussian q.

    Most users call :func:`psppyro.design.infer_design` with ``method="vbem"``.

    Args:
        model: design-protocol model (or ``CheckedModel``). target: Box, TargetValue or
            TargetDensity.
        seed: int seed (φ(0) ~ prior, q's initial L, all Monte Carlo draws). progress: tqdm bar.
        rank: rank M of the low-rank covariance (paper 50).
        num_particles: reparameterized draws per ELBO estimate (per target draw for O2).
        e_steps: Adam steps on q per EM iteration. m_steps: Adam steps on φ per iteration.
        lr_q, lr_phi: Adam learning rates of q and φ.
        max_iter: maximum EM iterations. patience: window (iterations) of the stall test that
            stops VB-EM (or moves to the next tempering level; module docstring). tol: ELBO
            improvement (nats) of a window mean that counts as progress.
        init: initial φ (d_φ,); default a draw from the model's prior (the paper: N(0, I)).
        temperature: smoothing T of a Box without its own temperature (module docstring).
        num_target_samples: S, target draws of O2, each with its own q.
        tempering: adaptive tempering of the target (module docstring).
        ess_threshold: minimum normalized ESS of a tempering step.
        num_weight_samples: draws of q for the tempering weights.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``phi_star``, ``history``
        (``elbo``, ``level``, ``phi`` per iteration), ``diagnostics`` (``iterations``,
        ``converged``, ``best_elbo``, ``tempering_levels``) and ``extras`` (``q``,
        ``sample_latents``).

    Raises:
        ValueError: a bad option (named), ``init`` of the wrong shape or outside the bounds.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> out = run_vbem(ToyChain(), Box([0.9], [1.1]), init=[-1.0], max_iter=10, e_steps=3,
        ...                lr_q=0.1, lr_phi=0.2, num_particles=8)
        >>> 0.5 < float(out.phi_star[0]) < 1.5        # from -1 towards the optimum 1
        True
        >>> out.history["elbo"][-1] > out.history["elbo"][0]
        True
    """
    target = as_target(target)
    rank = check_int("rank", rank)
    num_particles = check_int("num_particles", num_particles)
    e_steps = check_int("e_steps", e_steps)
    m_steps = check_int("m_steps", m_steps, minimum=0)
    max_iter = check_int("max_iter", max_iter)
    patience = check_int("patience", patience)
    num_target_samples = check_int("num_target_samples", num_target_samples)
    num_weight_samples = check_int("num_weight_samples", num_weight_samples, minimum=2)
    check_positive("lr_q", lr_q)
    check_positive("lr_phi", lr_phi)
    check_positive("tol", tol, allow_zero=True)
    if temperature is not None:
        check_positive("temperature", temperature)
    if not isinstance(tempering, bool):
        raise TypeError(f"tempering must be True or False, got {tempering!r}")
    check_interval("ess_threshold", ess_threshold, 0.0, 1.0)
    density = isinstance(target, TargetDensity)
    if not density and not hasattr(target, "utility"):
        raise TypeError(f"target must be a Box, TargetValue or TargetDensity, got {target!r}")
    cm = as_checked(model, target)
    dtype = cm.bounds.dtype
    n_z, d_m = cm.latent_dim, cm.d_m
    phi0 = _initial_phi(cm, None if init is None else torch.as_tensor(init).reshape(1, -1), 1,
                        seed)[0]
    transform = phi_transform(cm)
    v = transform.inv(phi0).detach().clone().requires_grad_(True)

    mu0, sd0, means0 = _moments(cm, phi0, 64, seed)
    path = None
    if tempering:
        if isinstance(target, Box):
            path = TemperedTarget(target, start_box(target, means0))
        else:
            path = TemperedTarget(target, mu0)
    level = 0.0 if tempering else 1.0

    if density:
        draws = target.draws(num_target_samples, seed=derive_seed(seed, 2)).to(dtype)
        q = LowRankQ(n_z, rank, batch=(num_target_samples,), seed=seed, dtype=dtype)
    else:
        draws = None
        start = path.at(0.0) if path is not None else target
        loc_k = start.center.to(dtype) if isinstance(start, Box) else mu0.to(dtype)
        scale_k = sd0.to(dtype)
        loc = torch.cat([loc_k, torch.zeros(n_z, dtype=dtype)])
        scale = torch.cat([scale_k, torch.ones(n_z, dtype=dtype)])
        q = LowRankQ(d_m + n_z, rank, loc=loc, scale=scale, seed=seed, dtype=dtype)
    opt_q = torch.optim.Adam(q.parameters(), lr=lr_q)
    opt_phi = torch.optim.Adam([v], lr=lr_phi)

    def current_target():
        return path.at(level) if path is not None else target

    def current_draws():
        if path is None or not density:
            return draws
        return draws + path.shift(level).to(draws)

    def model_terms(phi, sample, log_u, kdraws):
        """log u(κ) + log p_M(κ | φ, z) (O1) or log p_M(κ_s | φ, z) (O2), shape sample batch."""
        if density:
            z = sample  # (L, S, n_z)
            return cm.property_dist(phi, z).log_prob(kdraws)
        k, z = sample[..., :d_m], sample[..., d_m:]
        return log_u(k) + cm.property_dist(phi, z).log_prob(k)

    log2pi = math.log(2 * math.pi)

    def expected_log_prior(qd):
        """E_q[log N(z; 0, I)] in closed form (mean 0, covariance diag(d) + LL^T of the z block)."""
        loc, diag, fac = q.loc, qd.cov_diag, q.factor
        if not density:
            loc, diag, fac = loc[..., d_m:], diag[..., d_m:], fac[..., d_m:, :]
        return -0.5 * (loc.pow(2).sum(-1) + diag.sum(-1) + fac.pow(2).sum((-2, -1))
                       + n_z * log2pi)

    def elbo(phi, log_u, kdraws):
        # Only the model term is a Monte Carlo estimate: E_q[log p(z)] and the entropy of q are
        # closed-form, which removes the variance of a 4 096-term Monte Carlo sum.
        qd = q.dist()
        s = qd.rsample((num_particles,))
        val = model_terms(phi, s, log_u, kdraws).mean(0)
        return (val + expected_log_prior(qd) + qd.entropy()).mean()

    def sample_latents(num, seed=0):
        """z ~ q's z-marginal: Tensor (num, latent_dim) (a mixture over q_s for O2)."""
        num = check_int("num", num)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 11))
            s = q.dist().sample((num,))
            if density:
                pick = torch.randint(0, s.shape[1], (num,))
                return s[torch.arange(num), pick]
            return s[..., d_m:]

    def log_f_for_tempering(phi):
        """λ → log-utilities (rows, N_w) of the current q draws (tempering weights)."""
        with torch.no_grad():
            if density:
                z = q.dist().sample((num_weight_samples,))  # (N, S, n_z)
                d = cm.property_dist(phi, z)

                def log_f(lam):
                    shift = path.shift(lam).to(draws)
                    return d.log_prob(draws + shift).T  # (S, N)

                return log_f
            z = q.dist().sample((num_weight_samples,))[..., d_m:]
            d = cm.property_dist(phi, z)
            return lambda lam: _exact_log_utility(path.at(lam), d)

    history = {"elbo": [], "level": [], "phi": []}
    best_phi, converged, level_values = phi0.clone(), False, []
    best_final = -math.inf
    levels = [(level, 1.0)] if tempering else []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc="vbem", unit="it")
    n_iter = 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 3))
            for _ in range(max_iter):
                n_iter += 1
                log_u = None if density else _smooth_log_utility(current_target(), temperature)
                kdraws = current_draws()
                phi = transform(v).detach()
                vals = []
                for _ in range(e_steps):  # E-step
                    loss = -elbo(phi, log_u, kdraws)
                    opt_q.zero_grad()
                    loss.backward()
                    opt_q.step()
                    vals.append(-float(loss.detach()))
                for _ in range(m_steps):  # M-step
                    with torch.no_grad():
                        s = q.dist().sample((num_particles,))
                    loss = -model_terms(transform(v), s, log_u, kdraws).mean()
                    opt_phi.zero_grad()
                    loss.backward()
                    opt_phi.step()
                value = sum(vals) / len(vals)
                phi_now = transform(v).detach()
                history["elbo"].append(value)
                history["level"].append(level)
                history["phi"].append(phi_now.tolist())
                level_values.append(value)
                if level >= 1.0 and value > best_final:
                    best_final, best_phi = value, phi_now.clone()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(elbo=f"{value:.4g}", level=f"{level:.3g}")
                if _stalled(level_values, patience, tol):
                    if level >= 1.0:
                        converged = True
                        break
                    level, ess = next_level(log_f_for_tempering(phi_now), level, ess_threshold)
                    levels.append((level, ess))
                    level_values = []
    finally:
        if bar is not None:
            bar.close()
    if best_final == -math.inf:  # the final level was never reached: the last φ
        best_phi = transform(v).detach().clone()
    q.requires_grad_(False)
    return MethodOutput(
        phi_star=best_phi,
        history=history,
        diagnostics={
            "iterations": n_iter,
            "converged": converged,
            "best_elbo": None if best_final == -math.inf else float(best_final),
            "final_level": float(level),
            "tempering_levels": [[float(a), float(b)] for a, b in levels],
        },
        extras={"q": q, "sample_latents": sample_latents, "target_draws": draws},
    )


register_method("vbem", run_vbem)
