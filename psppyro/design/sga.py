r"""Stochastic gradient ascent on the design objective — PSP-GEN's point estimate.

PSP-GEN (Zhang, Koutsourelakis et al. 2024) maximizes :math:`\log P(m ∈ M_d \mid φ)` with the Monte
Carlo estimator over a fixed set of M nuisance draws z_j ~ N(0, I):

.. math::

    \log \hat P(φ) = \log \frac{1}{B}\sum_{j ∈ \text{batch}} u(φ, z_j),

differentiated through ``property_dist`` (closed-form box probability for Normal property models,
see :mod:`psppyro.design.targets`). One *epoch* sweeps the M draws in shuffled batches of B; after
every epoch the full-sample objective :math:`\log \frac1M\sum_{j=1}^M u(φ, z_j)` is evaluated and,
when it has not improved for ``patience`` epochs, the learning rate is divided by ``decay``. The
paper's defaults are M = 50 000, B = 100, Adam with lr = 0.2, decay 4 after 2 stalled epochs, 20
epochs. Several restarts (independent initial φ drawn from the prior) run vectorized; the restart
with the best final full-sample objective wins, and its best epoch's φ is returned.

φ stays in its box through an unconstraining bijection: φ = l + (h − l)·sigmoid(v) for finite bounds
(``torch.distributions.biject_to``), the identity for unbounded components (models with
``phi_prior``).

For O2 (:class:`~psppyro.design.TargetDensity`) the same loop minimizes the Monte Carlo KL
(module :mod:`psppyro.design.objectives`): each step uses a batch of ``target_batch_size`` target
draws and a batch of z; the epoch-end evaluation uses ``num_target_samples`` target draws and the
first ``o2_eval_samples`` of the M z draws (K × M log-densities would otherwise dominate the cost).
The loop never asks which target it has: it calls ``target.draws`` and ``target.score``.

The restart end points are *not* posterior draws: :func:`~psppyro.design.infer_design` stores them
in the ``optimization`` group of ``idata`` (see :mod:`psppyro.design.arviz_io`).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import biject_to, constraints

from .._random import derive_seed, make_generator
from .._validation import (
    as_tensor,
    check_in_bounds,
    check_int,
    check_last_dim,
    check_positive,
)
from .protocol import as_checked
from .registry import MethodOutput, register_method
from .results import to_json_value
from .targets import as_target

__all__ = ["phi_transform", "run_sga"]


def phi_transform(model):
    """The bijection R^{d_φ} → support of φ (box for finite bounds, identity where unbounded).

    Example::

        >>> class M: phi_bounds = torch.tensor([[1.0, 9.0]]); latent_dim = 0
        >>> t = phi_transform(M())
        >>> float(t(torch.tensor([0.0])))
        5.0
    """
    model = getattr(model, "model", model)  # a CheckedModel or the user's model
    bounds = torch.as_tensor(model.phi_bounds).to(torch.get_default_dtype())
    if getattr(model, "phi_prior", None) is not None:
        support = model.phi_prior.support
        if bool(torch.isfinite(bounds).all()):
            support = constraints.independent(constraints.interval(bounds[:, 0], bounds[:, 1]), 1)
        return biject_to(support)
    return biject_to(constraints.independent(constraints.interval(bounds[:, 0], bounds[:, 1]), 1))


def _full_objective(cm, target, phi, z_all, draws, batch_size):
    """The epoch-end log objective over all draws, chunked, no gradient: (R,)."""
    with torch.no_grad():
        acc = None
        for start in range(0, z_all.shape[0], batch_size):
            z = z_all[start : start + batch_size]
            dist = cm.property_dist(phi.unsqueeze(-2), z)
            lt = torch.logsumexp(target.log_terms(dist, draws), -1)
            acc = lt if acc is None else torch.logaddexp(acc, lt)
        return target.reduce(acc - math.log(z_all.shape[0]))


def _initial_phi(cm, init, restarts, seed):
    bounds, d_phi = cm.bounds, cm.d_phi
    if init is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 1))
            return cm.prior.sample((restarts,)).to(bounds)
    phi0 = as_tensor("init", init, dtype=bounds.dtype)
    check_last_dim("init", phi0, d_phi)
    phi0 = phi0.reshape(-1, d_phi)
    if phi0.shape[0] != restarts:
        raise ValueError(f"init must have {restarts} rows (one per restart), got {phi0.shape[0]}")
    check_in_bounds("init", phi0, bounds)
    # Start strictly inside the box so that the logit transform is finite.
    span = bounds[:, 1] - bounds[:, 0]
    finite = torch.isfinite(span)
    eps = torch.where(finite, 1e-4 * span, torch.zeros_like(span))
    lo = torch.where(finite, bounds[:, 0] + eps, phi0.new_full((d_phi,), -math.inf))
    hi = torch.where(finite, bounds[:, 1] - eps, phi0.new_full((d_phi,), math.inf))
    return torch.maximum(torch.minimum(phi0, hi), lo).to(bounds)


def run_sga(
    model,
    target,
    seed=0,
    progress=False,
    num_z=50000,
    batch_size=100,
    lr=0.2,
    decay=4.0,
    patience=2,
    epochs=20,
    restarts=4,
    init=None,
    num_target_samples=1000,
    target_batch_size=100,
    o2_eval_samples=5000,
    eval_batch_size=5000,
):
    """PSP-GEN's stochastic gradient ascent on log P̂(φ) (or −KL for O2), vectorized restarts.

    Most users call :func:`psppyro.design.infer_design` with ``method="sga"`` instead.

    Args:
        model: design-protocol model (or a ``CheckedModel``); target: Box, TargetValue or
            TargetDensity.
        seed: int seed (initial points, z draws, batch order). progress: tqdm bar over steps.
        num_z: M, fixed z draws. batch_size: B. lr: Adam learning rate. decay: lr divisor on
            plateau. patience: stalled epochs before decay. epochs: number of epochs.
            restarts: parallel restarts.
        init: optional initial φ, Tensor (restarts, d_φ) or (d_φ,), inside the bounds.
        num_target_samples, target_batch_size, o2_eval_samples: O2 only (module docstring).
        eval_batch_size: z draws per model call in the epoch-end evaluation.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``phi_star`` (d_φ,), ``endpoints``
        (restarts, d_φ) the best φ of each restart, ``endpoint_objective`` (restarts,) their
        full-sample log objectives and ``history`` (``objective`` and ``lr``: per-epoch lists of
        per-restart values).

    Raises:
        ValueError: a bad option (named), ``init`` outside the bounds or of the wrong shape.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> out = run_sga(ToyChain(), Box([0.9], [1.1]), num_z=500, epochs=5, restarts=2)
        >>> abs(float(out.phi_star[0]) - 1.0) < 0.1
        True
    """
    target = as_target(target)
    num_z = check_int("num_z", num_z)
    batch_size = check_int("batch_size", batch_size)
    epochs = check_int("epochs", epochs)
    restarts = check_int("restarts", restarts)
    patience = check_int("patience", patience)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size)
    num_target_samples = check_int("num_target_samples", num_target_samples, minimum=2)
    target_batch_size = check_int("target_batch_size", target_batch_size)
    o2_eval_samples = check_int("o2_eval_samples", o2_eval_samples)
    check_positive("lr", lr)
    check_positive("decay", decay)
    cm = as_checked(model, target)
    phi0 = _initial_phi(cm, init, restarts, seed)
    g = make_generator(seed)
    transform = phi_transform(cm)
    v = [transform.inv(phi0[r]).detach().clone().requires_grad_(True) for r in range(restarts)]
    lrs = [float(lr)] * restarts
    opt = torch.optim.Adam([{"params": [v_r], "lr": lrs[r]} for r, v_r in enumerate(v)])

    z_all = cm.sample_latents(num_z, g)
    m_all = target.draws(num_target_samples, seed=derive_seed(seed, 2))
    if m_all is None:
        z_eval = z_all
    else:
        m_all = m_all.to(cm.bounds)
        z_eval = z_all[:o2_eval_samples]

    def phi_of(vs):
        return transform(torch.stack(vs))

    best = _full_objective(cm, target, phi_of(v).detach(), z_eval, m_all, eval_batch_size)
    best_phi = phi_of(v).detach().clone()
    stalled = [0] * restarts
    history = {"objective": [best.tolist()], "lr": [list(lrs)]}
    n_batches = math.ceil(num_z / batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_batches, desc="sga", unit="step")
    try:
        for _ in range(epochs):
            perm = torch.randperm(num_z, generator=g)
            for start in range(0, num_z, batch_size):
                z = z_all[perm[start : start + batch_size].to(z_all.device)]
                m_batch = None
                if m_all is not None:
                    idx = torch.randint(0, m_all.shape[0], (target_batch_size,), generator=g)
                    m_batch = m_all[idx.to(m_all.device)]
                obj = target.score(cm.property_dist(phi_of(v).unsqueeze(-2), z), m_batch)
                opt.zero_grad()
                (-obj.sum()).backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
            phi_now = phi_of(v).detach()
            full = _full_objective(cm, target, phi_now, z_eval, m_all, eval_batch_size)
            for r in range(restarts):
                if bool(full[r] > best[r]):
                    best[r] = full[r]
                    best_phi[r] = phi_now[r]
                    stalled[r] = 0
                else:
                    stalled[r] += 1
                    if stalled[r] >= patience:
                        lrs[r] /= decay
                        opt.param_groups[r]["lr"] = lrs[r]
                        stalled[r] = 0
            history["objective"].append(full.tolist())
            history["lr"].append(list(lrs))
            if bar is not None:
                bar.set_postfix(best_log_objective=f"{float(best.max()):.4g}")
    finally:
        if bar is not None:
            bar.close()
    i_best = int(torch.argmax(best))
    return MethodOutput(
        phi_star=best_phi[i_best].clone(),
        endpoints=best_phi,
        endpoint_objective=best,
        history=history,
        diagnostics={"restart_objectives": to_json_value(best), "best_restart": i_best},
    )


register_method("sga", run_sga)
