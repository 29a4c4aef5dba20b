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
maximum-likelihood φ of infinitely many draws from p_target, so the Bayesian analogue conditions on
N target draws m_1..N ~ p_target, each with its own latent: p(φ, z_{1:N} | m_{1:N}) ∝ p(φ) ∏_i
p(m_i | φ, z_i) p(z_i). Its φ-marginal concentrates on the O2 minimizer as N grows (width ∝ 1/√N, so
N sets the "strength" of the target; option ``num_pseudo_data``, default 20).

**Methods.**

- ``svi``: ``AutoLowRankMultivariateNormal`` (option ``rank``) + ``Trace_ELBO`` + Adam. A low-rank
  Gaussian in the unconstrained space fits box-shaped posteriors poorly
  (``docs/architecture.md`` § "Measured figures"): check the PSIS k̂ reported in ``diagnostics`` (k̂
  > 0.7: the guide is unreliable).
- ``nuts``: ``pyro.infer.NUTS`` in ``MCMC``. Chains run one after another in this process (each with
  its own derived seed): Pyro's multi-chain mode forks worker processes (``mp_context``) which is
  fragile with torch threads and not faster on a 2-core machine. NUTS needs an exact log-density, so
  O1 is only allowed when the target's log utility has a closed form (diagonal-Normal property
  model, no temperature); otherwise the Monte Carlo factor would be noisy and the sampler invalid.
