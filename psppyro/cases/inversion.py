r"""One-shot structure–property inversion cases: VAE-Regression and GAN + MDN
(``psppyro benchmark vae-regression`` / ``gan-mdn``).

**vae-regression** (Sardeshmukh et al.). Data: the ``filtered3d`` process on the 64 filter
families σ ∈ {1, 3, 5, 7}³ (the φ grid of :func:`psppyro.data.design_phi` with ``"grid"``;
``grid_points`` = 4 per axis),
``per_family`` volumes each; the hard-phase volume fraction of every volume is drawn from
U(0.2, 0.8) (the paper's data vary it — its Fig. 2 shows 26 % and 74 % — and the preset's fixed 0.5
would leave the families σ = [1, 1, 7] and [7, 1, 1] without overlapping C_11 ranges). C_11 from the
``c11_3d`` map (E = 120 / 2.4 GPa, ν = 0.3; direction 1 is the last image axis, so σ = [1, 1, 7]
is elongated along the load). σ stays in pixels as in the preset, so at a side below 51 the grains
are relatively larger than in the paper.

1. *Forward*: 60/20/20 split (validation for early stopping only), VAE-Reg (mixture prior) and the
   regression-only CNN on the same split; MAPE (``Σ|y − ŷ| / (n ȳ)``, the paper's definition) and
   R² on the test set, mean ± sd over ``seeds`` (each seed: its own split and initialization).
2. *Inverse*: the bimodal subset (σ = [1, 1, 7] and [7, 1, 1], ``bimodal_per_family`` volumes each),
   a Gaussian (K = 1) and a mixture (K = 2) model; for six targets at the 5–95 % quantiles of the
   subset's C_11, the component means are decoded and every decoded volume is simulated; error =
   |C_11(x̂) − c*| / c* (the dominant component's and the best component's), plus the same after a
   ``refine_steps`` local refinement; mean ± sd over ``inverse_seeds`` trainings (each its own
   split and initialization). :func:`morphology` names the family each decoded volume looks like
   (``separated``: the fraction of targets whose two components decode to both families).
   Galleries of the centre slices of every component.
3. *Resolution*: C_11 of ``resolution_volumes`` volumes at the chosen side against the same voxels
   refined 3× per axis (``elasticity(..., refine=3)``), the discretization error of the side.

**gan-mdn** (Mao et al.). ``rixner64`` microstructures (64², φ ~ N(0, I), volume fraction 0.5),
property K_11 of the ``rixner_o2`` map (conductivity at phase contrast 1 : 50; the paper's optical
absorption is not available). A DCGAN is trained on ``gan_images`` images, ``labelled`` latents are
labelled by the true solver, the MDN (K = 40) is trained on them; for 5 targets across the labelled
range (its 2.5–97.5 % quantiles) and 2 slightly outside (the extreme labels ∓ 10 % of that span)
``samples`` = 30 designs each are simulated: min / mean / sd of the REP = |ŷ − y*| / y*, and the
wall time per inverse against the latent-optimization baseline (:meth:`GANMDN.latent_optimization`).

=============================  ===============================  =================================
size                           paper (``scale = 1``)            at ``scale = s``
=============================  ===============================  =================================
volume side                    51                               51 if s = 1, 32 if s ≥ 0.25,
                                                                16 if s ≥ 0.01, else 8
volumes per family             139 (≈ 8 900 in all)             max(2, round(139 s))
bimodal volumes per family     139                              max(8, round(139 s))
epochs (early stopping 10)     until stopping (≤ 200 here)      max(1, round(200 s))
seeds (forward / inverse)      10 / (not stated)                max(1, round(10 s)) each
dense width                    2048 / 1024                      2048 if s = 1, else 64
GAN images / labelled z        5 000 / 25 000                   max(32, round(5 000 s)) /
                                                                max(64, round(25 000 s))
GAN epochs / channels          (not stated) 50 / 128…16         max(1, round(50 s)) / 128…16 if
                                                                s = 1 else 32…4
samples per target             30                               30
=============================  ===============================  =================================

The protocol key ``parts`` (default all of ``forward``, ``inverse``, ``resolution``) runs a subset
of the vae-regression case, e.g. the forward and the inverse study as two processes on two cores;
``style_weight`` sets w_x of :class:`~psppyro.models.VAERegression` (``None``: its default) and
``instance_noise`` the annealed instance noise of :meth:`~psppyro.models.GANMDN.fit_gan` (0: plain
DCGAN).

Outputs in ``out``: ``results.json``, ``results.md`` (the paper's numbers beside ours and a
per-stage wall-time table) and figures (``gallery_*.png``, ``gan_samples.png``). Generated data are
kept in ``out/data`` (``.pt`` files) and every finished training's result in ``out/runs`` (JSON,
written atomically, keyed on the protocol entries it depends on); a later run into the same folder
reuses both, so an interrupted run resumes at the training it was in.

Example::

    >>> protocol("vae-regression", 0.05)["side"], protocol("gan-mdn", 1.0)["gan_images"]
    (16, 5000)
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .._random import derive_seed
from .._validation import check_seed
from ._common import (
    StageClock,
    check_run_args,
    check_scale,
    jsonable,
    read_cache,
    write_json_atomic,
)

__all__ = ["mape", "morphology", "protocol", "r2", "results_markdown", "run", "run_protocol"]

CASE_NAMES = ("vae-regression", "gan-mdn")
BIMODAL = ((1.0, 1.0, 7.0), (7.0, 1.0, 1.0))
#: The three parts of the vae-regression case (protocol key ``parts``).
VAE_PARTS = ("forward", "inverse", "resolution")
# protocol entries a cached forward / inverse training depends on (``out/runs/*.json``)
_MODEL_KEYS = ("side", "epochs", "patience", "batch_size", "width", "latent_dim", "reconstruction",
               "style_weight")
_FORWARD_KEYS = _MODEL_KEYS + ("grid_points", "per_family", "components")
_INVERSE_KEYS = _MODEL_KEYS + ("bimodal_per_family", "targets", "refine_steps")
VF_RANGE = (0.2, 0.8)

PAPER = {
    "forward": {"VAE-Reg": (3.50, 0.24, 0.99), "Reg-only": (3.69, 0.17, 0.99)},
    "inverse_error_percent": {"Gaussian": "≈ 35", "mixture": "≈ 16"},
    "gan_mdn_seconds": "≈ 10 (Titan X)",
}


def mape(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """The paper's MAPE in percent: ``Σ |y − ŷ| / (n ȳ) · 100``.

    Example::

        >>> mape(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0]))
        25.0
    """
    return float(100 * (y - y_hat).abs().mean() / y.mean())


def r2(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """Coefficient of determination ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²``.

    Example::

        >>> r2(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
        1.0
    """
    return float(1 - ((y - y_hat) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def protocol(name: str, scale: float = 1.0) -> dict:
    """Every size of case ``name`` at ``scale`` (the module table).

    Args:
        name: ``"vae-regression"`` or ``"gan-mdn"``.
        scale: factor in (0, 1]; 1 is the paper's protocol.

    Returns:
        dict: the sizes (``side``, ``per_family``, ``epochs``, ``seeds``, ... or ``gan_images``,
        ``labelled``, ``samples``, ...).

    Raises:
        ValueError / TypeError: unknown ``name``, ``scale`` outside (0, 1].

    Example::

        >>> protocol("vae-regression")["per_family"]
        139
    """
    if not isinstance(name, str) or name not in CASE_NAMES:
        raise ValueError(f"name must be one of {list(CASE_NAMES)}, got {name!r}")
    s = check_scale(scale)
    if name == "vae-regression":
        side = 51 if s >= 1 else 32 if s >= 0.25 else 16 if s >= 0.01 else 8
        return {
            "case": name, "scale": s, "side": side, "grid_points": 4,
            "per_family": max(2, round(139 * s)),
            "bimodal_per_family": max(8, round(139 * s)),
            "epochs": max(1, round(200 * s)), "patience": 10, "batch_size": 8,
            "seeds": max(1, round(10 * s)), "inverse_seeds": max(1, round(10 * s)),
            "parts": list(VAE_PARTS),
            "width": 2048 if s >= 1 else 64, "latent_dim": 16, "components": 2,
            "reconstruction": "gram", "style_weight": None, "refine_steps": 10, "targets": 6,
            "resolution_volumes": 4 if s >= 0.01 else 1,
        }
    return {
        "case": name, "scale": s,
        "gan_images": max(32, round(5000 * s)), "labelled": max(64, round(25000 * s)),
        "gan_epochs": max(1, round(50 * s)), "mdn_epochs": max(5, round(1000 * s)),
        "latent_dim": 4, "components": 40,
        "channels": [128, 64, 32, 16] if s >= 1 else [32, 16, 8, 4],
        "instance_noise": 0.0, "samples": 30, "in_range": 5, "outside": 2,
        "opt_init": 16, "opt_iterations": max(2, round(40 * s)) if s < 1 else 100,
        "opt_offspring": 4,
    }


def filtered3d_volumes(side, sigmas, per_family, seed, progress=False):
    """Volumes of the ``filtered3d`` process at ``side``³ with volume fractions from U(0.2, 0.8),
    labelled by ``c11_3d``.

    Volume r of family i uses ``derive_seed(seed, i, r)`` for its noise and volume fraction.

    Returns:
        dict: ``x`` (n, side, side, side) float32, ``c`` (n, 1) float32, ``sigma`` (n, 3),
        ``vf`` (n,), ``family`` (n,) int.
    """
    from tqdm.auto import tqdm

    from ..process import preset
    from ..properties import property_map

    pm = property_map("c11_3d")
    xs, sig, vfs, fam = [], [], [], []
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    for i in tqdm(range(len(sigmas)), disable=not progress, desc=f"filtered3d {side}^3"):
        for r in range(per_family):
            s = derive_seed(seed, i, r)
            vf = VF_RANGE[0] + (VF_RANGE[1] - VF_RANGE[0]) * float(
                torch.rand(1, generator=torch.Generator().manual_seed(s % 2**62)))
            proc = preset("filtered3d", shape=(side,) * 3, volume_fraction=vf)
            xs.append(proc.sample(sigmas[i], 1, seed=s)[0])
            sig.append(sigmas[i])
            vfs.append(vf)
            fam.append(i)
    x = torch.stack(xs)
    c = torch.cat([pm(x[j:j + 32]) for j in range(0, len(x), 32)]).float()
    return {"x": x, "c": c, "sigma": torch.stack(sig), "vf": torch.tensor(vfs),
            "family": torch.tensor(fam)}


def _cached(path, make):
    if path.is_file():
        return torch.load(path)
    data = make()
    torch.save(data, path)
    return data


def _split(n, seed):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, 5) % 2**62))
    a, b = int(0.6 * n), int(0.8 * n)
    return perm[:a], perm[a:b], perm[b:]


def _settings(proto, keys):
    # the protocol entries a cached training depends on (unset optional ones left out)
    return {key: proto.get(key) for key in keys if proto.get(key) is not None}


def _check_parts(parts):
    if (not isinstance(parts, (list, tuple)) or not parts
            or any(p not in VAE_PARTS for p in parts)):
        raise ValueError(f"parts must be a non-empty list of {list(VAE_PARTS)}, got {parts!r}")
    return tuple(parts)


def morphology(x: torch.Tensor, lag: int = 2) -> torch.Tensor:
    """Which bimodal family a volume looks like: 0 = σ [1, 1, 7] (grains elongated along the last
    axis), 1 = σ [7, 1, 1] (along the first axis), −1 = (nearly) one phase (hard fraction below
    0.02 or above 0.98: no morphology to tell).

    Compares the normalized periodic autocovariance of each volume at ``lag`` voxels along the
    first and the last axis. On the bimodal subset this recovers the family of every real volume
    (``results["data"]["morphology_accuracy"]``), so it tells whether the decoded components of
    the mixture prior are the two morphologies.

    Example::

        >>> x = torch.zeros(3, 8, 8, 8)
        >>> x[0, :, :, :4] = 1.0   # constant along the first axis -> grains along axis 0
        >>> x[1, :4] = 1.0         # constant along the last axis
        >>> morphology(x).tolist()
        [1, 0, -1]
    """
    vf = x.flatten(1).mean(1)
    xc = (x.flatten(1) - vf[:, None]).reshape(x.shape)
    var = (xc ** 2).flatten(1).mean(1).clamp_min(1e-12)
    rho = [(xc * torch.roll(xc, lag, dims=a)).flatten(1).mean(1) / var for a in (1, x.dim() - 1)]
    family = (rho[0] > rho[1]).long()
    return torch.where((vf < 0.02) | (vf > 0.98), -1, family)


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _vae_inverse(proto, bim, kw, fit_kw, seed, clock, out):
    """Inverse on the bimodal subset: per prior (Gaussian K = 1, mixture K = 2) and per inverse
    seed, train on that seed's split, decode the component means for the six targets, simulate."""
    from ..models import VAERegression
    from ..properties import property_map

    side = proto["side"]
    pm = property_map("c11_3d")
    cb = bim["c"][:, 0]
    targets = torch.quantile(cb, torch.linspace(0.05, 0.95, proto["targets"]))
    inv = {"targets": targets.tolist()}
    galleries = {}
    for label, k_comp in (("Gaussian", 1), ("mixture", 2)):
        runs = []
        for r in range(proto.get("inverse_seeds", 1)):
            path = out / "runs" / f"inverse_{label}_{r}.json"
            settings = {**_settings(proto, _INVERSE_KEYS), "seed": seed, "r": r}
            cached = read_cache(path, settings)
            images = path.with_suffix(".pt")
            if cached is not None and images.is_file():
                runs.append(cached["result"])
                if not r:
                    galleries[label] = torch.load(images)
                continue
            tr, va, _ = _split(len(cb), derive_seed(seed, 4, r))
            s = derive_seed(seed, 6, k_comp, r) % 2**62
            with clock(f"train inverse {label}"):
                model = VAERegression((side,) * 3, components=k_comp, seed=s, **kw)
                hist = model.fit(bim["x"][tr], bim["c"][tr],
                                 validation=(bim["x"][va], bim["c"][va]), seed=s, **fit_kw)
            entry = {"best_epoch": hist["best_epoch"], "epochs": len(hist["train"])}
            for refine in (0, proto["refine_steps"]):
                with clock(f"inverse + simulate {label}"):
                    res = model.inverse(targets, refine_steps=refine)
                    flat = res.images.reshape(-1, *res.images.shape[2:])
                    achieved = pm(flat)[:, 0].float().reshape(len(targets), k_comp)
                err = 100 * (achieved - targets[:, None]).abs() / targets[:, None]
                dom = res.weights.argmax(-1)
                morph = morphology(flat).reshape(len(targets), k_comp)
                entry["refined" if refine else "one_shot"] = {
                    "achieved": achieved.tolist(), "error_percent": err.tolist(),
                    "weights": res.weights.tolist(),
                    "volume_fraction": res.images.flatten(2).mean(-1).tolist(),
                    "morphology": morph.tolist(),
                    # both families among the components, per target
                    "separated": float(((morph == 0).any(1) & (morph == 1).any(1)).float().mean()),
                    "mean_error_dominant": float(err.gather(1, dom[:, None]).mean()),
                    "mean_error_best": float(err.min(1).values.mean()),
                    "r2_dominant": r2(targets, achieved.gather(1, dom[:, None])[:, 0]),
                    "refine_steps": refine}
                if not refine:
                    torch.save(res.images.to(torch.uint8), images)
                    if not r:
                        galleries[label] = res.images.to(torch.uint8)
            write_json_atomic(path, jsonable({"settings": settings, "result": entry}))
            runs.append(entry)
        summary = {}
        for stage in ("one_shot", "refined"):
            for key in ("mean_error_dominant", "mean_error_best", "separated"):
                summary[f"{stage}_{key}"] = _mean_sd([e[stage][key] for e in runs])
        inv[label] = {"runs": runs, "summary": summary}
    _gallery(out / "gallery_vae_regression.png", galleries, targets, bim)
    return inv


# ---------------------------------------------------------------------------------- VAE-Reg
def _run_vae(proto, out, seed, progress, clock):
    from ..data import design_phi
    from ..models import RegressionCNN, VAERegression
    from ..process import preset
    from ..properties import elasticity

    parts = _check_parts(proto.get("parts", VAE_PARTS))
    side = proto["side"]
    data_dir = out / "data"
    results = {"protocol": proto}
    n_fam = proto["grid_points"] ** 3
    full = {"c": torch.zeros(0, 1)}  # the 64-family data only when a part needs them
    if "forward" in parts or "resolution" in parts:
        with clock(f"data: {n_fam} families"):
            sigmas = design_phi(preset("filtered3d", shape=(side,) * 3), "grid", n_fam, seed)
            full = _cached(
                data_dir / f"filtered3d_{side}_{n_fam}x{proto['per_family']}_{seed}.pt",
                lambda: filtered3d_volumes(side, sigmas, proto["per_family"],
                                           derive_seed(seed, 1), progress))
    with clock("data: bimodal subset"):
        bim = _cached(data_dir / f"bimodal_{side}_{proto['bimodal_per_family']}_{seed}.pt",
                      lambda: filtered3d_volumes(side, BIMODAL, proto["bimodal_per_family"],
                                                 derive_seed(seed, 2), progress))
    results["data"] = {"n": len(full["c"]),
                       "c11_range": [float(full["c"].min()), float(full["c"].max())]
                       if len(full["c"]) else None,
                       "n_bimodal": len(bim["c"]),
                       "bimodal_c11_by_family": [
                           [float(bim["c"][bim["family"] == k].min()),
                            float(bim["c"][bim["family"] == k].max())] for k in (0, 1)]}
    kw = dict(width=proto["width"], latent_dim=proto["latent_dim"],
              reconstruction=proto["reconstruction"], style_weight=proto.get("style_weight"))
    fit_kw = dict(epochs=proto["epochs"], batch_size=proto["batch_size"],
                  patience=proto["patience"], progress=progress)

    results["data"]["morphology_accuracy"] = float(
        (morphology(bim["x"]) == bim["family"]).float().mean())

    # forward: VAE-Reg vs Reg-only, same split per seed
    rows = {"VAE-Reg": [], "Reg-only": []}
    for k in range(proto["seeds"] if "forward" in parts else 0):
        s = derive_seed(seed, 3, k)
        tr, va, te = _split(len(full["c"]), s)
        x, c = full["x"], full["c"]
        for label in rows:
            path = out / "runs" / f"forward_{label}_{k}.json"
            settings = {**_settings(proto, _FORWARD_KEYS), "seed": seed, "k": k}
            cached = read_cache(path, settings)
            if cached is None:
                with clock(f"train forward {label}"):
                    if label == "VAE-Reg":
                        model = VAERegression((side,) * 3, components=proto["components"],
                                              seed=s % 2**62, **kw)
                    else:
                        model = RegressionCNN((side,) * 3, width=proto["width"], seed=s % 2**62)
                    hist = model.fit(x[tr], c[tr], validation=(x[va], c[va]), seed=s % 2**62,
                                     **fit_kw)
                pred, _ = model.predict(x[te])
                cached = {"settings": settings, "result": {
                    "mape": mape(c[te, 0], pred[:, 0]), "r2": r2(c[te, 0], pred[:, 0]),
                    "epochs": len(hist["train"]), "best_epoch": hist["best_epoch"]}}
                write_json_atomic(path, jsonable(cached))
            rows[label].append(cached["result"])
    results["forward"] = {}
    for label, r in rows.items() if "forward" in parts else ():
        entry = results["forward"][label] = {"runs": r}
        for key in ("mape", "r2"):
            entry[f"{key}_mean"], entry[f"{key}_sd"] = _mean_sd([v[key] for v in r])

    # inverse on the bimodal subset: Gaussian vs mixture prior, `inverse_seeds` trainings each
    if "inverse" in parts:
        results["inverse"] = _vae_inverse(proto, bim, kw, fit_kw, seed, clock, out)

    # resolution check: C11 at side^3 vs the same voxels refined 3x per axis
    n = proto["resolution_volumes"] if "resolution" in parts else 0
    with clock("resolution check"):
        if not n:
            return results
        idx = torch.linspace(0, len(full["c"]) - 1, n).long()
        xr = full["x"][idx]
        fine = elasticity(xr, youngs=(2.4, 120.0), poisson=0.3, ndim=3, columns=(0,),
                          refine=3)[..., 0, 0].float()
        coarse = full["c"][idx, 0]
        results["resolution"] = {"side": side, "refined_side": 3 * side,
                                 "c11": coarse.tolist(), "c11_refined": fine.tolist(),
                                 "relative_difference_percent":
                                     (100 * (coarse - fine).abs() / fine).tolist()}
    return results


def _gallery(path, galleries, targets, bim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("real [1,1,7]", None), ("real [7,1,1]", None)]
    rows += [("Gaussian", ("Gaussian", 0))]
    rows += [(f"mixture k={k + 1}", ("mixture", k)) for k in range(galleries["mixture"].shape[1])]
    t = len(targets)
    fig, axes = plt.subplots(len(rows), t, figsize=(1.6 * t, 1.6 * len(rows)), squeeze=False)
    cb = bim["c"][:, 0]
    for j in range(t):
        for i, (label, key) in enumerate(rows):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if key is None:
                fam = 0 if "1,1,7" in label else 1
                m = bim["family"] == fam
                k = int((cb[m] - targets[j]).abs().argmin())
                vol = bim["x"][m][k]
            else:
                vol = galleries[key[0]][j, key[1]]
            n = vol.shape[0] // 2
            # centre slices perpendicular to axis 0 and axis 2 side by side
            ax.imshow(torch.cat([vol[n], vol[:, :, n]], dim=1).numpy(), cmap="gray_r",
                      vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
            if i == 0:
                ax.set_title(f"C11*={float(targets[j]):.0f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------- GAN-MDN
def _run_gan(proto, out, seed, progress, clock):
    from ..models import GANMDN
    from ..process import preset
    from ..properties import property_map

    pm = property_map("rixner_o2")

    def k11(x):
        return pm(x)[:, :1]

    proc = preset("rixner64")
    n = proto["gan_images"]
    with clock("data: rixner64 images"):
        def make():
            phi = torch.randn(n, proc.d_phi,
                              generator=torch.Generator().manual_seed(derive_seed(seed, 1) % 2**62))
            return proc.sample(phi, 1, seed=derive_seed(seed, 2))[:, 0]

        x = _cached(out / "data" / f"rixner64_{n}_{seed}.pt", make)
    gm = GANMDN((64, 64), latent_dim=proto["latent_dim"], components=proto["components"],
                channels=tuple(proto["channels"]), seed=derive_seed(seed, 3) % 2**62)
    with clock("train GAN"):
        ghist = gm.fit_gan(x, epochs=proto["gan_epochs"], seed=derive_seed(seed, 4),
                           instance_noise=proto.get("instance_noise", 0.0), progress=progress)
    with clock("label latents (true solver)"):
        z, y = gm.label_latents(proto["labelled"], k11, seed=derive_seed(seed, 5),
                                progress=progress)
    with clock("train MDN"):
        mhist = gm.fit_mdn(z, y, epochs=proto["mdn_epochs"], seed=derive_seed(seed, 6),
                           progress=progress)
    ys = y[:, 0]
    lo, hi = torch.quantile(ys, torch.tensor([0.025, 0.975])).tolist()
    span = hi - lo
    targets = torch.linspace(lo, hi, proto["in_range"]).tolist()
    targets += [float(ys.min()) - 0.1 * span, float(ys.max()) + 0.1 * span][: proto["outside"]]
    data_k11 = k11(x[: min(len(x), 256)])[:, 0]
    rows, samples_fig = [], []
    for i, t in enumerate(targets):
        t0 = time.perf_counter()
        imgs = gm.inverse([t], num_samples=proto["samples"], seed=derive_seed(seed, 7, i))[0]
        t_gen = time.perf_counter() - t0
        achieved = k11(imgs)[:, 0].float()
        t_all = time.perf_counter() - t0
        rep = 100 * (achieved - t).abs() / abs(t)
        opt = gm.latent_optimization([t], k11, n_init=proto["opt_init"],
                                     iterations=proto["opt_iterations"],
                                     offspring=proto["opt_offspring"], seed=derive_seed(seed, 8, i))
        # control: the same number of latents from the GAN prior N(0, I) (already labelled)
        prior_rep = 100 * (ys[: proto["samples"]] - t).abs() / abs(t)
        rows.append({"target": t, "in_range": i < proto["in_range"],
                     "prior_rep_min": float(prior_rep.min()),
                     "prior_rep_mean": float(prior_rep.mean()),
                     "rep_min": float(rep.min()), "rep_mean": float(rep.mean()),
                     "rep_sd": float(rep.std()), "seconds_generate": t_gen,
                     "seconds_with_simulation": t_all,
                     "opt_rep": opt["rep"], "opt_seconds": opt["seconds"],
                     "opt_simulations": opt["simulations"]})
        samples_fig.append(imgs[rep.argmin()])
    clock.stages["inverse + evaluation (all targets)"] = sum(
        r["seconds_with_simulation"] + r["opt_seconds"] for r in rows)
    _gan_figure(out / "gan_samples.png", x[:len(targets)], samples_fig, targets)
    return {"protocol": proto, "labelled_range": [float(ys.min()), float(ys.max())],
            "data_k11_range": [float(data_k11.min()), float(data_k11.max())],
            "gan_history": ghist, "mdn_best_epoch": mhist["best_epoch"],
            "mdn_validation_nll": mhist["validation"][mhist["best_epoch"]]
            if mhist["best_epoch"] is not None else None,
            "prior_nll": 0.5 * proto["latent_dim"] * math.log(2 * math.pi * math.e),
            "targets": rows}


def _gan_figure(path, real, designs, targets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = len(targets)
    fig, axes = plt.subplots(2, t, figsize=(1.5 * t, 3.2), squeeze=False)
    for j in range(t):
        for i, img in enumerate((real[j], designs[j])):
            axes[i, j].imshow(img.numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[1, j].set_title(f"K11*={targets[j]:.2f}", fontsize=7)
    axes[0, 0].set_ylabel("data", fontsize=7)
    axes[1, 0].set_ylabel("GAN-MDN min REP", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------- report
def _f(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


def _ms(pair, d=1):
    mean, sd = pair
    return _f(mean, d) if sd is None else f"{_f(mean, d)} ± {_f(sd, d)}"


def _inverse_markdown(inv, data):
    n_runs = len(inv["mixture"]["runs"])
    lines = ["", f"Inverse on the bimodal subset ({data['n_bimodal']} volumes; morphology "
             f"classifier accuracy on them {100 * data.get('morphology_accuracy', 0):.0f} %), "
             f"error |C11(x̂) − c*| / c* in % by true simulation, mean ± sd over {n_runs} "
             "training(s); 'separated' = fraction of targets whose components decode to both "
             "morphologies:", "",
             "| prior | one-shot, dominant comp. | one-shot, best comp. | refined, dominant | "
             "refined, best | separated | paper |", "|---|---|---|---|---|---|---|"]
    for label in ("Gaussian", "mixture"):
        m = inv[label]["summary"]
        lines.append(f"| {label} | {_ms(m['one_shot_mean_error_dominant'])} | "
                     f"{_ms(m['one_shot_mean_error_best'])} | "
                     f"{_ms(m['refined_mean_error_dominant'])} | "
                     f"{_ms(m['refined_mean_error_best'])} | "
                     f"{_ms(m['one_shot_separated'], 2)} | "
                     f"{PAPER['inverse_error_percent'][label]} |")
    lines += ["", "Per target (one-shot, first training): target → achieved C11 per component "
              "(weight, vf, morphology 0 = [1,1,7], 1 = [7,1,1], −1 = one phase):", ""]
    for label in ("Gaussian", "mixture"):
        e = inv[label]["runs"][0]["one_shot"]
        for j, t in enumerate(inv["targets"]):
            comps = ", ".join(f"{a:.1f} (π={w:.2f}, vf={v:.2f}, m={m})" for a, w, v, m in
                              zip(e["achieved"][j], e["weights"][j], e["volume_fraction"][j],
                                  e["morphology"][j]))
            lines.append(f"- {label} c* = {t:.1f}: {comps}")
    return lines


def results_markdown(results: dict) -> str:
    """The Markdown tables of a result dict of :func:`run` (paper numbers beside ours).

    Example::

        >>> results_markdown({"case": "gan-mdn", "wall_times": {"x": 1.0}}).splitlines()[0]
        '# gan-mdn'
    """
    lines = [f"# {results['case']}", ""]
    if "forward" in results:
        p = results["protocol"]
        n = results["data"]["n"]
        sizes = (f"{n} volumes of {p['side']}³ ({p['per_family']} per family), {p['seeds']} "
                 "seed(s)" if n else f"volumes of {p['side']}³")
        lines += [f"Scale {p['scale']}: {sizes}, "
                  f"{p['epochs']} epochs max, reconstruction {p['reconstruction']!r}, "
                  f"parts {', '.join(p.get('parts', VAE_PARTS))}."]
    if results.get("forward"):
        lines += ["", "| method | MAPE % (ours) | R² (ours) | MAPE % (paper) | R² (paper) |",
                  "|---|---|---|---|---|"]
        for label, r in results["forward"].items():
            pm_, ps, pr = PAPER["forward"][label]
            lines.append(f"| {label} | {_f(r['mape_mean'])} ± {_f(r['mape_sd'])} | "
                         f"{_f(r['r2_mean'], 3)} ± {_f(r['r2_sd'], 3)} | {pm_} ± {ps} | {pr} |")
    if results.get("inverse"):
        lines += _inverse_markdown(results["inverse"], results["data"])
    if results.get("resolution"):
        r = results["resolution"]
        lines += ["", f"Resolution: C11 at {r['side']}³ vs the same voxels refined to "
                  f"{r['refined_side']}³: " + ", ".join(
                      f"{a:.1f}/{b:.1f}" for a, b in zip(r["c11"], r["c11_refined"]))
                  + " GPa; relative differences "
                  + ", ".join(f"{d:.1f}" for d in r["relative_difference_percent"]) + " %."]
    if "targets" in results and "forward" not in results:
        lines += ["| target K11 | in range | min REP % | mean REP % | sd REP % | prior z: min / "
                  "mean REP % | s / inverse (incl. sims) | latent-opt REP % | latent-opt s "
                  "(sims) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in results["targets"]:
            lines.append(f"| {r['target']:.3f} | {'yes' if r['in_range'] else 'no'} | "
                         f"{_f(r['rep_min'])} | {_f(r['rep_mean'])} | {_f(r['rep_sd'])} | "
                         f"{_f(r.get('prior_rep_min'))} / {_f(r.get('prior_rep_mean'))} | "
                         f"{_f(r['seconds_generate'], 3)} ({_f(r['seconds_with_simulation'])}) | "
                         f"{_f(r['opt_rep'])} | {_f(r['opt_seconds'])} ({r['opt_simulations']}) |")
        if results.get("mdn_validation_nll") is not None:
            lines += ["", f"MDN validation NLL {results['mdn_validation_nll']:.2f} nats vs "
                      f"{results['prior_nll']:.2f} for the prior N(0, I) (lower = the MDN learned "
                      "how z depends on y)."]
        lines += ["", f"Paper: GAN-MDN ≈ 10 s per inverse; labelled range "
                  f"{_f(results['labelled_range'][0])}–{_f(results['labelled_range'][1])}."]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results.get("wall_times", {}).items()]
    return "\n".join(lines) + "\n"


def run_protocol(proto: dict, out, seed: int = 0, progress: bool = True) -> dict:
    """Run a case from an explicit protocol dict (from :func:`protocol`, entries overridden).

    Args:
        proto: a dict from :func:`protocol` (its ``case`` names the case).
        out: output folder (created).
        seed: run seed.
        progress: tqdm bars.

    Returns:
        dict: what ``results.json`` holds.

    Raises:
        ValueError: on a protocol without a known ``case``.
    """
    if not isinstance(proto, dict) or proto.get("case") not in CASE_NAMES:
        raise ValueError(f"proto must be a dict from protocol() with 'case' in {CASE_NAMES}")
    seed = check_seed("seed", seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    clock = StageClock()
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 99) % 2**62)
        if proto["case"] == "vae-regression":
            results = _run_vae(proto, out, seed, progress, clock)
        else:
            results = _run_gan(proto, out, seed, progress, clock)
    results["case"] = proto["case"]
    results["wall_times"] = dict(clock.stages, total=time.perf_counter() - t0)
    results = jsonable(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(results_markdown(results))
    return results


def run(name: str, *, scale: float, out, seed: int = 0, progress: bool = True) -> dict:
    """Run case ``name`` (``"vae-regression"`` or ``"gan-mdn"``) at ``scale`` into ``out``.

    Args:
        name: the case.
        scale: factor in (0, 1] on every size (:func:`protocol`); 1 is the paper's protocol.
        out: output folder (created; its parent must exist).
        seed: non-negative int; all randomness derives from it.
        progress: tqdm progress bars.

    Returns:
        dict: what ``results.json`` holds.

    Raises:
        ValueError / TypeError: an unknown case, a scale outside (0, 1], a bad seed or ``out``,
        before any work.

    Example::

        >>> run("gan-mdn", scale=0.0, out="x")
        Traceback (most recent call last):
        ...
        ValueError: scale must be in (0, 1], got 0.0
    """
    proto = protocol(name, scale)
    scale, out, seed = check_run_args(scale, out, seed, progress)
    return run_protocol(proto, out, seed=seed, progress=progress)
