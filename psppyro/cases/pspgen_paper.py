r"""The PSP-GEN paper's Cases 1, 3 and 4 run end to end (``psppyro benchmark pspgen-paper-case*``).

Zang & Koutsourelakis (PSP-GEN, §4.1–§4.5) train the generative model on triads (φ, x, m), then
maximize :math:`P(m \in M_d \mid \varphi)` for three permeability boxes L, M, R by stochastic
gradient ascent and judge each optimum :math:`\varphi_\text{prop}` on a 20 × 20 reference grid
(500 microstructures per point) whose best point is :math:`\varphi_\text{ref}`. This module runs
that protocol on the reconstructed simulator (``pspgen-paper-*`` dataset presets, see
``docs/pspgen_reconstruction.md``), with every size multiplied by ``scale``:

==========================  ==============================  ======================================
stage                       paper (``scale = 1``)           at ``scale = s``
==========================  ==============================  ======================================
training set                2 500 φ × 4 (Case 3: × 1)       round(2 500 s) φ (preset scaling)
test set                    500 φ × 4                       round(500 s) φ × 4
reference grid              20 × 20 × 500                   round(20 √s)² × max(20, round(500 s))
training                    500 epochs, batch 50, Adam      max(2, round(500 s)) epochs; lr ÷ 3
                            lr 1e-3, ÷3 after 20 stalled    after max(5, round(20 s)) stalled
                            epochs, 90/10 split, β = 2      epochs (a floor: 2 epochs reacts
                                                            to noise); Case 4 (128²) starts at
                                                            lr 1e-4 (1e-3 diverges there, see
                                                            ``CASE_SPECS``)
early stopping              none (500 epochs)               after max(10, round(100 s)) epochs
                                                            without a better validation
                                                            log p(m | φ) (the weights kept are
                                                            the best epoch's; by then the lr has
                                                            dropped ≥ 5 times: 1e-3 → ≤ 4e-6)
design density              (the β-ELBO only)               plus −4 log p(m | φ), z0 ~ N(0, I)
                                                            (``prior_m_weight`` = 4: calibrates
                                                            the p(m | φ) design reads, see
                                                            :meth:`PSPGen.fit`)
latent sizes                d_z0 ≈ 5 % of the pixels,       same (``PSPGen.from_dataset``)
                            d_z1 = #PCs for 90 % variance
networks                    appendix-A widths               same (``architecture="paper"``:
                                                            better calibrated on Case 1 and
                                                            3–5× faster per epoch than ``mlp``,
                                                            ``docs/results/pspgen_training.md``)
SGA                         M = 50 000, batch 100, lr 0.2,  M = max(200, round(50 000 s)); 5
                            ÷4 after 2 stalled, 20 epochs   epochs below s = 0.05 (smoke runs)
NUTS / SVI over (φ, z0)     (not in the paper): 2 chains    draws and steps × s (floors in
                            × (500 + 500), depth 10; SVI    :func:`protocol`); NUTS tree depth
                            2 000 steps, 1 000 draws        6 below s = 0.1, 4 below 0.01
check of every φ*           1 000 true simulations          max(20, round(1 000 s))
==========================  ==============================  ======================================

Case 3 (§4.4) is Case 1 with one microstructure per φ (2 500 triads) and Case 1's test and
reference sets; Case 4 (§4.5) is the 128² process with its own boxes (Table 3). Case 1 is also
trained with d_z1 = 2 (the paper's Figure 5 model).

Outputs in ``out``: ``results.json`` (everything below, machine-readable), ``results.md`` (per
model variant the paper's Table-1 layout — φ* / p per box for SGA (= φ_prop), NUTS and SVI,
φ_ref / p from the reference grid, the paper's own φ_prop, φ_ref, φ_comp beside — the goal
p(φ_prop) ≥ 0.97 p(φ_ref), the calibration of the model against the simulator
(:mod:`psppyro.cases._calibration`) and a per-stage wall-time table), and figures: ``fig3_*.png``
(reference and model maps of p(m ∈ M_d | φ) with the designs marked), ``fig4_*.png``
(microstructures at φ*), ``fig5_*.png`` (the d_z1 = 2 model's z1 = g(φ) and p(m | φ*)),
``fig6_*.png`` (m drawn with z0 from the encoder given one (φ, x) beside the true m) and
``fig_bayesopt.png`` (BO's trace against simulations spent, φ_prop, φ_comp and φ_BO by
simulation); ``results.md`` adds the rows φ_comp / p and φ_BO / p [simulations spent] to every
table and a section with the baselines' sizes and times.

p(φ_ref) is reported twice: from the reference grid (the maximum of noisy grid estimates, biased
upwards at small ``per_phi``) and from the same number of fresh simulations as φ*; the goal ratio
uses the fresh one so that both sides are estimated alike. Nothing is tuned to the reference grid:
it is only read after design.

**Competitor and BO (φ_comp, φ_BO).** After the PSP-GEN variants two baselines get the same data
budget (``run(..., competitor=False, bayesopt=False)`` or ``psppyro benchmark ... --no-competitor
--no-bayesopt`` skip them):

- *competitor* — Generale et al.'s chain (S2 → PCA → SV-MOGPs, :mod:`psppyro.models.generale`)
  and its conditional flow (:mod:`psppyro.design.conditional_flow`), trained by
  :func:`psppyro.cases.generale.competitor_design` on exactly PSP-GEN's training split (the
  first variant's 90 %; the 10 % validation part is not used), φ_comp per box;
- *BO* — :func:`psppyro.design.bayesopt.bayesopt_design` on the true simulator, per box a
  budget of as many simulations as the training data set holds (training + validation triads:
  what PSP-GEN consumed), in evaluations of n = 50 simulations (s.e. of one p̂ ≤ 0.07, so the
  GP sees signal; 200 evaluations at scale 1, few enough for an exact GP);

each φ_comp / φ_BO is checked with ``eval_samples`` true simulations like φ_prop.

==========================  ==============================  ======================================
stage                       ``scale = 1`` (Cases 1, 3)      at ``scale = s``
==========================  ==============================  ======================================
SV-MOGPs                    40 epochs, batch 256, 128       40 epochs; max(8, round(128 s))
                            inducing points, lr 0.01        inducing points; lr 0.05 below 0.5
flow                        20 000 chain pairs, 50 epochs   max(1 000, 20 000 s), max(3, 50 s)
BO                          budget = training data size     the same; n = max(10, round(50 s));
                            (10 000), n = 50                budget ≥ 2 n
checks                      1 000 simulations per design    max(20, round(1 000 s))
==========================  ==============================  ======================================

Cost at scale 1, Case 1, one core, measured on pieces and extrapolated (9 000 training
triads, 12 principal components; two measurements on the shared 2-core machine, at load ≈ 1.3,
i.e. about one core free, and at load ≈ 6.6): an epoch of the PS GP (12 latent GPs × 128
inducing points) takes 9.8 s (extrapolated from 1.1 s per 1 000 triads) / 19.3 s, of the SP GP
1.1 s / 4.8 s, so 40 epochs (1 440 minibatch steps; the natural-gradient q(u) converges in tens)
take ≈ 7.3 / 16 min where Case 2's 200 epochs would take ≈ 36 / 80 min; PCA 11 s (loaded); the
chain's 20 000 pairs 4 s / 14 s; a flow epoch on them 0.7 s / 4.5 s (50 epochs ≈ 0.6 / 3.7 min);
a 36² simulation 7 ms / 25 ms, and BO's GP fit + acquisition 0.3–0.5 s per evaluation (2-D φ,
≤ 200 points), so BO's 10 000 simulations in 200 evaluations take ≈ 2.5 / 5.5 min per box;
the φ_comp point estimates ≈ 23 s per box (loaded); the checks (6 × 1 000 simulations)
0.7 / 2.5 min. Both stages together: ≈ 17 min per case on a free core (≈ 45 min on the
loaded machine). Case 4 (128², ≈ 0.31 s per simulation) cannot
afford the budget: its BO budget is capped at 400 simulations per box (evaluations of 20) and
φ_comp / φ_BO are checked with 200 simulations (s.e. ≤ 0.035): ≈ 20–25 min on a free core
(competitor 8–12 min, depending on its number of components; BO ≈ 6 min; checks ≈ 6 min).

Data sets, trained models and every checked design are kept in ``out/data`` and ``out/models``:
a run into the same folder reuses complete stores, resumes interrupted ones
(``psppyro.data.generate``), reuses trained models (or resumes training from the newest
checkpoint, written every 5 % of the epochs; ``<variant>_train.json`` records the training
settings, and a model or checkpoints made with other settings are refused before any work) and
reuses each design with its true-simulation check
(``<variant>_design_<box>_<method>.json``, valid while the model file's SHA-256, the method's
options and the seeds match), so an interrupted run loses at most the design in progress. The
baselines are
cached in ``out/models`` too: ``competitor.pt`` + ``competitor_fit.json`` (the fitted competitor
and its settings), ``competitor.json`` (φ_comp and checks) and ``bayesopt_<box>.json`` (φ_BO, its
trace and check), each reused when its settings match — so PSP-GEN can run first (with
``--no-competitor --no-bayesopt``) and the baselines later into the same folder without
retraining or redesigning anything (only the calibration and figures are recomputed).

Example::

    >>> protocol("pspgen-paper-case1", 0.01)["train_epochs"]
    5
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import torch

from psppyro._random import derive_seed

from ._common import (
    StageClock,
    check_run_args,
    check_scale,
    folder_lock,
    jsonable,
    read_cache,
    write_json_atomic,
)

__all__ = ["CASE_SPECS", "protocol", "run"]

#: name → the paper's case key and the dataset presets it uses.
CASE_SPECS: dict[str, dict] = {
    "pspgen-paper-case1": {
        "paper": "case1",
        "train": "pspgen-paper-case1-train",
        "test": "pspgen-paper-case1-test",
        "reference": "pspgen-paper-case1-reference",
        "variants": {"dz1_default": None, "dz1_2": 2},
        "bo_budget_cap": None, "bo_sims_per_eval": 50, "baseline_eval": 1000,
    },
    "pspgen-paper-case3": {
        "paper": "case3",
        "train": "pspgen-paper-case3-train",
        "test": "pspgen-paper-case1-test",
        "reference": "pspgen-paper-case1-reference",
        "variants": {"dz1_default": None},
        "bo_budget_cap": None, "bo_sims_per_eval": 50, "baseline_eval": 1000,
    },
    "pspgen-paper-case4": {
        "paper": "case4",
        "train": "pspgen-paper-case4-train",
        "test": "pspgen-paper-case4-test",
        "reference": "pspgen-paper-case4-reference",
        "variants": {"dz1_default": None},
        # a 128² simulation costs ~0.3 s on one core: BO and the baseline checks are reduced
        # (module docstring, "Competitor and BO")
        "bo_budget_cap": 400, "bo_sims_per_eval": 20, "baseline_eval": 200,
        # Adam moves every weight by ≈ lr per step, so the x-encoders' outputs move by ≈ lr ×
        # (number of white pixels): 12.6× more at 128² than at 36². With the paper's 1e-3 the
        # 128² model diverges in its first epoch (KL 1.2e6, measured at scale 0.1); 1e-4 (≈ 1e-3
        # × 36² / 128²) trains (KL 240 → 145 in 4 epochs).
        "lr": 1e-4,
    },
}

_METHODS = ("sga", "nuts", "svi")


def _s(seed, *keys):
    """A 31-bit seed derived from ``seed`` and ``keys`` (Pyro and NumPy take at most 32 bits)."""
    return derive_seed(seed, *keys) % 2**31


def protocol(name: str, scale: float = 1.0) -> dict:
    """Every size of case ``name`` at ``scale`` (the module table), as a dict.

    Args:
        name: one of :data:`CASE_SPECS`.
        scale: factor in (0, 1]; 1 is the paper's protocol.

    Returns:
        dict: the case's presets and sizes (``train_epochs``, ``sga`` options, ``nuts``/``svi``
        options, ``reference_per_phi``, ``eval_samples``, ``competitor`` and ``bayesopt``
        options of the baselines, ...).

    Raises:
        ValueError / TypeError: unknown ``name``, ``scale`` outside (0, 1].

    Example::

        >>> p = protocol("pspgen-paper-case1")
        >>> p["sga"]["num_z"], p["train_epochs"], p["eval_samples"]
        (50000, 500, 1000)
    """
    if not isinstance(name, str) or name not in CASE_SPECS:
        raise ValueError(f"name must be one of {list(CASE_SPECS)}, got {name!r}")
    s = check_scale(scale)
    spec = CASE_SPECS[name]
    return {
        "case": name,
        "paper": spec["paper"],
        "scale": s,
        "presets": {k: spec[k] for k in ("train", "test", "reference")},
        "variants": dict(spec["variants"]),
        "reference_per_phi": max(20, round(500 * s)),
        **_training_protocol(s, spec.get("lr", 1e-3)),
        "sga": {"num_z": max(200, round(50_000 * s)), "batch_size": 100, "lr": 0.2,
                "decay": 4.0, "patience": 2, "epochs": 20 if s >= 0.05 else 5},
        "nuts": {"num_samples": max(5, round(500 * s)), "warmup_steps": max(5, round(500 * s)),
                 "num_chains": 2, "max_tree_depth": 10 if s >= 0.1 else (6 if s >= 0.01 else 4)},
        "svi": {"num_steps": max(20, round(2000 * s)), "num_samples": max(100, round(1000 * s))},
        "num_eval_samples": max(200, round(10_000 * s)),
        "eval_samples": max(20, round(1000 * s)),
        "calibration_samples": max(200, round(2000 * s)),
        "gallery": 5,
        "competitor": {"gp_epochs": 40, "num_inducing": max(8, round(128 * s)),
                       "gp_batch_size": 256, "gp_lr": 0.01 if s >= 0.5 else 0.05,
                       "num_pairs": max(1000, round(20_000 * s)),
                       "flow_epochs": max(3, round(50 * s)),
                       "num_candidates": max(512, round(4096 * s)),
                       "eval_samples": max(20, round(spec["baseline_eval"] * s))},
        "bayesopt": {"budget_cap": None if spec["bo_budget_cap"] is None
                     else max(20, round(spec["bo_budget_cap"] * s)),
                     "sims_per_eval": max(10, round(spec["bo_sims_per_eval"] * s)),
                     "num_restarts": 8, "raw_samples": 256,
                     "eval_samples": max(20, round(spec["baseline_eval"] * s))},
    }


def _training_protocol(s, lr=1e-3):
    """PSP-GEN's training settings at scale ``s`` (the module table); Cases 2 and 5
    (:mod:`psppyro.cases.generale`) train with the same."""
    return {
        "validation_fraction": 0.1,
        "beta": 2.0,
        "architecture": "paper",
        "train_epochs": max(2, round(500 * s)),
        "batch_size": 50,
        "lr": lr,
        "lr_patience": max(5, round(20 * s)),
        "patience": max(10, round(100 * s)),
        "lr_factor": 1.0 / 3.0,
        "prior_m_weight": 4.0,  # 0 is the paper's objective; see PSPGen.fit
    }


def _dataset(preset_name, scale, folder, per_phi=None, progress=True):
    from psppyro.data import dataset_preset

    p = dataset_preset(preset_name, scale=scale)
    overrides = {} if per_phi is None else {"per_phi": per_phi}
    path = folder / f"{preset_name}-s{scale:g}.zarr"
    return p.generate(path, workers=1, progress=progress, **overrides), p


def _split(ds, proto, seed):
    """The (training, validation) split of a variant trained with ``seed`` (PSP-GEN and the
    competitor use the same one)."""
    from psppyro.data import split

    f = proto["validation_fraction"]
    return split(ds, (1 - f, f), seed=_s(seed, 3))


_TRAIN_KEYS = ("presets", "scale", "validation_fraction", "beta", "architecture", "train_epochs",
               "batch_size", "lr", "lr_patience", "patience", "lr_factor", "prior_m_weight")


def _train_settings(proto, variant_dz1, seed):
    """What a trained model (and its checkpoints) in ``out/models`` is made with."""
    return jsonable({**{k: proto.get(k) for k in _TRAIN_KEYS}, "d_z1": variant_dz1, "seed": seed})


def _check_trained(folder, label, settings, ignore=()):
    """Refuse a model or checkpoints in ``folder`` trained with other settings (``ValueError``);
    models saved before ``<label>_train.json`` existed are reused as they are. Keys in
    ``ignore`` are not compared (settings not known yet, checked again when training)."""
    path = folder / f"{label}_train.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        saved = None
    if isinstance(saved, dict):
        saved = {k: v for k, v in saved.items() if k not in ignore}
    settings = {k: v for k, v in settings.items() if k not in ignore}
    if saved != settings:
        diff = (sorted(k for k in settings if saved.get(k) != settings[k])
                if isinstance(saved, dict) else ["unreadable"])
        raise ValueError(f"{folder / label}.pt and its checkpoints were trained with other "
                         f"settings ({', '.join(diff)}; see {path.name}): use another --out or "
                         "delete them")


def _train(ds, variant_dz1, proto, folder, label, seed, progress):
    from psppyro.models import PSPGen

    path = folder / f"{label}.pt"
    hist_path = folder / f"{label}_history.json"
    settings = _train_settings(proto, variant_dz1, seed)
    _check_trained(folder, label, settings)
    if path.is_file():
        gen = PSPGen.load(path)
        history = json.loads(hist_path.read_text()) if hist_path.is_file() else {}
        return gen, history, True
    write_json_atomic(folder / f"{label}_train.json", settings)  # covers the checkpoints too
    train, val = _split(ds, proto, seed)
    gen = PSPGen.from_dataset(ds, d_z1=variant_dz1, beta=proto["beta"],
                             architecture=proto["architecture"], seed=_s(seed, 4))
    ckpt = folder / f"{label}_checkpoints"
    resume = True if any(ckpt.glob("epoch_*.pt")) else None
    history = gen.fit(
        train, val, epochs=proto["train_epochs"], batch_size=proto["batch_size"], lr=proto["lr"],
        patience=proto["patience"], lr_patience=proto["lr_patience"],
        lr_factor=proto["lr_factor"], checkpoint_dir=str(ckpt),
        checkpoint_every=max(1, proto["train_epochs"] // 20), resume=resume,
        seed=_s(seed, 5), progress=progress, prior_m_weight=proto["prior_m_weight"],
    )
    gen.save(path)
    hist_path.write_text(json.dumps(jsonable(history), allow_nan=True))
    return gen, history, False


def _design(gen, box, method, proto, seed, progress):
    from psppyro.design import DesignWarning, infer_design

    opts = dict(proto[method])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        res = infer_design(gen, box, method, seed=seed, progress=progress,
                           num_eval_samples=proto["num_eval_samples"], **opts)
    keep = ("r_hat", "ess_bulk", "divergences", "khat", "final_elbo", "restart_objectives")
    diag = {k: jsonable(v) for k, v in res.diagnostics.items() if k in keep}
    return {
        "phi_star": [float(v) for v in res.phi_star],
        "p_model": res.probability,
        "p_model_se": res.objective_se,
        "wall_time": res.wall_time,
        "warnings": list(res.warnings),
        "diagnostics": diag,
    }


def _z1(gen, phi):
    """z1 = g(φ) of a PSPGen (its process network on normalized φ)."""
    fn = getattr(gen, "process_latent", None)
    with torch.no_grad():
        if callable(fn):
            return fn(phi)
        return gen.process_net(gen._normalize_phi(phi))


def _fmt_phi(phi):
    return "(" + ", ".join(f"{v:.3f}" for v in phi) + ")"


def _grid_axes(phi):
    """Sorted unique coordinates per axis and each point's (i, j) position."""
    axes = [np.unique(np.round(phi[:, k], 9)) for k in range(phi.shape[1])]
    pos = [np.searchsorted(a, np.round(phi[:, k], 9)) for k, a in enumerate(axes)]
    return axes, pos


