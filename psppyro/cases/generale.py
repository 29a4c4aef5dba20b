r"""PSP-GEN paper Cases 2 and 5 with the competitor (2-point / PCA / SV-MOGP / flow) and BO.

Zang & Koutsourelakis (PSP-GEN, Acta Materialia 284, 120600, 2025) compare PSP-GEN with the
method of Generale et al. (:mod:`psppyro.models.generale`, :mod:`psppyro.design.conditional_flow`);
this module adds a third column the paper does not have — Bayesian optimization on the true
simulator (:mod:`psppyro.design.bayesopt`) with as many simulations as the learned models' training
sets hold. Every design is checked by ``eval_samples`` fresh true simulations
(:func:`psppyro.design.evaluate`; 1 000 in the paper). The simulator is the reconstruction of the
paper's (``pspgen36-paper`` / ``pspgen10d-paper`` with ``log_permeability_paper``,
``docs/pspgen_reconstruction.md``).

**Case 2 (cross-region, §4.3).** The paper draws its target M_d only in Figure 7 and prints
φ_ref = (9, 1.905) with P = 94.2 % (PSP-GEN 92.4 %, competitor 69.7 %). That φ_ref is Case 1's
R-optimum (low vertical permeability) and its probability exceeds R's 83.8 %, so we read M_d as
Case 1's R box widened by 0.5 on every side: M_d = [−7.5, −4.5] × [−10.5, −8.5]
(ln k_xx × ln k_yy). Both learned models are trained only on the triads of the Case 1 training
set whose m lies *outside* M_d; BO is not restricted (it simulates where it likes). φ_ref is the
paper's, evaluated on our simulator.

**Case 5 (10-D φ, §4.6).** The printed boxes are degenerate; with
:func:`psppyro.design.paper_targets` we read them as the corner regions the text describes,
low = [−10, −7]² and high = [−7, −4]² (paper: PSP-GEN 19.2 % / competitor 18 % (low), 24.7 % /
14.2 % (high)). There is no reference optimum.

Sizes at ``scale`` s (1 = the paper's protocol): training set ``round(10 000 s)`` triads (the
Case 1 / Case 5 training presets); PSP-GEN trained exactly as in Cases 1/3
(:mod:`psppyro.cases.pspgen_paper`: the appendix-A widths, a 90/10 split, ``max(2, 500 s)``
epochs with the weights of the best validation log p(m | φ), ``prior_m_weight`` = 4) and
designed by SGA with ``max(500, 50 000 s)`` z draws; the competitor on the same 90 % (SV-MOGP
``max(5, 200 s)`` epochs with ``max(8, 128 s)`` inducing points, the flow on
``max(1000, 20 000 s)`` chain pairs for ``max(3, 100 s)`` epochs); BO with a budget equal to the
training-set size in evaluations of ``max(10, 50 s)`` simulations; ``max(20, 1000 s)``
evaluation simulations per design.

**Resuming.** The data set is kept in ``out/data``; the competitor, the PSP-GEN model (with
its checkpoints and ``pspgen_train.json``), each checked design, each BO run and the simulated
heat map in ``out/models``, each reused only under the settings it was made with (the caches of
:mod:`psppyro.cases.pspgen_paper`). A run into the same folder therefore repeats nothing that
finished, and a model trained with other settings is refused before any work.

**Heat maps (Figure-3 style, ``fig3.png``).** P(m ∈ M_d | φ) on a G × G grid — by simulation
(``per_phi`` microstructures per point, the same ones for every target), as PSP-GEN predicts it
and as the competitor's chain predicts it — with every design marked. Case 2's plane is
(φ1, φ2); Case 5's 10-D φ is shown on the diagonal plane φ1_k = a, φ2_k = b for all five k (the
homogeneous slice; designs are marked at their mean φ1_k and mean φ2_k, a projection). G =
max(8, round(20 √s)) (4 below s = 0.02), ``per_phi`` = max(20, round(500 s)): the paper's
20 × 20 × 500 at scale 1 (200 000 simulations: 1 751 s for Case 2 and 1 605 s for Case 5
on one loaded core, models' maps included).

:func:`competitor_design` and :func:`psppyro.design.bayesopt.bayesopt_design` are the entry
points other harnesses (Cases 1/3/4, :mod:`psppyro.cases.pspgen_paper`) call to add the φ_comp
and φ_BO columns; :func:`save_competitor` / :func:`load_competitor` keep a fitted competitor.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import torch

from .._random import derive_seed
from .._validation import check_seed
from ._common import (
    StageClock,
    check_run_args,
    check_scale,
    folder_lock,
    jsonable,
    read_cache,
    write_json_atomic,
)

__all__ = ["CASE_SPECS", "CASE2_BOX", "FLOW_ARCHITECTURE", "competitor_design",
           "design_competitor", "load_competitor", "protocol", "results_markdown", "run",
           "save_competitor"]

#: The competitor's conditional-flow architecture (saved with it by :func:`save_competitor`).
FLOW_ARCHITECTURE = {"transforms": 3, "hidden": (64, 64), "bins": 8}

#: Case 2's target (our reading, module docstring): (low, high) of (ln k_xx, ln k_yy).
CASE2_BOX = ((-7.5, -10.5), (-4.5, -8.5))

CASE_SPECS = {
    "pspgen-paper-case2": {
        "paper_case": "case2",
        "train": "pspgen-paper-case1-train",
        "process": "pspgen36-paper",
        "properties": "log_permeability_paper",
        "paper": {"Md": {"phi_ref": (9.0, 1.905), "p_ref": 0.942, "phi_prop": (8.999, 1.999),
                         "p_prop": 0.924, "phi_comp": (7.425, 1.966), "p_comp": 0.697}},
    },
    "pspgen-paper-case5": {
        "paper_case": "case5",
        "train": "pspgen-paper-case5-train",
        "process": "pspgen10d-paper",
        "properties": "log_permeability_paper",
        "paper": None,  # from psppyro.design.paper_reference("case5")
    },
}


def _s(seed, *keys):
    return derive_seed(seed, *keys) % 2**31


def protocol(name: str, scale: float = 1.0) -> dict:
    """Every size of case ``name`` at ``scale`` (module docstring).

    Example::

        >>> p = protocol("pspgen-paper-case5", 0.1)
        >>> p["bayesopt"]["sims_per_eval"], p["eval_samples"], p["psp_gen"]["train_epochs"]
        (10, 100, 50)
    """
    from .pspgen_paper import _training_protocol

    if not isinstance(name, str) or name not in CASE_SPECS:
        raise ValueError(f"name must be one of {list(CASE_SPECS)}, got {name!r}")
    s = check_scale(scale)
    spec = CASE_SPECS[name]
    evals = max(20, round(1000 * s))
    region = ({"low": list(CASE2_BOX[0]), "high": list(CASE2_BOX[1])}
              if name == "pspgen-paper-case2" else None)
    return {
        "case": name,
        "scale": s,
        "eval_samples": evals,
        # PSP-GEN: trained and designed as in Cases 1/3 (psppyro.cases.pspgen_paper), SGA only
        "psp_gen": {"presets": {"train": spec["train"], "removed_region": region}, "scale": s,
                    **_training_protocol(s),
                    "sga": {"num_z": max(500, round(50_000 * s)), "batch_size": 100,
                            "lr": 0.2, "decay": 4.0, "patience": 2, "epochs": 20},
                    "num_eval_samples": 2000, "eval_samples": evals},
        "competitor": {"gp_epochs": max(5, round(200 * s)), "num_inducing": max(8, round(128 * s)),
                       "gp_batch_size": 256, "gp_lr": 0.01 if s >= 0.5 else 0.05,
                       "num_pairs": max(1000, round(20_000 * s)),
                       "flow_epochs": max(3, round(100 * s)),
                       "num_candidates": max(512, round(4096 * s)), "eval_samples": evals},
        "bayesopt": {"budget_cap": None, "sims_per_eval": max(10, round(50 * s)),
                     "num_restarts": 8, "raw_samples": 256, "eval_samples": evals},
        "heatmap": {"grid": max(8, round(20 * math.sqrt(s))) if s >= 0.02 else 4,
                    "per_phi": max(20, round(500 * s)),
                    "model_samples": max(200, round(2000 * s))},
    }


def competitor_design(train, targets: dict, *, phi_bounds=None, fraction: float = 0.9,
                      gp_epochs: int = 200, num_inducing: int = 128, gp_batch_size: int = 256,
                      gp_lr: float = 0.01, num_pairs: int = 20_000, flow_epochs: int = 100,
                      num_candidates: int = 4096, seed: int = 0, progress: bool = False) -> dict:
    """Generale et al.'s method end to end: fit the SV-MOGP chain, one flow, φ_comp per target.

    Args:
        train: triads — an ``xarray.Dataset`` with ``phi``, ``x``, ``m`` (``psppyro.data``) or a
            tuple ``(phi, x, m)`` of tensors (then ``phi_bounds`` is required).
        targets: ``{name: Box or TargetValue}``.
        phi_bounds: (d_φ, 2); default from the dataset's process.
        fraction: PCA variance fraction (0.9). gp_*: SV-MOGP training. num_pairs, flow_epochs:
            the flow's training pairs (from the chain) and epochs. num_candidates: φ candidates of
            the point estimate. seed: int. progress: tqdm bars.

    Returns:
        dict: ``chain`` (the fitted :class:`~psppyro.models.generale.GeneraleChain`), ``flow``
        (the :class:`~psppyro.design.conditional_flow.ConditionalFlow`), ``designs``
        ``{name: FlowDesign}`` (``.phi`` is φ_comp), ``p_model`` ``{name: chain's P̂ at φ_comp}``,
        ``pairs_m`` (the chain-simulated m the flow was trained on: the conditions of the point
        estimate, so :func:`design_competitor` can redo it for new targets) and ``timings``
        (seconds: ``chain_s``, ``pairs_s``, ``flow_fit_s``, ``design_s``).

    Raises:
        ValueError / TypeError: bad triads or targets (before fitting).

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro.models.generale import _tiny_triads
        >>> out = competitor_design(_tiny_triads(), {"B": Box([0.4], [0.6])}, gp_epochs=3,
        ...                         num_inducing=4, num_pairs=300, flow_epochs=2,
        ...                         num_candidates=64, phi_bounds=[[0.0, 1.0]])
        >>> sorted(out["designs"]), out["designs"]["B"].phi.shape
        (['B'], torch.Size([1]))
    """
    from ..design.conditional_flow import ConditionalFlow, simulate_pairs
    from ..design.targets import as_target
    from ..models.generale import GeneraleChain

    if not isinstance(targets, dict) or not targets:
        raise TypeError(f"targets must be a non-empty dict name -> Box, got {targets!r}")
    targets = {str(k): as_target(v) for k, v in targets.items()}
    seed = check_seed("seed", seed)
    opts = dict(fraction=fraction, num_inducing=num_inducing, epochs=gp_epochs,
                batch_size=gp_batch_size, lr=gp_lr, seed=_s(seed, 1), progress=progress)
    t0 = time.perf_counter()
    if isinstance(train, tuple):
        if phi_bounds is None:
            raise ValueError("phi_bounds is required when train is a tuple (phi, x, m)")
        chain = GeneraleChain.fit_data(*train, phi_bounds, **opts)
    else:
        chain = GeneraleChain.from_dataset(train, phi_bounds=phi_bounds, **opts)
    timings = {"chain_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    phi, m = simulate_pairs(chain, num_pairs, seed=_s(seed, 2))
    timings["pairs_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow = ConditionalFlow(chain.phi_bounds, chain.d_m, seed=_s(seed, 3), **FLOW_ARCHITECTURE)
    flow.fit(phi, m, epochs=flow_epochs, seed=_s(seed, 4), progress=progress)
    timings["flow_fit_s"] = time.perf_counter() - t0
    out = {"chain": chain, "flow": flow, "pairs_m": m, "timings": timings}
    out.update(design_competitor(out, targets, num_candidates=num_candidates, seed=seed))
    return out


def design_competitor(fitted: dict, targets: dict, *, num_candidates: int = 4096,
                      seed: int = 0) -> dict:
    """φ_comp per target from a fitted competitor (the flow's point estimate, no retraining).

    Args:
        fitted: a dict with ``chain``, ``flow`` and ``pairs_m`` (from :func:`competitor_design`
            or :func:`load_competitor`).
        targets: ``{name: Box or TargetValue}``. num_candidates: φ candidates per target.
        seed: int (the same seed as :func:`competitor_design` gives the same designs).

    Returns:
        dict: ``designs`` ``{name: FlowDesign}`` and ``p_model`` ``{name: chain's P̂ at φ_comp}``
        (2 000 draws of the chain); ``fitted["timings"]["design_s"]`` is updated.

    Raises:
        ValueError / TypeError: bad targets or a ``fitted`` without its parts.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro.models.generale import _tiny_triads
        >>> fit = competitor_design(_tiny_triads(), {"B": Box([0.4], [0.6])}, gp_epochs=3,
        ...                         num_inducing=4, num_pairs=300, flow_epochs=2,
        ...                         num_candidates=64, phi_bounds=[[0.0, 1.0]])
        >>> again = design_competitor(fit, {"B": Box([0.4], [0.6])}, num_candidates=64)
        >>> bool(torch.equal(again["designs"]["B"].phi, fit["designs"]["B"].phi))
        True
    """
    from ..design import estimate_objective
    from ..design.conditional_flow import design_with_flow
    from ..design.targets import as_target

    if not isinstance(fitted, dict) or not {"chain", "flow", "pairs_m"} <= set(fitted):
        raise TypeError("fitted must be the dict of competitor_design or load_competitor "
                        "(keys chain, flow, pairs_m)")
    if not isinstance(targets, dict) or not targets:
        raise TypeError(f"targets must be a non-empty dict name -> Box, got {targets!r}")
    targets = {str(k): as_target(v) for k, v in targets.items()}
    seed = check_seed("seed", seed)
    chain, flow, m = fitted["chain"], fitted["flow"], fitted["pairs_m"]
    t0 = time.perf_counter()
    designs, p_model = {}, {}
    for i, (name, target) in enumerate(targets.items()):
        designs[name] = design_with_flow(flow, target, m, num_candidates=num_candidates,
                                         seed=_s(seed, 5, i))
        with torch.no_grad():
            est = estimate_objective(chain, target, designs[name].phi.to(chain.phi_bounds),
                                     num_samples=2000, seed=_s(seed, 6, i))
        p_model[name] = float(est[0])
    fitted.setdefault("timings", {})["design_s"] = time.perf_counter() - t0
    return {"designs": designs, "p_model": p_model}


def _gp_state(gp):
    return {"d_in": gp.d_in, "d_out": gp.d_out, "num_latents": gp.num_latents,
            "num_inducing": gp.num_inducing, "state": gp.state_dict(),
            "history": list(gp.history)}


def _gp_from_state(st):
    from ..models.generale import SVMOGP

    gp = SVMOGP(st["d_in"], st["d_out"], st["num_latents"], st["num_inducing"])
    gp.load_state_dict(st["state"])
    gp.history = list(st["history"])
    gp.eval()
    return gp


def save_competitor(fitted: dict, path) -> None:
    """Write a fitted competitor (chain, flow, the flow's training m) to ``path`` (torch file).

    The GP chain holds locally defined gpytorch classes that cannot be pickled, so the file
    keeps sizes and state dicts only; :func:`load_competitor` rebuilds the objects.

    Args:
        fitted: the dict of :func:`competitor_design` (keys ``chain``, ``flow``, ``pairs_m``).
        path: file to write (its folder must exist).

    Raises:
        TypeError: ``fitted`` lacks its parts.

    Example::

        >>> import tempfile, pathlib
        >>> from psppyro.design import Box
        >>> from psppyro.models.generale import _tiny_triads
        >>> fit = competitor_design(_tiny_triads(), {"B": Box([0.4], [0.6])}, gp_epochs=3,
        ...                         num_inducing=4, num_pairs=300, flow_epochs=2,
        ...                         num_candidates=64, phi_bounds=[[0.0, 1.0]])
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "competitor.pt"
        >>> save_competitor(fit, f)
        >>> back = load_competitor(f)
        >>> bool(torch.allclose(back["chain"].predict_properties(torch.tensor([[0.5]]), 5),
        ...                     fit["chain"].predict_properties(torch.tensor([[0.5]]), 5)))
        True
    """
    if not isinstance(fitted, dict) or not {"chain", "flow", "pairs_m"} <= set(fitted):
        raise TypeError("fitted must be the dict of competitor_design (keys chain, flow, pairs_m)")
    chain, flow = fitted["chain"], fitted["flow"]
    pca = chain.pca
    state = {
        "format": 1,
        "pca": {k: getattr(pca, k) for k in ("fraction", "max_components", "mean", "components",
                                              "scale", "explained_variance_ratio",
                                              "n_components", "explained")},
        "ps_gp": _gp_state(chain.ps_gp),
        "sp_gp": _gp_state(chain.sp_gp),
        "chain": {"phi_bounds": chain.phi_bounds, "m_mean": chain.m_mean, "m_std": chain.m_std,
                  "phi_names": getattr(chain, "phi_names", None),
                  "timings": dict(chain.timings)},
        "flow": {"phi_bounds": torch.stack([flow.low, flow.low + flow.width], -1),
                 "d_m": flow.d_m, "architecture": dict(FLOW_ARCHITECTURE),
                 "state": flow.state_dict(), "history": list(flow.history)},
        "pairs_m": torch.as_tensor(fitted["pairs_m"]),
        "timings": dict(fitted.get("timings", {})),
    }
    torch.save(state, path)


def load_competitor(path) -> dict:
    """Read a competitor written by :func:`save_competitor`.

    Args:
        path: the file.

    Returns:
        dict: ``chain``, ``flow``, ``pairs_m`` and the fit ``timings`` (as at saving) — pass it
        to :func:`design_competitor` for φ_comp.

    Raises:
        ValueError: the file is not a saved competitor.

    Example: see :func:`save_competitor`.
    """
    from ..design.conditional_flow import ConditionalFlow
    from ..models.generale import GeneraleChain, TwoPointPCA

    st = torch.load(path, weights_only=True)
    if not isinstance(st, dict) or st.get("format") != 1:
        raise ValueError(f"{str(path)!r} is not a competitor saved by save_competitor")
    pca = TwoPointPCA(st["pca"]["fraction"], st["pca"]["max_components"])
    for k, v in st["pca"].items():
        setattr(pca, k, v)
    c = st["chain"]
    chain = GeneraleChain(pca, _gp_from_state(st["ps_gp"]), _gp_from_state(st["sp_gp"]),
                          c["phi_bounds"], c["m_mean"], c["m_std"], phi_names=c["phi_names"])
    chain.timings = dict(c["timings"])
    f = st["flow"]
    arch = dict(f["architecture"])
    arch["hidden"] = tuple(arch["hidden"])
    flow = ConditionalFlow(f["phi_bounds"], f["d_m"], **arch)
    flow.load_state_dict(f["state"])
    flow.history = list(f["history"])
    return {"chain": chain, "flow": flow, "pairs_m": st["pairs_m"],
            "timings": dict(st["timings"])}


def _targets(name):
    from ..design import Box, paper_reference

    if name == "pspgen-paper-case2":
        low, high = CASE2_BOX
        return {"Md": Box(list(low), list(high))}, CASE_SPECS[name]["paper"]
    ref = paper_reference("case5")
    paper = {k: {"phi_ref": None, "p_ref": None, "phi_prop": d.phi_prop, "p_prop": d.p_prop,
                 "phi_comp": d.phi_comp, "p_comp": d.p_comp} for k, d in ref.items()}
    return {k: d.box for k, d in ref.items()}, paper


def run(name: str, *, scale: float, out, seed: int = 0, progress: bool = True) -> dict:
    """Run Case 2 or Case 5 (module docstring) and write ``results.json``, ``results.md``, figures.

    Args:
        name: ``"pspgen-paper-case2"`` or ``"pspgen-paper-case5"``.
        scale: in (0, 1]; 1 is the paper's protocol (:func:`protocol`).
        out: output folder (created; its parent must exist). The data set (``out/data``), the
            trained models, the checked designs, BO and the simulated heat map (``out/models``)
            in it are reused when their settings match, so an interrupted run resumes.
        seed: non-negative int. progress: tqdm bars.

    Returns:
        dict: ``protocol``, ``targets``, ``train_size``, per target ``designs`` (``psp_gen``,
        ``competitor``, ``bo``, ``reference`` with φ, P ± s.e. by simulation and the model's P̂),
        ``bo_trace``, ``chain``, ``psp_gen`` (its training), ``paper`` and ``wall_times``.

    Raises:
        ValueError / TypeError: unknown case, scale outside (0, 1], bad seed or ``out``, a model
        in ``out/models`` trained with other settings — before any work.
        ImportError: BoTorch missing (before any work).

    Example::

        >>> run("pspgen-paper-case2", scale=0.0, out="x")
        Traceback (most recent call last):
        ...
        ValueError: scale must be in (0, 1], got 0.0
    """
    proto = protocol(name, scale)
    scale, out, seed = check_run_args(scale, out, seed, progress)
    from ..design.bayesopt import _botorch

    _botorch()  # ImportError with the install hint before any work
    with folder_lock(out):  # one run per folder: its caches would race
        return _run(name, proto, scale, out, seed, progress)


def _run(name, proto, scale, out, seed, progress):
    from ..design import evaluate
    from ..process import preset as process_preset
    from . import pspgen_paper as pp

    spec = CASE_SPECS[name]
    targets, paper = _targets(name)
    pproto = proto["psp_gen"]
    label, pseed = "pspgen", _s(seed, 11)
    models = out / "models"
    # d_z1 (= the competitor's number of PCs) is known only after the competitor; the rest of a
    # stale model's settings is refused here, before any data work
    pp._check_trained(models, label, pp._train_settings(pproto, None, pseed), ignore=("d_z1",))
    out.mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    models.mkdir(exist_ok=True)
    clock = StageClock()
    process = process_preset(spec["process"])
    props = spec["properties"]

    with clock("data"):
        ds, _ = pp._dataset(spec["train"], scale, out / "data", progress=progress)
    n_generated = int(ds.sizes["sample"])
    m_all = torch.as_tensor(np.asarray(ds["m"].values), dtype=torch.float64)
    keep = torch.isfinite(m_all).all(-1)
    region = None
    if name == "pspgen-paper-case2":
        inside = targets["Md"].contains(m_all)
        region = {**pproto["presets"]["removed_region"],
                  "train_fraction_inside_removed": float(inside.double().mean())}
        keep &= ~inside
    train = ds.isel(sample=np.flatnonzero(keep.numpy()))
    n_train = int(train.sizes["sample"])
    if n_train < 4:
        raise ValueError(f"scale={scale} leaves {n_train} training triads; use a larger "
                         "scale")

    # The competitor on PSP-GEN's training split (the validation part is unused), as in
    # Cases 1/3
    tr, val = pp._split(train, pproto, pseed)
    if int(val.sizes["sample"]) == 0:
        raise ValueError(f"scale={scale} leaves no validation triads (the 10 % split is by "
                         "whole φ groups); use a larger scale")
    comp = pp._competitor_stage(tr, val, targets, process, props, proto, models, _s(seed, 10),
                                clock, progress)
    d_pc = int(comp["chain"]["n_components"])
    with clock("psp_gen: train"):
        gen, history, _ = pp._train(train, d_pc, pproto, models, label, pseed, progress)
    sga, sga_eval, _ = pp._checked_designs(gen, label, 0, targets, pproto, models, seed,
                                           process, props, clock, progress,
                                           methods=("sga",))
    budget = max(2 * proto["bayesopt"]["sims_per_eval"], n_train)
    bo = pp._bayesopt_stage(targets, process, props, proto, budget, models, _s(seed, 14), clock,
                            progress)
    designs = {}
    with clock("reference: fresh simulations"):
        for i, t in enumerate(targets):
            designs[t] = {
                "psp_gen": {"phi": sga[t]["sga"]["phi_star"], **sga_eval[t]["sga"],
                            "p_model": sga[t]["sga"]["p_model"]},
                "competitor": {k: comp["designs"][t][k]
                               for k in ("phi", "p_sim", "p_sim_se", "p_model")},
                "bo": {k: bo[t][k] for k in ("phi", "p_sim", "p_sim_se", "p_model",
                                             "simulations")},
            }
            if paper is not None and paper[t]["phi_ref"] is not None:
                phi = torch.tensor(paper[t]["phi_ref"], dtype=torch.float64)
                p, se = evaluate(phi.to(process.phi_bounds), process, props, targets[t],
                                 num_samples=proto["eval_samples"], seed=_s(seed, 15, i, 3))
                designs[t]["reference"] = {"phi": [float(v) for v in phi], "p_sim": float(p),
                                           "p_sim_se": float(se), "p_model": None}

    with clock("heatmap"):
        chain = load_competitor(models / "competitor.pt")["chain"]
        heat = _heatmaps(targets, process, props, gen, chain, proto["heatmap"], _s(seed, 16),
                         models / "heatmap_simulation.json")

    results = {
        "case": name,
        "protocol": proto,
        "heatmap": heat,
        "targets": {k: {"low": v._low64.tolist(), "high": v._high64.tolist()}
                    for k, v in targets.items()},
        "region": region,
        "generated": n_generated,
        "train_size": n_train,
        "designs": designs,
        "bo_trace": {t: bo[t]["trace"] for t in targets},
        "chain": comp["chain"],
        "competitor_timings": comp["timings"],
        "psp_gen": {"d_z0": int(gen.d_z0), "d_z1": int(gen.d_z1),
                    "best_epoch": history.get("best_epoch"),
                    "epochs_run": len(history.get("train_loss", []))},
        "paper": paper,
        "wall_times": dict(clock.stages),
    }
    results = jsonable(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(results_markdown(results))
    _bo_figure(out / "bo_trace.png", results)
    _heatmap_figure(out / "fig3.png", results)
    return results


def _heatmap_phi(process, a, b):
    """φ of the heat-map plane: Case 2 (φ1, φ2) = (a, b); Case 5 the diagonal of the 10-D box,
    all five φ1_k = a and all five φ2_k = b (a homogeneous-in-k slice)."""
    d = int(process.phi_bounds.shape[0])
    if d == 2:
        return torch.stack([a, b], -1)
    half = d // 2
    return torch.cat([a[..., None].expand(*a.shape, half), b[..., None].expand(*b.shape, half)],
                     -1)


def _heatmaps(targets, process, props, gen, chain, opts, seed, cache):
    """P(m ∈ M_d | φ) on a grid of the heat-map plane (:func:`_heatmap_phi`) by simulation
    (``per_phi`` microstructures per point, shared by all targets; cached in the JSON file
    ``cache`` under its settings) and as PSP-GEN and the competitor predict it."""
    from ..design import estimate_objective
    from ..design.evaluate import simulate_properties

    b = process.phi_bounds.double()
    half = b.shape[0] // 2 if b.shape[0] > 2 else 1
    a_axis = torch.linspace(float(b[0, 0]), float(b[0, 1]), opts["grid"], dtype=torch.float64)
    b_axis = torch.linspace(float(b[half, 0]), float(b[half, 1]), opts["grid"],
                            dtype=torch.float64)
    A, B = torch.meshgrid(a_axis, b_axis, indexing="xy")  # (grid_b, grid_a)
    phi = _heatmap_phi(process, A.reshape(-1), B.reshape(-1))
    settings = {"grid": opts["grid"], "per_phi": opts["per_phi"], "seed": seed,
                "phi_bounds": process.phi_bounds.tolist(), "properties": props,
                "targets": {t: [box.low.tolist(), box.high.tolist()] for t, box in
                            targets.items()}}
    cached = read_cache(cache, settings)
    if cached is None:
        sims = [torch.as_tensor(simulate_properties(p.to(process.phi_bounds), process, props,
                                                    opts["per_phi"], seed=_s(seed, 0, i)))
                for i, p in enumerate(phi)]
        cached = {"settings": settings, "maps": {
            t: torch.stack([box.contains(m.double()).double().mean() for m in sims]).tolist()
            for t, box in targets.items()}}
        write_json_atomic(cache, jsonable(cached))
    out = {"a": a_axis.tolist(), "b": b_axis.tolist(), "per_phi": opts["per_phi"],
           "plane": "(phi1, phi2)" if b.shape[0] == 2 else
           "all phi1_k = a, all phi2_k = b (diagonal of the 10-D box)", "maps": {}}
    for k, (t, box) in enumerate(targets.items()):
        p_sim = torch.tensor(cached["maps"][t], dtype=torch.float64)
        maps = {"simulation": p_sim.reshape(A.shape).tolist()}
        for j, (label, model) in enumerate((("psp_gen", gen), ("competitor", chain))):
            with torch.no_grad():
                dt = torch.get_default_dtype() if label == "psp_gen" else torch.float64
                val, _ = estimate_objective(model, box, phi.to(dt), opts["model_samples"],
                                            seed=_s(seed, 1, k, j), batch_size=100)
            maps[label] = val.double().reshape(A.shape).tolist()
        out["maps"][t] = maps
    return out


def _heatmap_figure(path, results):
    """Figure-3-style maps: columns simulation / PSP-GEN / competitor, one row per target, with
    every method's design (Case 5: its mean φ1_k and mean φ2_k) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heat = results["heatmap"]
    targets = list(heat["maps"])
    rows = (("simulation", f"simulation ({heat['per_phi']} per point)"),
            ("psp_gen", "PSP-GEN model"), ("competitor", "competitor (SV-MOGP chain)"))
    fig, axs = plt.subplots(len(targets), len(rows), figsize=(12.6, 3.5 * len(targets) + 0.4),
                            squeeze=False)
    a, b = np.asarray(heat["a"]), np.asarray(heat["b"])
    da, db = (a[1] - a[0]) / 2, (b[1] - b[0]) / 2
    marks = {"psp_gen": ("o", "red"), "competitor": ("^", "lime"), "bo": ("s", "white"),
             "reference": ("*", "cyan")}
    for r, t in enumerate(targets):
        for c, (key, title) in enumerate(rows):
            ax = axs[r, c]
            im = ax.imshow(np.asarray(heat["maps"][t][key]), origin="lower", aspect="auto",
                           extent=[a[0] - da, a[-1] + da, b[0] - db, b[-1] + db], vmin=0, vmax=1,
                           cmap="viridis", interpolation="nearest")
            for method, row in results["designs"][t].items():
                phi = np.asarray(row["phi"])
                half = len(phi) // 2 if len(phi) > 2 else 1
                x, y = (phi[0], phi[1]) if len(phi) == 2 else (phi[:half].mean(),
                                                              phi[half:].mean())
                mk, col = marks.get(method, ("x", "k"))
                ax.plot(x, y, mk, color=col, mec="k", ms=9 if mk == "*" else 7, label=method)
            ax.set_title(f"{t}: {title}", fontsize=9)
            two = heat["plane"] == "(phi1, phi2)"
            ax.set_xlabel("phi_1" if two else "phi1_k (all k)")
            ax.set_ylabel("phi_2" if two else "phi2_k (all k)")
            fig.colorbar(im, ax=ax, fraction=0.046)
    axs[0, 0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{results['case']}: P(m in M_d | phi) on {heat['plane']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _fmt(phi):
    return "(" + ", ".join(f"{v:.3g}" for v in phi) + ")" if phi is not None else "—"


def results_markdown(results: dict) -> str:
    """The case's table: per target and method φ, P by simulation ± s.e., model P̂, paper P.

    Example::

        >>> r = {"case": "c", "train_size": 1, "protocol": {"scale": 1, "eval_samples": 5},
        ...      "designs": {"T": {"bo": {"phi": [1.0], "p_sim": 0.5, "p_sim_se": 0.1,
        ...      "p_model": 0.4}}}, "paper": None, "wall_times": {"bo": 1.0}}
        >>> "| T | bo | (1) | 0.500 ± 0.100 | 0.400 | — |" in results_markdown(r)
        True
    """
    lines = [f"## {results['case']} (scale {results['protocol']['scale']:g}, "
             f"{results['train_size']} training triads, "
             f"{results['protocol']['eval_samples']} evaluation simulations per design)", "",
             "| target | method | φ | P by simulation ± s.e. | model P̂ | paper P |",
             "|---|---|---|---|---|---|"]
    key = {"psp_gen": "p_prop", "competitor": "p_comp", "reference": "p_ref"}
    for tname, rows in results["designs"].items():
        for method, r in rows.items():
            pp = (results.get("paper") or {}).get(tname, {}).get(key.get(method, ""), None)
            pm = "—" if r.get("p_model") is None else f"{r['p_model']:.3f}"
            lines.append(f"| {tname} | {method} | {_fmt(r['phi'])} | {r['p_sim']:.3f} ± "
                         f"{r['p_sim_se']:.3f} | {pm} | {'—' if pp is None else pp} |")
    g = results.get("psp_gen")
    if g:
        lines += ["", f"PSP-GEN: d_z0 = {g['d_z0']}, d_z1 = {g['d_z1']}, best epoch "
                  f"{g['best_epoch']} of {g['epochs_run']} run."]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["wall_times"].items()]
    return "\n".join(lines) + "\n"


def _bo_figure(path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = results["bo_trace"]
    fig, axes = plt.subplots(1, len(traces), figsize=(4.2 * len(traces), 3.2), squeeze=False)
    for ax, (tname, trace) in zip(axes[0], traces.items()):
        sims = [r["simulations"] for r in trace]
        ax.plot(sims, [r["posterior_mean"] for r in trace], "-", label="BO: GP mean at φ_BO")
        ax.plot(sims, [r["p_hat"] for r in trace], ".", alpha=0.5, label="BO: observed p̂")
        rows = results["designs"][tname]
        n = results["train_size"]
        for method, colour in (("psp_gen", "C3"), ("competitor", "C2")):
            r = rows[method]
            ax.errorbar([n], [r["p_sim"]], [r["p_sim_se"]], fmt="o", color=colour,
                        label=f"{method} (trained on {n})")
        ax.errorbar([sims[-1]], [rows["bo"]["p_sim"]], [rows["bo"]["p_sim_se"]], fmt="s",
                    color="C0", label="φ_BO by simulation")
        ax.set_xlabel("simulations spent")
        ax.set_ylabel("P(m ∈ M_d | φ)")
        ax.set_title(f"{results['case']}: {tname}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
