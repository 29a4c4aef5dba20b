r"""``infer_design``: one entry point for every registered design method, one result type.

.. code-block:: python

    res = pp.infer_design(model, pp.design.Box(low, high), method="sga")  # svi | nuts | flow
    res.phi_star, res.objective, res.objective_se, res.objective_name    # res.probability (O1)
    res.idata            # arviz.InferenceData: posterior "phi" with dims (chain, draw, phi_dim)
    res.save("r.json")   # JSON summary + r.nc (NetCDF InferenceData)
    print(res.summary())

=========  ====================================================  ==========================
method     what it computes                                      ``phi_star``
=========  ====================================================  ==========================
``sga``    PSP-GEN's stochastic gradient ascent (:mod:`.sga`)    best restart's optimum
``svi``    low-rank Gaussian guide on p(φ, z | target)           ``point`` of the samples
``nuts``   NUTS on the same posterior (:mod:`.nuts`)             ``point`` of the samples
``flow``   zuko flow guide on the same posterior (:mod:`.flow`)  ``point`` of the samples
=========  ====================================================  ==========================

Methods come from the registry (:func:`~psppyro.design.register_method`); ``infer_design``
validates the model once (:func:`~psppyro.design.protocol.validate_model`, with a batched probe),
checks the options against the method's signature before any work, calls the runner, builds the
``InferenceData``, evaluates the objective at φ* with fresh z draws
(:func:`~psppyro.design.objectives.estimate_objective`) and judges the diagnostics
(:func:`~psppyro.design.results.judge`: PSIS k̂, R̂, divergences, an unreachable target), issuing
a :class:`~psppyro.design.DesignWarning` for each problem.

For the posterior methods ``point`` chooses φ*: ``"mean"`` (default; the posterior mean — a robust
design when the posterior is unimodal), ``"median"`` (componentwise) or ``"best"`` (of
``num_candidates`` posterior draws, the one with the best model-predicted objective estimated with
``num_eval_samples`` z draws — closest to the O1 optimum). SGA returns its own φ*; its restart end
points are ``res.endpoints`` and ``idata.optimization`` (not a posterior).

**Progress.** ``progress=None`` (default) shows tqdm bars when standard error is a terminal or
the code runs in a Jupyter kernel (interactive use) and stays quiet otherwise (scripts piped to a
file, tests, CI); ``True``/``False`` force it.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager

import torch

from .._random import derive_seed
from .._validation import check_choice, check_int, check_seed
from .arviz_io import add_group, import_arviz, psis_khat, to_inference_data
from .objectives import estimate_objective
from .protocol import validate_model
from .registry import RESERVED, MethodOutput, get_method
from .results import DesignResult, judge, to_json_value, warn_all
from .targets import as_target

__all__ = ["infer_design"]


def _choose_point(cm, target, samples, point, num_candidates, num_eval_samples, seed):
    if point == "mean":
        return samples.mean(0)
    if point == "median":
        return samples.median(0).values
    idx = torch.linspace(0, samples.shape[0] - 1, min(num_candidates, samples.shape[0])).long()
    cand = samples[idx]
    value, _ = estimate_objective(cm, target, cand, num_eval_samples, seed=derive_seed(seed, 30))
    return cand[target.best_index(value)]


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


def _interactive() -> bool:
    """Whether progress bars are wanted by default: stderr is a terminal, or a Jupyter kernel."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _check_output(method, out, cm):
    if not isinstance(out, MethodOutput):
        raise TypeError(
            f"the runner of method {method!r} must return a psppyro.design.MethodOutput, got "
            f"{type(out).__name__}"
        )
    if out.samples is None and out.phi_star is None:
        raise ValueError(f"method {method!r} returned neither samples nor phi_star")
    if out.samples is not None and (out.samples.dim() != 3 or out.samples.shape[-1] != cm.d_phi):
        raise ValueError(
            f"method {method!r} returned samples of shape {tuple(out.samples.shape)}; expected "
            f"(chains, draws, {cm.d_phi})"
        )
    if out.phi_star is not None and tuple(out.phi_star.shape) != (cm.d_phi,):
        raise ValueError(
            f"method {method!r} returned phi_star of shape {tuple(out.phi_star.shape)}; expected "
            f"({cm.d_phi},)"
        )


def _build_idata(out, names, attrs):
    az = import_arviz()
    idata = None
    if out.samples is not None:
        stats = {k: v for k, v in out.sample_stats.items()}
        if out.log_weights is not None:
            stats["log_weight"] = out.log_weights
        idata = to_inference_data(out.samples, names, sample_stats=stats or None, attrs=attrs)
    if out.endpoints is not None:
        idata = idata if idata is not None else az.InferenceData()
        data = {"phi": (("restart", "phi_dim"), out.endpoints)}
        if out.endpoint_objective is not None:
            data["log_objective"] = (("restart",), out.endpoint_objective)
        hist = out.history.get("objective")
        if hist is not None:
            data["log_objective_history"] = (("epoch", "restart"), torch.tensor(hist))
        add_group(
            idata,
            "optimization",
            data,
            coords={"phi_dim": list(names), "restart": list(range(out.endpoints.shape[0]))},
            attrs=attrs,
        )
    return idata