- ``flow``: a zuko flow (``nsf`` default, ``maf``, ``cnf``) over the unconstrained joint vector (φ,
  z), wrapped by :class:`pyro.contrib.zuko.ZukoToPyro` as an auxiliary guide site; φ is mapped to
  its box by ``biject_to`` and enters the model through a ``Delta`` site whose ``log_density`` is
  minus the log-Jacobian, so the guide density of φ is exact. (``ZukoToPyro`` has no ``support``;
  the subclass here adds it for Pyro's validation.)

After fitting a guide, ``num_samples`` guide draws are scored against the model: log w = log p
− log q. Their Pareto-smoothed k̂ (:func:`~psppyro.design.arviz_io.psis_khat`) is the guide-quality
diagnostic (``infer_design`` warns when k̂ > 0.7); the draws themselves are the returned posterior
samples (unweighted: they are samples of q).

This module holds what the three posterior methods share (the Pyro model, ELBO fitting, guide
scoring); each method is one module with one registered runner: :mod:`.svi`, :mod:`.nuts`,
:mod:`.flow`.
"""

from __future__ import annotations

import pyro
import torch
from pyro.infer.importance import vectorized_importance_weights

from .._random import derive_seed
from .._validation import check_int, check_positive
from .protocol import as_checked
from .registry import MethodOutput
from .targets import as_target

__all__ = ["check_guide_options", "design_model", "fit_elbo", "score_guide"]


def design_model(model, target, num_pseudo_data=20, seed=0):
    """The Pyro model of posterior design (module docstring) — a callable with no arguments.

    Sites: ``phi`` (d_φ,), ``z`` (latent_dim,) — or (N, latent_dim) inside plate ``data`` for O2 —
    and the factor ``target`` (O1) or observed ``m`` (O2); built by ``target.pyro_model``.

    Args:
        model: design-protocol model (or a ``CheckedModel``); target: Box, TargetValue or
            TargetDensity.
        num_pseudo_data: N, target draws conditioned on for O2.
        seed: seed of the O2 pseudo-data draw.

    Returns:
        A Pyro model function.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain(slope=1.0, noise=0.5)
        >>> tr = pyro.poutine.trace(design_model(model, Box([0.0], [1.0]))).get_trace()
        >>> sorted(n for n in tr.nodes if n in ("phi", "z", "target"))
        ['phi', 'target', 'z']
    """
    target = as_target(target)
    return target.pyro_model(as_checked(model, target), num_pseudo_data, seed)


def score_guide(pyro_model, guide, num_samples):
    """Draw from the guide and score against the model: (phi (S, d), log_w (S,)), vectorized.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain(slope=1.0, noise=0.5)
        >>> pm = design_model(model, Box([0.0], [1.0]))
        >>> guide = pyro.infer.autoguide.AutoNormal(pm)
        >>> phi, log_w = score_guide(pm, guide, 8)
        >>> (tuple(phi.shape), tuple(log_w.shape))
        ((8, 1), (8,))
    """
    with torch.no_grad():
        log_w, _, g_tr = vectorized_importance_weights(
            pyro_model, guide, num_samples=num_samples, max_plate_nesting=1
        )
        phi = g_tr.nodes["phi"]["value"].detach()
    return phi.reshape(num_samples, phi.shape[-1]), log_w.detach().double().reshape(num_samples)


def fit_elbo(pyro_model, guide, num_steps, lr, num_particles, progress, desc):
    """Fit ``guide`` with ``Trace_ELBO`` (vectorized particles) and Adam; return the ELBO trace.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain(slope=1.0, noise=0.5)
        >>> pm = design_model(model, Box([0.0], [1.0]))
        >>> len(fit_elbo(pm, pyro.infer.autoguide.AutoNormal(pm), 5, 0.01, 2, False, "svi"))
        5
    """
    optim = pyro.optim.Adam({"lr": lr})
    loss = pyro.infer.Trace_ELBO(
        num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1
    )
    svi = pyro.infer.SVI(pyro_model, guide, optim, loss)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=desc, unit="step")
    elbo = []
    try:
        for i in range(num_steps):
            elbo.append(-float(svi.step()))
            if bar is not None:
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix(elbo=f"{elbo[-1]:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return elbo



def fit_guide(pyro_model, make_guide, seed, stream, num_steps, lr, num_particles, num_samples,
              progress, desc):
    """Build a guide, fit it by :func:`fit_elbo`, draw and score ``num_samples`` from it.

    The shared body of the guide-based runners (``svi``, ``flow``): the guide's initial parameters
    come from ``derive_seed(seed, stream)`` inside a forked RNG and a private param-store scope, so
    the caller's random state and param store are untouched.

    Args:
        pyro_model: from :func:`design_model`.
        make_guide: callable ``() -> (guide, extras)``; ``extras`` (a dict) is returned as
            ``MethodOutput.extras``.
        seed, stream: the run seed and the runner's stream number for :func:`derive_seed`.
        num_steps, lr, num_particles, progress, desc: passed to :func:`fit_elbo`.
        num_samples: guide draws returned.

    Returns:
        MethodOutput: ``samples`` (1, S, d_φ), ``log_weights`` (1, S), ``history["elbo"]``.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> pm = design_model(ToyChain(slope=1.0, noise=0.5), Box([0.0], [1.0]))
        >>> out = fit_guide(pm, lambda: (pyro.infer.autoguide.AutoNormal(pm), {}), 0, 10,
        ...                 5, 0.01, 2, 8, False, "svi")
        >>> tuple(out.samples.shape), len(out.history["elbo"])
        ((1, 8, 1), 5)
    """
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        torch.manual_seed(derive_seed(seed, stream))
        guide, extras = make_guide()
        elbo = fit_elbo(pyro_model, guide, num_steps, lr, num_particles, progress, desc)
        samples, log_w = score_guide(pyro_model, guide, num_samples)
    return MethodOutput(
        samples=samples[None],
        log_weights=log_w[None],
        history={"elbo": elbo},
        diagnostics={"final_elbo": float(sum(elbo[-50:]) / len(elbo[-50:]))},
        extras=extras,
    )

def check_guide_options(num_steps, lr, num_particles, num_samples, num_pseudo_data):
    """Validate the options SVI and the flow share; return the integers.

    Example::

        >>> check_guide_options(10, 0.01, 2, 5, 20)
        (10, 2, 5, 20)
    """
    num_steps = check_int("num_steps", num_steps)
    check_positive("lr", lr)
    num_particles = check_int("num_particles", num_particles)
    num_samples = check_int("num_samples", num_samples, minimum=2)
    num_pseudo_data = check_int("num_pseudo_data", num_pseudo_data)
    return num_steps, num_particles, num_samples, num_pseudo_data