def _fig3(path, name, targets, cal, designs, refs, variant, baselines=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(2, len(targets), figsize=(4 * len(targets), 6.4), squeeze=False)
    for c, t in enumerate(targets):
        phi = np.asarray(cal[t]["phi"])
        axes, pos = _grid_axes(phi)
        for r, key in enumerate(("p_sim", "p_model")):
            img = np.full((len(axes[1]), len(axes[0])), np.nan)
            img[pos[1], pos[0]] = cal[t][key]
            ax = axs[r, c]
            ext = []
            for a, pad in ((axes[0], 0.5), (axes[1], 0.05)):  # cells centred on grid points
                half = (a[1] - a[0]) / 2 if len(a) > 1 else pad
                ext += [a[0] - half, a[-1] + half]
            im = ax.imshow(img, origin="lower", extent=ext, aspect="auto", vmin=0, vmax=1,
                           cmap="viridis", interpolation="nearest")
            for method, color, marker in (("sga", "red", "o"), ("nuts", "white", "s"),
                                          ("svi", "orange", "^")):
                p = designs[t][method]["phi_star"]
                ax.plot(p[0], p[1], marker, color=color, mec="k", ms=7,
                        label="phi_prop (SGA)" if method == "sga" else method.upper())
            for key, color, marker in (("competitor", "lime", "v"), ("bayesopt", "magenta", "D")):
                p = (baselines or {}).get(key, {}).get(t)
                if p is not None:
                    ax.plot(p[0], p[1], marker, color=color, mec="k", ms=7,
                            label="phi_comp" if key == "competitor" else "phi_BO")
            ax.plot(*refs[t]["phi_ref"], "*", color="cyan", mec="k", ms=11, label="phi_ref")
            ax.set_title(f"{t}: {'simulator (reference grid)' if r == 0 else 'model'}")
            ax.set_xlabel("phi_1")
            ax.set_ylabel("phi_2")
            fig.colorbar(im, ax=ax, fraction=0.046)
    axs[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{name} ({variant}): p(m in M_d | phi)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _fig4(path, process, designs, targets, n, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psppyro.diagnostics import plot_microstructures

    xs, titles = [], []
    for k, t in enumerate(targets):
        phi = torch.tensor(designs[t]["sga"]["phi_star"])
        xs.append(torch.as_tensor(process.sample(phi, num_samples=n, seed=_s(seed, 9, k))))
        titles += [f"{t} {_fmt_phi(designs[t]['sga']['phi_star'])}"] + [""] * (n - 1)
    fig = plot_microstructures(torch.cat(xs), ncols=n, titles=titles,
                               title="microstructures at phi_prop (rows: L, M, R)")
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _fig5(path, gen, test, designs, targets, boxes, eval_m):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phi, m = test["phi"], test["m"]
    z1 = _z1(gen, phi.to(torch.get_default_dtype())).double()
    colour = (m[:, 0] - m[:, 1]).numpy()
    fig, axs = plt.subplots(1, 4, figsize=(16, 3.8))
    cols = {"L": "red", "M": "blue", "R": "purple"}
    axs[0].scatter(phi[:, 0], phi[:, 1], c=colour, s=6, cmap="coolwarm")
    axs[0].set(title="(a) test phi (colour: m1 - m2)", xlabel="phi_1", ylabel="phi_2")
    axs[1].scatter(z1[:, 0], z1[:, min(1, z1.shape[1] - 1)], c=colour, s=6, cmap="coolwarm")
    axs[1].set(title="(b) z1 = g(phi)", xlabel="z1_1", ylabel="z1_2")
    ok = torch.isfinite(m).all(-1) & (m > -20).all(-1)
    axs[2].scatter(m[ok, 0], m[ok, 1], c=colour[ok.numpy()], s=6, cmap="coolwarm")
    axs[2].set(title="(c) test m", xlabel="ln k_xx", ylabel="ln k_yy")
    for t in targets:
        p = torch.tensor([designs[t]["sga"]["phi_star"]])
        zt = _z1(gen, p.to(torch.get_default_dtype()))[0]
        axs[0].plot(p[0, 0], p[0, 1], "o", color=cols.get(t, "k"), mec="k", ms=8, label=t)
        axs[1].plot(zt[0], zt[min(1, zt.shape[0] - 1)], "o", color=cols.get(t, "k"), mec="k", ms=8)
        mm = eval_m[t]
        ok = (mm > -20).all(-1)
        axs[3].scatter(mm[ok, 0], mm[ok, 1], s=5, color=cols.get(t, "k"), label=t)
        lo, hi = boxes[t].low.tolist(), boxes[t].high.tolist()
        for ax in (axs[2], axs[3]):
            ax.add_patch(plt.Rectangle((lo[0], lo[1]), hi[0] - lo[0], hi[1] - lo[1], fill=False,
                                       ec="green", lw=1.5))
    axs[3].set(title="(e) simulated m at phi_prop", xlabel="ln k_xx", ylabel="ln k_yy")
    axs[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _fig6(path, gen, test, seed, n_show=3, num_samples=100):
    """Figure 6: m drawn via z0 ~ q(z0 | x, φ) beside the true m; returns the coverage check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phi, x, m = test["phi"], test["x"], test["m"]
    dt = torch.get_default_dtype()
    s = gen.posterior_property_samples(phi.to(dt), x.to(dt), num_samples,
                                       seed=_s(seed, 11)).double()
    s = torch.where(s <= -20, torch.full_like(s, -math.inf), s)  # blocked: see _calibration
    m = torch.where(m <= -20, torch.full_like(m, -math.inf), m)
    lo = torch.quantile(s, 0.05, dim=0, interpolation="lower")
    hi = torch.quantile(s, 0.95, dim=0, interpolation="higher")
    inside = ((m >= lo) & (m <= hi)).all(-1)
    cover = float(inside.double().mean())
    g = torch.Generator().manual_seed(_s(seed, 12))
    pick = torch.randperm(phi.shape[0], generator=g)[:n_show]
    fig, axs = plt.subplots(1, len(pick), figsize=(4 * len(pick), 3.6), squeeze=False)
    for ax, i in zip(axs[0], pick.tolist()):
        ax.scatter(s[:, i, 0], s[:, i, 1], s=5, color="k", label="m ~ p(m | z0, g(phi)), "
                   "z0 ~ q(z0 | x, phi)")
        ax.plot(m[i, 0], m[i, 1], "o", color="red", ms=8, label="true m")
        ax.set(title=f"phi = {_fmt_phi(phi[i].tolist())}", xlabel="ln k_xx", ylabel="ln k_yy")
    axs[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return {"central90_both_components": cover, "num_test": int(m.shape[0]),
            "num_samples": num_samples}


def _test_tensors(ds):
    from psppyro.data import to_torch

    t = to_torch(ds, ("phi", "x", "m"))
    return {k: v.double() if k != "x" else v for k, v in t.items()}


def _checked_designs(gen, label, v, boxes, proto, folder, seed, process, properties, clock,
                     progress, methods=_METHODS):
    """The designs of variant ``v`` (model ``folder/<label>.pt``) per box and method (SGA, NUTS,
    SVI), each checked with ``eval_samples`` true simulations; every (box, method) cached in
    ``folder`` (module docstring). Returns (designs, evaluations, simulated m at each SGA
    design)."""
    from psppyro.design import evaluate

    targets = list(boxes)
    designs, evaluations, eval_m = {t: {} for t in targets}, {t: {} for t in targets}, {}
    digest = _file_digest(folder / f"{label}.pt")
    for k, t in enumerate(targets):
        for method in methods:
            j = _METHODS.index(method)  # the seeds do not depend on which methods run
            cache = folder / f"{label}_design_{t}_{method}.json"
            settings = {"model_sha256": digest, "method": method, "options": proto[method],
                        "num_eval_samples": proto["num_eval_samples"],
                        "eval_samples": proto["eval_samples"],
                        "seeds": [_s(seed, 40, v, k, j), _s(seed, 50, v, k, j)],
                        "low": boxes[t].low.tolist(), "high": boxes[t].high.tolist()}
            cached = read_cache(cache, settings)
            if cached is None:
                with clock(f"design: {label} {method}"):
                    d = _design(gen, boxes[t], method, proto, settings["seeds"][0], progress)
                with clock(f"evaluate: {label} ({len(targets) * len(methods)} designs)"):
                    p, se, m = evaluate(torch.tensor(d["phi_star"]), process, properties,
                                        boxes[t], proto["eval_samples"],
                                        seed=settings["seeds"][1], return_samples=True)
                cached = jsonable({"settings": settings, "design": d,
                                   "evaluation": {"p_sim": float(p), "p_sim_se": float(se)}})
                cached["m_sim"] = m.tolist()  # raw floats: JSON keeps ±Infinity as numbers
                write_json_atomic(cache, cached)
                cached["design"]["reused"] = False
            else:
                cached["design"]["reused"] = True
            designs[t][method] = cached["design"]
            evaluations[t][method] = cached["evaluation"]
            if method == "sga":
                eval_m[t] = torch.tensor(cached["m_sim"], dtype=torch.float64)
    return designs, evaluations, eval_m


def _paired_ratio(phi_prop, phi_ref, box, process, properties, n, seed, cache):
    """p(φ_prop) / p(φ_ref) from ``n`` simulations at each φ drawn with the same seed (common
    random numbers: the same noise fields, so nearby φ give nearly the same microstructures) and
    its delta-method standard error from the paired indicators a_i, b_i,
    se = sd(a − r b) / (√n · mean(b)). Two independent checks of 1 000 simulations each leave the
    ratio a standard error of ≈ 0.04; pairing removes the shared part. Cached in ``cache``."""
    from psppyro.design import evaluate

    settings = {"phi_prop": [float(v) for v in phi_prop], "phi_ref": [float(v) for v in phi_ref],
                "n": n, "seed": seed, "low": box.low.tolist(), "high": box.high.tolist()}
    cached = read_cache(cache, settings)
    if cached is not None:
        return cached["result"]
    hits = []
    for phi in (phi_prop, phi_ref):
        _, _, m = evaluate(torch.tensor(phi), process, properties, box, n, seed=seed,
                           return_samples=True)
        hits.append(box.contains(m.double()).double())
    a, b = hits
    pa, pb = float(a.mean()), float(b.mean())
    r = pa / pb if pb > 0 else math.nan
    se = float((a - r * b).std() / (math.sqrt(n) * pb)) if pb > 0 and n > 1 else math.nan
    result = {"ratio_paired": r, "ratio_paired_se": se, "p_prop_paired": pa, "p_ref_paired": pb,
              "paired_agreement": float((a == b).double().mean()), "paired_n": n}
    write_json_atomic(cache, jsonable({"settings": settings, "result": result}))
    return result


def _file_digest(path):
    """SHA-256 of a file (the identity of a trained model in the design caches)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _competitor_stage(train, val, boxes, process, properties, proto, folder, seed, clock,
                      progress):
    """φ_comp per box: the Generale chain + flow trained on PSP-GEN's training split, each
    φ_comp checked by true simulation. Cached in ``folder``: ``competitor.pt`` (the fitted
    competitor) with ``competitor_fit.json`` (the settings it was fitted with) and
    ``competitor.json`` (designs and checks); each is reused only under the same settings."""
    from psppyro.design import evaluate

    from .generale import competitor_design, design_competitor, load_competitor, save_competitor

    opts = proto["competitor"]
    settings = {**opts, "train_size": int(train.sizes["sample"]), "seed": seed,
                "targets": list(boxes)}
    json_path, model_path = folder / "competitor.json", folder / "competitor.pt"
    cached = read_cache(json_path, settings)
    if cached is not None:
        cached["reused"] = "results"
        return cached
    fit_args = {k: opts[k] for k in ("gp_epochs", "num_inducing", "gp_batch_size", "gp_lr",
                                     "num_pairs", "flow_epochs", "num_candidates")}
    fit_settings = {k: settings[k] for k in ("gp_epochs", "num_inducing", "gp_batch_size",
                                              "gp_lr", "num_pairs", "flow_epochs",
                                              "train_size", "seed")}
    fit_path = folder / "competitor_fit.json"
    if model_path.is_file() and read_cache(fit_path, fit_settings) is not None:
        with clock("competitor: design (trained competitor reused)"):
            fitted = load_competitor(model_path)
            fitted.update(design_competitor(fitted, boxes, num_candidates=opts["num_candidates"],
                                            seed=_s(seed, 1)))
        reused = "model"
    else:
        with clock("competitor: train + design"):
            fitted = competitor_design(train, boxes, phi_bounds=process.phi_bounds,
                                       seed=_s(seed, 1), progress=progress, **fit_args)
            save_competitor(fitted, model_path)
            fit_path.write_text(json.dumps({"settings": jsonable(fit_settings)}))
        reused = False
    designs = {}
    with clock(f"competitor: evaluate ({len(boxes)} designs)"):
        for k, (t, box) in enumerate(boxes.items()):
            d = fitted["designs"][t]
            p, se = evaluate(d.phi.to(process.phi_bounds), process, properties, box,
                             opts["eval_samples"], seed=_s(seed, 2, k))
            designs[t] = {"phi": [float(v) for v in d.phi], "p_sim": float(p),
                          "p_sim_se": float(se), "p_model": fitted["p_model"][t],
                          "conditions": d.conditions, "num_conditions": d.num_conditions}
    chain = fitted["chain"]
    res = {"settings": settings, "designs": designs, "chain": chain.describe(),
           "timings": dict(fitted["timings"]), "train_size": settings["train_size"],
           "validation_unused": int(val.sizes["sample"]), "reused": reused}
    res = jsonable(res)
    json_path.write_text(json.dumps(res, indent=1))
    return res


def _bayesopt_stage(boxes, process, properties, proto, budget, folder, seed, clock, progress):
    """φ_BO per box: BoTorch on the true simulator with ``budget`` simulations, each φ_BO
    checked by fresh simulations. Cached per box: ``bayesopt_<box>.json``."""
    from psppyro.design import evaluate
    from psppyro.design.bayesopt import bayesopt_design

    opts = proto["bayesopt"]
    out = {}
    for k, (t, box) in enumerate(boxes.items()):
        settings = {**opts, "budget": budget, "seed": seed, "box": t,
                    "low": box.low.tolist(), "high": box.high.tolist()}
        path = folder / f"bayesopt_{t}.json"
        cached = read_cache(path, settings)
        if cached is not None:
            cached["reused"] = True
            out[t] = cached
            continue
        with clock(f"bayesopt: {t} ({budget} simulations)"):
            bo = bayesopt_design(box, process=process, properties=properties, budget=budget,
                                 sims_per_eval=opts["sims_per_eval"],
                                 num_restarts=opts["num_restarts"],
                                 raw_samples=opts["raw_samples"], seed=_s(seed, 1, k),
                                 progress=progress)
        with clock("bayesopt: evaluate"):
            p, se = evaluate(bo.phi.to(process.phi_bounds), process, properties, box,
                             opts["eval_samples"], seed=_s(seed, 2, k))
        res = {"settings": settings, "phi": [float(v) for v in bo.phi], "p_sim": float(p),
               "p_sim_se": float(se), "p_model": bo.trace[-1]["posterior_mean"],
               "simulations": int(bo.simulations), "evaluations": len(bo.trace),
               "trace": bo.trace, "timings": dict(bo.timings), "reused": False}
        res = jsonable(res)
        path.write_text(json.dumps(res, indent=1))
        out[t] = res
    return out


def _fig_bo(path, name, results):
    """BO's trace (GP mean at its recommendation, observed p̂) against simulations spent, with
    φ_prop, φ_comp and φ_BO by simulation at their budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bo = results["bayesopt"]
    targets = list(bo)
    fig, axs = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.3), squeeze=False)
    n = results["budget"]
    first = next(iter(results["variants"].values()), None)
    for ax, t in zip(axs[0], targets):
        tr = bo[t]["trace"]
        sims = [r["simulations"] for r in tr]
        ax.plot(sims, [r["posterior_mean"] for r in tr], "-", label="BO: GP mean at φ_BO")
        ax.plot(sims, [r["p_hat"] for r in tr], ".", alpha=0.5, label="BO: observed p̂")
        ax.errorbar([sims[-1]], [bo[t]["p_sim"]], [bo[t]["p_sim_se"]], fmt="s", color="C0",
                    label="φ_BO by simulation")
        if first is not None:
            e = first["evaluations"][t]["sga"]
            ax.errorbar([n], [e["p_sim"]], [e["p_sim_se"]], fmt="o", color="C3",
                        label="φ_prop (PSP-GEN)")
        comp = results.get("competitor")
        if comp is not None:
            d = comp["designs"][t]
            ax.errorbar([n], [d["p_sim"]], [d["p_sim_se"]], fmt="^", color="C2",
                        label="φ_comp")
        ref = results["reference"][t]
        ax.axhline(ref["p_ref_fresh"], color="k", ls=":", lw=1, label="p(φ_ref)")
        ax.set(xlabel="simulations spent", ylabel="P(m ∈ M_d | φ)", title=f"{name}: {t}",
               ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _check_run_args(name, scale, out, seed, progress):
    if not isinstance(name, str) or name not in CASE_SPECS:
        raise ValueError(f"name must be one of {list(CASE_SPECS)}, got {name!r}")
    scale, out, seed = check_run_args(scale, out, seed, progress)
    return scale, seed, out


def run(name: str, *, scale: float, out, seed: int = 0, progress: bool = True,
        competitor: bool = True, bayesopt: bool = True, variants=None) -> dict:
    """Run one PSP-GEN paper case end to end and write its results into ``out``.

    Args:
        name: ``"pspgen-paper-case1"``, ``"pspgen-paper-case3"`` or ``"pspgen-paper-case4"``.
        scale: factor in (0, 1] on every size (:func:`protocol`); 1 is the paper's protocol.
        out: output folder (created; its parent must exist). Data and models in it are reused.
        seed: non-negative int; all randomness derives from it.
        progress: tqdm progress bars.
        competitor: run the competitor stage (φ_comp, module docstring).
        bayesopt: run the Bayesian-optimization stage (φ_BO; needs ``psppyro[bo]``).
        variants: the PSP-GEN variants to run (labels of ``protocol(name)["variants"]``, e.g.
            ``["dz1_default"]``); None runs all. Each keeps its seeds, so its models and designs
            are the ones a full run makes (and reuses).

    Returns:
        dict: what ``results.json`` holds (``protocol``, per variant ``designs``, ``evaluations``,
        ``calibration``, ``table``; ``reference``, ``competitor``, ``bayesopt``, ``budget``,
        ``wall_times``).

    Raises:
        ValueError / TypeError: an unknown case, a scale outside (0, 1], a bad seed, an ``out``
        that is a file or has no parent folder, non-bool stage switches, an unknown variant —
        all before any work.
        ImportError: ``bayesopt=True`` without BoTorch (before any work).

    Example::

        >>> run("pspgen-paper-case1", scale=2.0, out="x")
        Traceback (most recent call last):
        ...
        ValueError: scale must be in (0, 1], got 2.0
    """
    scale, seed, out = _check_run_args(name, scale, out, seed, progress)
    for arg, value in (("competitor", competitor), ("bayesopt", bayesopt)):
        if not isinstance(value, bool):
            raise TypeError(f"{arg} must be True or False, got {value!r}")
    known = list(CASE_SPECS[name]["variants"])
    if variants is not None:
        if isinstance(variants, str) or not all(isinstance(v, str) for v in variants):
            raise TypeError(f"variants must be a list of labels from {known}, got {variants!r}")
        if not variants or any(v not in known for v in variants):
            raise ValueError(f"variants must be a non-empty subset of {known}, got {variants!r}")
    if bayesopt:
        from psppyro.design.bayesopt import _botorch

        _botorch()  # ImportError with the install hint before any work
    with folder_lock(out):  # one run per folder: its caches would race
        return _run(name, scale, out, seed, progress, competitor, bayesopt, variants)


def _run(name, scale, out, seed, progress, competitor, bayesopt, variants):
    from tqdm.auto import tqdm

    from psppyro.design import evaluate, paper_reference, paper_targets
    from psppyro.process import preset as process_preset

    from ._calibration import interval_coverage, oracle_r2, probability_calibration

    proto = protocol(name, scale)
    spec = CASE_SPECS[name]
    out.mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    clock = StageClock()
    boxes = paper_targets(spec["paper"])
    paper = paper_reference(spec["paper"])
    targets = list(boxes)
    chosen = {v: i for i, v in enumerate(proto["variants"])
              if variants is None or v in variants}
    for label, v in chosen.items():  # stale models are refused before the data are touched
        _check_trained(out / "models", label,
                       _train_settings(proto, proto["variants"][label], _s(seed, 30, v)))
    n_stages = 3 + 4 * len(chosen) + int(competitor) + int(bayesopt)
    bar = tqdm(total=n_stages, desc=name, disable=not progress, unit="stage")

    def stage(text):
        bar.set_postfix_str(text)

    stage("data")
    with clock("data: train"):
        train_ds, train_p = _dataset(spec["train"], scale, out / "data", progress=progress)
    with clock("data: test"):
        test_ds, _ = _dataset(spec["test"], scale, out / "data", progress=progress)
    with clock("data: reference"):
        ref_ds, ref_p = _dataset(spec["reference"], scale, out / "data",
                                 per_phi=proto["reference_per_phi"], progress=progress)
    bar.update(1)
    process = process_preset(train_p.process)
    properties = train_p.properties
    test = _test_tensors(test_ds)

    # Reference optimum per box from the grid, and the same number of fresh simulations there.
    stage("reference optima")
    from psppyro.data import reference_probability

    refs = {}
    with clock("reference: grid optima + fresh simulations"):
        for k, t in enumerate(targets):
            rp = reference_probability(ref_ds, boxes[t].low.tolist(), boxes[t].high.tolist())
            p = rp["probability"].values
            i = int(np.argmax(p))
            phi_ref = [float(v) for v in rp["phi"].values[i]]
            pf, sf = evaluate(torch.tensor(phi_ref), process, properties, boxes[t],
                              proto["eval_samples"], seed=_s(seed, 20, k))
            refs[t] = {"phi_ref": phi_ref, "p_ref_grid": float(p[i]),
                       "p_ref_grid_se": float(rp["standard_error"].values[i]),
                       "p_ref_fresh": float(pf), "p_ref_fresh_se": float(sf),
                       "grid_points": int(p.size), "per_phi": int(rp["count"].values[i])}
    bar.update(1)

    results = {"case": name, "protocol": proto, "reference": refs, "variants": {},
               "paper": {t: {"phi_prop": list(d.phi_prop), "p_prop": d.p_prop,
                             "phi_ref": None if d.phi_ref is None else list(d.phi_ref),
                             "p_ref": d.p_ref, "phi_comp": list(d.phi_comp), "p_comp": d.p_comp,
                             "source": d.source} for t, d in paper.items()}}
    for label, v in chosen.items():
        dz1 = proto["variants"][label]
        stage(f"train {label}")
        with clock(f"train: {label}"):
            gen, history, reused = _train(train_ds, dz1, proto, out / "models", label,
                                          _s(seed, 30, v), progress)
        bar.update(1)
        stage(f"design {label}")
        designs, evaluations, eval_m = _checked_designs(
            gen, label, v, boxes, proto, out / "models", seed, process, properties, clock,
            progress)
        bar.update(2)
        stage(f"calibration + figures {label}")
        with clock(f"calibration: {label}"):
            cal = probability_calibration(gen, boxes, ref_ds, proto["calibration_samples"],
                                          seed=_s(seed, 60, v))
            coverage = interval_coverage(gen, test["phi"].to(torch.get_default_dtype()),
                                         test["m"], 0.9, proto["calibration_samples"],
                                         seed=_s(seed, 61, v))
            r2 = oracle_r2(gen, ref_ds, proto["calibration_samples"], seed=_s(seed, 62, v))
        with clock(f"figures: {label}"):
            _fig3(out / f"fig3_{label}.png", name, targets, cal, designs, refs, label)
            _fig4(out / f"fig4_{label}.png", process, designs, targets, proto["gallery"],
                  _s(seed, 70, v))
            fig6 = _fig6(out / f"fig6_{label}.png", gen, test, _s(seed, 71, v))
            if getattr(gen, "d_z1", None) == 2:
                _fig5(out / f"fig5_{label}.png", gen, test, designs, targets, boxes, eval_m)
        bar.update(1)
        table = {}
        with clock(f"goal check: {label} (paired simulations)"):
            for k, t in enumerate(targets):
                ps = evaluations[t]["sga"]["p_sim"]
                pr = refs[t]["p_ref_fresh"]
                paired = _paired_ratio(designs[t]["sga"]["phi_star"], refs[t]["phi_ref"],
                                       boxes[t], process, properties, proto["eval_samples"],
                                       _s(seed, 21, k),
                                       out / "models" / f"{label}_paired_{t}.json")
                table[t] = {"ratio_prop_ref": ps / pr if pr > 0 else math.nan, **paired,
                            "goal_met": bool(paired["ratio_paired"] >= 0.97)}
        results["variants"][label] = {
            "d_z1": int(gen.d_z1), "d_z0": int(gen.d_z0),
            "model_config": jsonable(gen.config()) if hasattr(gen, "config") else {},
            "model_reused": reused,
            "best_epoch": jsonable(history.get("best_epoch")) if history else None,
            "epochs_run": len(history.get("train_loss", history.get("loss", []))) if history
            else None,
            "designs": designs, "evaluations": evaluations, "table": table,
            "calibration": {
                "probability": {t: {k: c[k] for k in ("mean_abs_error", "max_abs_error")}
                                for t, c in cal.items()},
                "probability_maps": cal,
                "coverage90": coverage, "oracle": r2, "figure6_check": fig6},
        }
    # Baselines on the same data budget: the competitor trained on variant 0's training
    # split (the triads PSP-GEN fits; its 10 % validation part is unused by the competitor),
    # BO with as many simulations as the training data set holds (training + validation).
    n_data = int(train_ds.sizes["sample"])
    cap = proto["bayesopt"]["budget_cap"]
    budget = max(2 * proto["bayesopt"]["sims_per_eval"], n_data if cap is None
                 else min(n_data, cap))
    results["budget"] = budget
    results["training_data_size"] = n_data
    results["competitor"] = results["bayesopt"] = None
    if competitor:
        stage("competitor")
        tr, val = _split(train_ds, proto, _s(seed, 30, 0))
        results["competitor"] = _competitor_stage(tr, val, boxes, process, properties, proto,
                                                  out / "models", _s(seed, 80), clock, progress)
        bar.update(1)
    if bayesopt:
        stage("bayesopt")
        results["bayesopt"] = _bayesopt_stage(boxes, process, properties, proto, budget,
                                              out / "models", _s(seed, 81), clock, progress)
        bar.update(1)
        with clock("figures: bayesopt"):
            _fig_bo(out / "fig_bayesopt.png", name, results)
    if competitor or bayesopt:  # Figure 3 again, with φ_comp and φ_BO marked
        base = {"competitor": {t: d["phi"] for t, d in (results["competitor"] or {}).get(
                    "designs", {}).items()},
                "bayesopt": {t: d["phi"] for t, d in (results["bayesopt"] or {}).items()}}
        with clock("figures: baselines in fig3"):
            for label, res in results["variants"].items():
                _fig3(out / f"fig3_{label}.png", name, targets,
                      res["calibration"]["probability_maps"], res["designs"], refs, label, base)
    bar.close()
    results["wall_times"] = dict(clock.stages)
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=1))
    (out / "results.md").write_text(results_markdown(results))
    return results


def _baselines_markdown(results, targets):
    comp, bo = results.get("competitor"), results.get("bayesopt")
    if not comp and not bo:
        return []
    lines = ["## Competitor (φ_comp) and Bayesian optimization (φ_BO)", ""]
    if comp:
        st, ch, tm = comp["settings"], comp["chain"], comp["timings"]
        lines += [
            f"Competitor (Generale et al.: S2 → PCA → SV-MOGPs → conditional flow) trained on "
            f"PSP-GEN's training split ({comp['train_size']} triads): {ch['n_components']} "
            f"principal components ({100 * ch['explained_variance']:.1f} % of the S2 variance), "
            f"{st['num_inducing']} inducing points, {st['gp_epochs']} GP epochs (batch "
            f"{st['gp_batch_size']}), flow on {st['num_pairs']} chain pairs × "
            f"{st['flow_epochs']} epochs; every φ_comp checked with {st['eval_samples']} "
            f"simulations. Fit times (s): chain {tm.get('chain_s', 0):.1f}, pairs "
            f"{tm.get('pairs_s', 0):.1f}, flow {tm.get('flow_fit_s', 0):.1f}, designs "
            f"{tm.get('design_s', 0):.1f}" + (" (cached: this run reused "
                                              f"the {comp['reused']})" if comp.get("reused")
                                              else "") + ".", ""]
    if bo:
        first = next(iter(bo.values()))
        st = first["settings"]
        lines += [
            f"BO (BoTorch qLogNEI on the true simulator, binomial noise): budget "
            f"{st['budget']} simulations per box (the training data set holds "
            f"{results.get('training_data_size', '?')} triads"
            + (f"; capped at {st['budget_cap']}" if st.get("budget_cap") else "")
            + f") in evaluations of {st['sims_per_eval']}; every φ_BO checked with "
            f"{st['eval_samples']} fresh simulations.", ""]
    lines += ["| box | method | φ | p by simulation ± s.e. | model's P̂ | simulations | "
              "fit/search s |", "|---|---|---|---|---|---|---|"]
    for t in targets:
        if comp:
            d = comp["designs"][t]
            lines.append(f"| {t} | competitor | {_fmt_phi(d['phi'])} | {d['p_sim']:.3f} ± "
                         f"{d['p_sim_se']:.3f} | {d['p_model']:.3f} | {comp['train_size']} "
                         f"training triads | {sum(comp['timings'].values()):.1f} |")
        if bo:
            b = bo[t]
            lines.append(f"| {t} | bayesopt | {_fmt_phi(b['phi'])} | {b['p_sim']:.3f} ± "
                         f"{b['p_sim_se']:.3f} | {b['p_model']:.3f} (GP mean) | "
                         f"{b['simulations']} ({b['evaluations']} evaluations) | "
                         f"{sum(b['timings'].values()):.1f}"
                         + (" (cached)" if b.get("reused") else "") + " |")
    lines += ["", "Figures: fig_bayesopt.png" if bo else "", ""]
    return lines


def _goal_cell(row):
    r, se = row["ratio_paired"], row["ratio_paired_se"]
    verdict = "met" if row["goal_met"] else (
        "missed, within 2 s.e." if r + 2 * se >= 0.97 else "missed")
    return f"{r:.3f} ± {se:.3f} {verdict}"


def results_markdown(results: dict) -> str:
    """The Markdown report of :func:`run` (the paper's table layout, calibration, wall times).

    Args:
        results: the dict returned by :func:`run` (or read back from ``results.json``).

    Returns:
        str: Markdown text.

    Example::

        >>> "p(phi_prop)" in results_markdown({"case": "c", "protocol": {"scale": 1.0},
        ...                                    "reference": {}, "variants": {}, "paper": {},
        ...                                    "wall_times": {"x": 1.0}})
        True
    """
    proto = results["protocol"]
    refs, paper = results["reference"], results["paper"]
    targets = list(refs)
    lines = [f"# {results['case']} (scale {proto['scale']:g})", ""]
    if proto.get("presets"):
        lines += [
            f"Presets {', '.join(proto['presets'].values())}; training "
            f"{proto['train_epochs']} epochs, batch {proto['batch_size']}, lr {proto['lr']:g}; "
            f"SGA M = {proto['sga']['num_z']}, batch {proto['sga']['batch_size']}, lr "
            f"{proto['sga']['lr']:g}, {proto['sga']['epochs']} epochs; NUTS "
            f"{proto['nuts']['num_chains']} × ({proto['nuts']['warmup_steps']} + "
            f"{proto['nuts']['num_samples']}); SVI {proto['svi']['num_steps']} steps; every φ* "
            f"checked with {proto['eval_samples']} simulations; reference grid "
            f"{next(iter(refs.values()))['grid_points'] if refs else 0} points × "
            f"{proto['reference_per_phi']}.", ""]
    head = "| φ* / p | " + " | ".join(f"M_d^{t}" for t in targets) + " |"
    sep = "|---|" + "---|" * len(targets)
    for label, res in results["variants"].items():
        lines += [f"## Model {label} (d_z0 = {res['d_z0']}, d_z1 = {res['d_z1']})", "", head, sep]
        for method, text in (("sga", "φ_prop (SGA)"), ("nuts", "φ* NUTS"), ("svi", "φ* SVI")):
            row = [f"{_fmt_phi(res['designs'][t][method]['phi_star'])} / "
                   f"{res['evaluations'][t][method]['p_sim']:.3f} ± "
                   f"{res['evaluations'][t][method]['p_sim_se']:.3f}" for t in targets]
            lines.append(f"| {text} / p (simulated) | " + " | ".join(row) + " |")
        comp, bo = results.get("competitor"), results.get("bayesopt")
        if comp:
            lines.append("| φ_comp (competitor) / p (simulated) | " + " | ".join(
                f"{_fmt_phi(comp['designs'][t]['phi'])} / {comp['designs'][t]['p_sim']:.3f} ± "
                f"{comp['designs'][t]['p_sim_se']:.3f}" for t in targets) + " |")
        if bo:
            lines.append("| φ_BO / p (simulated) [simulations spent] | " + " | ".join(
                f"{_fmt_phi(bo[t]['phi'])} / {bo[t]['p_sim']:.3f} ± {bo[t]['p_sim_se']:.3f} "
                f"[{bo[t]['simulations']}]" for t in targets) + " |")
        lines.append("| model's P at φ_prop | " + " | ".join(
            f"{res['designs'][t]['sga']['p_model']:.3f}" for t in targets) + " |")
        lines.append("| φ_ref / p (reference grid) | " + " | ".join(
            f"{_fmt_phi(refs[t]['phi_ref'])} / {refs[t]['p_ref_grid']:.3f}" for t in targets)
            + " |")
        lines.append("| p(φ_ref), fresh simulations | " + " | ".join(
            f"{refs[t]['p_ref_fresh']:.3f} ± {refs[t]['p_ref_fresh_se']:.3f}" for t in targets)
            + " |")
        lines.append("| p(φ_prop) / p(φ_ref), the two checks above | " + " | ".join(
            f"{res['table'][t]['ratio_prop_ref']:.3f}" for t in targets) + " |")
        if all("ratio_paired" in res["table"][t] for t in targets):
            lines.append("| p(φ_prop) / p(φ_ref), paired simulations ± s.e. (goal ≥ 0.97) | "
                         + " | ".join(_goal_cell(res["table"][t]) for t in targets) + " |")
        for other, text in ((comp and comp["designs"], "p(φ_comp) / p(φ_ref)"),
                            (bo, "p(φ_BO) / p(φ_ref)")):
            if other:
                lines.append(f"| {text} | " + " | ".join(
                    f"{other[t]['p_sim'] / refs[t]['p_ref_fresh']:.3f}"
                    if refs[t]["p_ref_fresh"] > 0 else "—" for t in targets) + " |")
        for key, text in (("prop", "paper φ_prop / p"), ("ref", "paper φ_ref / p"),
                          ("comp", "paper φ_comp / p")):
            lines.append(f"| {text} | " + " | ".join(
                "—" if paper[t][f"phi_{key}"] is None else
                f"{_fmt_phi(paper[t][f'phi_{key}'])} / {paper[t][f'p_{key}']:.3f}"
                for t in targets) + " |")
        cal = res["calibration"]
        lines += ["", "Calibration against the simulator on the reference grid "
                  "(goal: mean |ΔP| ≤ 0.05; 90 % intervals cover 0.88–0.92):", "",
                  "| box | mean \\|P_model − P_sim\\| | max |", "|---|---|---|"]
        for t, c in cal["probability"].items():
            lines.append(f"| {t} | {c['mean_abs_error']:.3f} | {c['max_abs_error']:.3f} |")
        o = cal["oracle"]
        fmt = lambda xs: ", ".join("nan" if x is None else f"{x:.3f}" for x in xs)  # noqa: E731
        lines += ["", f"- coverage of central 90 % intervals of p(m | φ) on the test set, per "
                  f"component: {fmt(cal['coverage90'])}",
                  f"- R² of the model's E[m | φ] against the oracle's (grid means, percolating "
                  f"entries): {fmt(o['r2_mean_vs_oracle'])}",
                  f"- R² on the reference triads: model {fmt(o['r2_triads_model'])}, oracle "
                  f"{fmt(o['r2_triads_oracle'])}",
                  f"- blocking-probability error (mean / max over the grid): "
                  f"{fmt(o['blocking_error_mean'])} / {fmt(o['blocking_error_max'])}",
                  f"- Figure-6 check: {cal['figure6_check']['central90_both_components']:.3f} of "
                  f"{cal['figure6_check']['num_test']} test triads inside the central 90 % "
                  f"(both components) of m drawn with z0 ~ q(z0 | x, φ)", ""]
        warn = [f"{t} {m}: {w}" for t in targets for m in _METHODS
                for w in res["designs"][t][m]["warnings"]]
        if warn:
            lines += ["Design warnings:", ""] + [f"- {w}" for w in warn] + [""]
        figs = [f"fig3_{label}.png", f"fig4_{label}.png", f"fig6_{label}.png"]
        if res["d_z1"] == 2:
            figs.insert(2, f"fig5_{label}.png")
        lines += ["Figures: " + ", ".join(figs), ""]
    lines += _baselines_markdown(results, targets)
    lines += ["## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["wall_times"].items()]
    lines += [f"| total | {sum(results['wall_times'].values()):.1f} |", ""]
    lines.append("p(phi_prop) is the simulated probability at the SGA optimum; p(φ_ref) fresh: the "
                 "same number of new simulations at the grid optimum.")
    return "\n".join(lines) + "\n"