def infer_design(
    model,
    target,
    method: str = "sga",
    seed: int = 0,
    *,
    point: str = "mean",
    num_eval_samples: int = 10000,
    num_candidates: int = 64,
    progress: bool | None = None,
    **options,
) -> DesignResult:
    """Design processing parameters φ for ``target`` with a registered ``method``.

    Args:
        model: any object with the design protocol (``phi_bounds``, ``latent_dim``,
            ``property_dist(phi, z)``; optional ``phi_prior``, ``phi_names``) — see
            :mod:`psppyro.design.protocol`.
        target: :class:`~psppyro.design.Box`, :class:`~psppyro.design.TargetValue` or
            :class:`~psppyro.design.TargetDensity`.
        method: a registered method name: ``"sga"`` (default), ``"svi"``, ``"nuts"``, ``"flow"``
            or one added with :func:`~psppyro.design.register_method`.
        seed: non-negative integer; the result is reproducible given it.
        point: ``"mean" | "median" | "best"``, how φ* is taken from posterior draws.
        num_eval_samples: z draws for the objective at φ* (and for ``point="best"``).
        num_candidates: posterior draws compared by ``point="best"``.
        progress: tqdm bars; None (default): only when stderr is a terminal or in Jupyter.
        **options: the method's options (``method_options(method)`` lists them with defaults;
            see :func:`~psppyro.design.sga.run_sga`, :func:`~psppyro.design.svi.run_svi`,
            :func:`~psppyro.design.nuts.run_nuts`, :func:`~psppyro.design.flow.run_flow`).

    Returns:
        :class:`~psppyro.design.DesignResult`.

    Raises:
        ValueError: unknown method, unknown option for the method (the message lists its
            options), a bad option value, target dimension ≠ the model's d_m, a model that fails
            the batched probe, a method/target combination without a valid formulation (NUTS with
            a Monte Carlo utility).
        TypeError: ``model`` lacks the protocol, ``target`` is not a design target, or an option
            has the wrong type.

    Warns:
        DesignWarning: PSIS k̂ > 0.7, R̂ > 1.01, divergences, or an unreachable target.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> res = infer_design(ToyChain(), Box([0.9], [1.1]), "sga", num_z=1000, epochs=4)
        >>> abs(float(res.phi_star[0]) - 1.0) < 0.1
        True
    """
    t0 = time.perf_counter()
    spec = get_method(method)
    target = as_target(target)
    seed = check_seed("seed", seed)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "(none)"
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}; its options are: {allowed}; "
            f"infer_design's own: {', '.join(RESERVED[3:])}"
        )
    check_choice("point", point, ("mean", "median", "best"))
    num_eval_samples = check_int("num_eval_samples", num_eval_samples)
    num_candidates = check_int("num_candidates", num_candidates)
    if progress is None:
        progress = _interactive()
    elif not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    with _frozen(model):
        cm = validate_model(model, target)
        out = spec.runner(cm, target, seed=seed, progress=progress, **options)
        _check_output(method, out, cm)
        diagnostics = dict(out.diagnostics)
        if out.log_weights is not None:
            diagnostics["khat"] = psis_khat(out.log_weights)
        samples = None
        if out.samples is not None:
            samples = out.samples.detach().reshape(-1, cm.d_phi)
        if out.phi_star is not None:
            phi_star = out.phi_star.detach()
        else:
            phi_star = _choose_point(
                cm, target, samples, point, num_candidates, num_eval_samples, seed
            )
        value, se = estimate_objective(
            cm, target, phi_star, num_eval_samples, seed=derive_seed(seed, 40)
        )
    value, se = float(value), float(se)
    messages = judge(diagnostics, target, value, se, method)
    attrs = {
        "psppyro_method": method,
        "psppyro_seed": seed,
        "psppyro_target": json.dumps(to_json_value(target.config())),
        "psppyro_objective_name": target.objective_name,
        "psppyro_objective": value,
        "psppyro_objective_se": se,
        "psppyro_phi_star": json.dumps(to_json_value(phi_star)),
    }
    idata = _build_idata(out, cm.names, attrs)
    used = {k: v for k, v in spec.options.items()}
    used.update(options)
    used.update(point=point, num_eval_samples=num_eval_samples, num_candidates=num_candidates)
    result = DesignResult(
        method=method,
        target=target,
        phi_star=phi_star,
        objective=value,
        objective_se=se,
        objective_name=target.objective_name,
        samples=samples,
        endpoints=None if out.endpoints is None else out.endpoints.detach(),
        idata=idata,
        diagnostics=diagnostics,
        history=out.history,
        warnings=messages,
        wall_time=time.perf_counter() - t0,
        phi_names=list(cm.names),
        options=used,
        seed=seed,
        extras=out.extras,
    )
    warn_all(messages)
    return result
