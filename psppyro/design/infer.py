r"""``infer_design``: one entry point for every design method, one result type.

.. code-block:: python

    res = pp.infer_design(model, pp.design.Box(low, high), method="sga")  # svi | nuts | flow
    res.phi_star, res.probability, res.probability_se
    res.idata            # arviz.InferenceData: posterior "phi" with dims (chain, draw, phi_dim)
    print(res.summary())

=========  ===================================================  ==========================
method     what it computes                                     ``phi_star``
=========  ===================================================  ==========================
``sga``    PSP-GEN's stochastic gradient ascent (``sga``)       best restart's optimum
``svi``    low-rank Gaussian guide on p(φ, z | target)          ``point`` of the samples
``nuts``   NUTS on the same posterior (``posterior``)           ``point`` of the samples
``flow``   zuko flow guide on the same posterior                ``point`` of the samples
=========  ===================================================  ==========================

For the posterior methods ``point`` chooses φ*: ``"mean"`` (default; the posterior mean — a robust
design when the posterior is unimodal), ``"median"`` (componentwise) or ``"best"`` (of
``num_candidates`` posterior draws, the one with the highest model-predicted objective estimated
with ``num_eval_samples`` z draws — closest to the O1 optimum). For SGA ``samples`` holds the end
point of each restart (not a posterior) and ``idata`` stores them as draws of a single chain with
their objectives in ``sample_stats``.

``probability``/``probability_se`` is the model-predicted objective at φ* with its Monte Carlo
standard error (:func:`~psppyro.design.objectives.estimate_objective`, fresh z draws independent of
the fit): P(m ∈ M_d | φ*) for a Box, E[u] for a TargetValue, the KL for a TargetDensity.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .._random import derive_seed
from .._validation import check_choice
from .objectives import check_model, estimate_objective, objective_name, phi_names
from .posterior import import_arviz, run_flow, run_nuts, run_svi
from .sga import run_sga
from .targets import as_target

__all__ = ["METHODS", "DesignResult", "infer_design", "to_inference_data"]

METHODS = ("sga", "svi", "nuts", "flow")


def to_inference_data(samples, names, sample_stats=None, attrs=None):
    """An ``arviz.InferenceData`` with posterior ``phi`` (chain, draw, phi_dim) named by ``names``.

    Args:
        samples: Tensor/array (chains, draws, d_φ) or (draws, d_φ).
        names: d_φ coordinate labels of dim ``phi_dim``.
        sample_stats: optional dict of (chains, draws) arrays.
        attrs: optional dict of attributes (strings/numbers).

    Returns:
        arviz.InferenceData.

    Example::

        >>> idata = to_inference_data(torch.zeros(2, 5, 3), ["a", "b", "c"])
        >>> dict(idata.posterior["phi"].sizes)
        {'chain': 2, 'draw': 5, 'phi_dim': 3}
    """
    az = import_arviz()
    arr = np.asarray(torch.as_tensor(samples).detach().cpu().double())
    if arr.ndim == 2:
        arr = arr[None]
    stats = None
    if sample_stats:
        stats = {}
        for k, v in sample_stats.items():
            a = np.asarray(torch.as_tensor(v).detach().cpu())
            stats[k] = a[None] if a.ndim == 1 else a
    return az.from_dict(
        posterior={"phi": arr},
        sample_stats=stats,
        coords={"phi_dim": list(names)},
        dims={"phi": ["phi_dim"]},
        attrs=attrs or {},
    )


@dataclass
class DesignResult:
    """The outcome of :func:`infer_design`.

    Attributes:
        method: ``"sga" | "svi" | "nuts" | "flow"``.
        target: the target it designed for.
        phi_star: Tensor (d_φ,), the design (see module docstring for each method's choice).
        samples: Tensor (S, d_φ): posterior draws (all chains concatenated) or SGA restart end
        points.
        idata: ``arviz.InferenceData`` (posterior ``phi`` with dim ``phi_dim``;
        ``sample_stats`` where
            they exist: ``diverging`` for NUTS, ``log_weight`` for SVI/flow, ``objective`` for SGA).
        probability, probability_se: model-predicted objective at φ* and its Monte Carlo
        standard error.
        objective: ``"probability" | "expected_utility" | "kl"``.
        diagnostics: dict (NUTS: ``r_hat``, ``ess_bulk``, ``ess_tail``, ``divergences``,
        ``ess_per_s``;
            SVI/flow: ``khat``, ``final_elbo``; SGA: ``restart_objectives``).
        history: dict (SGA: per-epoch objectives and learning rates; SVI/flow: ``elbo`` trace).
        wall_time: seconds for the whole call (fit, sampling and φ* evaluation).
        phi_names: names of the φ components.
        options: the options used.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
        >>> res = infer_design(M(), Box([0.9], [1.1]), "sga", num_z=500, epochs=3, restarts=2)
        >>> "phi_star" in res.summary()
        True
    """

    method: str
    target: object
    phi_star: torch.Tensor
    samples: torch.Tensor
    idata: object
    probability: float
    probability_se: float
    objective: str
    diagnostics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    wall_time: float = 0.0
    phi_names: list = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def summary(self):
        """A readable multi-line summary (φ*, objective ± SE, posterior quantiles, diagnostics)."""
        lines = [f"DesignResult(method={self.method!r}, target={self.target!r})"]
        phi = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(self.phi_names, self.phi_star))
        lines.append(f"  phi_star: {phi}")
        lines.append(
            f"  {self.objective} at phi_star (model): {self.probability:.4g} "
            f"± {self.probability_se:.2g} (MC s.e.)"
        )
        if self.samples is not None and self.samples.shape[0] > 1:
            q = torch.quantile(
                self.samples.double(), torch.tensor([0.05, 0.5, 0.95]).double(), dim=0
            )
            kind = "restart end points" if self.method == "sga" else "posterior"
            lines.append(f"  {kind} ({self.samples.shape[0]} draws): 5% / 50% / 95%")
            for i, n in enumerate(self.phi_names):
                lines.append(f"    {n}: {q[0, i]:.4g} / {q[1, i]:.4g} / {q[2, i]:.4g}")
        for k, v in self.diagnostics.items():
            if isinstance(v, (list, tuple)):
                v = "[" + ", ".join(f"{float(x):.3g}" for x in v) + "]"
            elif isinstance(v, float):
                v = f"{v:.4g}"
            lines.append(f"  {k}: {v}")
        lines.append(f"  wall time: {self.wall_time:.2f} s")
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"DesignResult(method={self.method!r}, "
            f"phi_star={[round(float(v), 4) for v in self.phi_star]}, "
            f"{self.objective}={self.probability:.4g}±{self.probability_se:.2g})"
        )


_OPTION_KEYS = {
    "sga": {
        "num_z",
        "batch_size",
        "lr",
        "decay",
        "patience",
        "epochs",
        "restarts",
        "init",
        "num_target_samples",
        "target_batch_size",
        "o2_eval_samples",
        "eval_batch_size",
    },
    "svi": {"num_steps", "lr", "rank", "num_particles", "num_samples", "num_pseudo_data"},
    "nuts": {
        "num_samples",
        "warmup_steps",
        "num_chains",
        "target_accept_prob",
        "max_tree_depth",
        "full_mass",
        "num_pseudo_data",
    },
    "flow": {
        "flow",
        "num_steps",
        "lr",
        "transforms",
        "hidden_features",
        "passes",
        "num_particles",
        "num_samples",
        "num_pseudo_data",
    },
}
_COMMON_KEYS = {"num_eval_samples", "point", "num_candidates", "progress"}


def _choose_point(model, target, samples, point, num_candidates, num_eval_samples, seed):
    if point == "mean":
        return samples.mean(0)
    if point == "median":
        return samples.median(0).values
    idx = torch.linspace(0, samples.shape[0] - 1, min(num_candidates, samples.shape[0])).long()
    cand = samples[idx]
    value, _ = estimate_objective(model, target, cand, num_eval_samples, seed=derive_seed(seed, 30))
    best = int(torch.argmin(value)) if objective_name(target) == "kl" else int(torch.argmax(value))
    return cand[best]


@contextmanager
def _frozen(model):
    """Turn off gradients of a torch model's own parameters (and dropout etc.) while designing:
    only φ (and guide parameters) are optimized, so the network's gradients are wasted work and
    would pollute the user's ``.grad`` buffers."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in params:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


def infer_design(model, target, method="sga", seed=0, **options):
    """Design processing parameters φ for ``target`` with ``method``.

    Args:
        model: any object with the design protocol (``phi_bounds``, ``latent_dim``,
            ``property_dist(phi, z)``; optional ``phi_prior``, ``phi_names``) — see
            :mod:`psppyro.design.objectives`.
        target: :class:`~psppyro.design.Box`, :class:`~psppyro.design.TargetValue` or
            :class:`~psppyro.design.TargetDensity`.
        method: ``"sga"`` (default), ``"svi"``, ``"nuts"`` or ``"flow"``.
        seed: non-negative int; the result is reproducible given it.
        **options: method options (see :func:`~psppyro.design.sga.run_sga`,
            :func:`~psppyro.design.posterior.run_svi`, :func:`~psppyro.design.posterior.run_nuts`,
            :func:`~psppyro.design.posterior.run_flow`) plus ``num_eval_samples`` (z draws for the
            φ* objective, default 10 000), ``point`` (``"mean" | "median" | "best"``, posterior
            methods),
            ``num_candidates`` (for ``"best"``, default 64) and ``progress`` (tqdm bars).

    Returns:
        :class:`DesignResult`.

    Raises:
        ValueError: unknown method, unknown option for the method, target dimension ≠ the
        model's d_m,
            a method/target combination without a valid formulation (NUTS with a Monte Carlo
            utility).
        TypeError: ``model`` lacks the protocol or ``target`` is not a design target.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class Line:                      # m = φ + 0.3 z + noise, φ ∈ [−3, 3]
        ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
        >>> res = infer_design(Line(), Box([0.9], [1.1]), "sga", num_z=1000, epochs=4)
        >>> abs(float(res.phi_star[0]) - 1.0) < 0.1
        True
    """
    with _frozen(model):
        return _infer_design(model, target, method, seed, options)


def _infer_design(model, target, method, seed, options):
    t0 = time.perf_counter()
    check_choice("method", method, METHODS)
    target = as_target(target)
    bounds, latent_dim = check_model(model)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    unknown = set(options) - _OPTION_KEYS[method] - _COMMON_KEYS
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for method={method!r}; allowed: "
            f"{sorted(_OPTION_KEYS[method] | _COMMON_KEYS)}"
        )
    # Probe the model once: event shape must match the target's d_m.
    with torch.no_grad():
        probe = model.property_dist(
            bounds.nan_to_num(0.0, 0.0, 0.0).mean(-1).clamp(bounds[:, 0], bounds[:, 1]),
            torch.zeros(latent_dim, dtype=bounds.dtype, device=bounds.device),
        )
    if not isinstance(probe, torch.distributions.Distribution):
        raise TypeError(
            f"model.property_dist must return a torch.distributions.Distribution, got "
            f"{type(probe).__name__}"
        )
    if tuple(probe.event_shape) != (target.dim,):
        raise ValueError(
            f"target has d_m={target.dim} but model.property_dist has event shape "
            f"{tuple(probe.event_shape)}"
        )
    num_eval = int(options.pop("num_eval_samples", 10000))
    point = options.pop("point", "mean")
    check_choice("point", point, ("mean", "median", "best"))
    num_candidates = int(options.pop("num_candidates", 64))
    progress = bool(options.pop("progress", False))
    names = phi_names(model)
    diagnostics, history = {}, {}
    attrs = {"method": method, "target": repr(target), "seed": seed}

    if method == "sga":
        out = run_sga(model, target, seed=seed, progress=progress, **options)
        phi_star = out["phi_star"]
        samples = out["endpoints"]
        history = out["history"]
        diagnostics["restart_objectives"] = out["objective"].tolist()
        idata = to_inference_data(
            samples, names, sample_stats={"objective": out["objective"]}, attrs=attrs
        )
    elif method == "nuts":
        out = run_nuts(model, target, seed=seed, progress=progress, **options)
        chains = out["samples"]
        samples = chains.reshape(-1, chains.shape[-1])
        idata = to_inference_data(
            chains, names, sample_stats={"diverging": out["diverging"]}, attrs=attrs
        )
        az = import_arviz()
        ess_bulk = az.ess(idata, var_names=["phi"])["phi"].values
        diagnostics.update(
            # split-R̂ needs ≥ 2 chains (ArviZ only warns otherwise): NaN with a single chain.
            r_hat=(
                az.rhat(idata, var_names=["phi"])["phi"].values.tolist()
                if chains.shape[0] > 1
                else [float("nan")] * chains.shape[-1]
            ),
            ess_bulk=ess_bulk.tolist(),
            ess_tail=az.ess(idata, var_names=["phi"], method="tail")["phi"].values.tolist(),
            divergences=int(out["diverging"].sum()),
            accept_rate=out["accept_rate"],
            sampling_time=out["sampling_time"],
            ess_per_s=float(np.min(ess_bulk)) / out["sampling_time"],
        )
        phi_star = _choose_point(model, target, samples, point, num_candidates, num_eval, seed)
    else:
        runner = run_svi if method == "svi" else run_flow
        out = runner(model, target, seed=seed, progress=progress, **options)
        samples = out["samples"]
        history = {"elbo": out["elbo"]}
        diagnostics.update(khat=out["khat"], final_elbo=float(np.mean(out["elbo"][-50:])))
        idata = to_inference_data(
            samples, names, sample_stats={"log_weight": out["log_weights"]}, attrs=attrs
        )
        phi_star = _choose_point(model, target, samples, point, num_candidates, num_eval, seed)

    value, se = estimate_objective(model, target, phi_star, num_eval, seed=derive_seed(seed, 40))
    return DesignResult(
        method=method,
        target=target,
        phi_star=phi_star.detach(),
        samples=samples.detach(),
        idata=idata,
        probability=float(value),
        probability_se=float(se),
        objective=objective_name(target),
        diagnostics=diagnostics,
        history=history,
        wall_time=time.perf_counter() - t0,
        phi_names=names,
        options=dict(options, point=point, num_eval_samples=num_eval),
    )
