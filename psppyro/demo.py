r"""The end-to-end demo: design a random porous material for three permeability targets.

``psppyro demo`` (``make demo``) walks the whole Process–Structure–Property chain of PSP-GEN case 1
(Zang & Koutsourelakis) on this package's own simulator:

1. **Targets.** The paper's boxes M_d^L = [−10, −9] × [−7, −5], M_d^M = [−7, −5]² and
   M_d^R = [−7, −5] × [−10, −9] are hardly reachable with our literal simulator (its ln k spread is
   narrower: ``docs/architecture.md`` § "Cell and units"), so the demo keeps their *meaning* — L:
   low horizontal / high vertical, M: high both, R: low vertical / high horizontal — as boxes
   centred on the median of m = (ln k_xx, ln k_yy) simulated at φ = (1, 2), (5, 0.2) and (9, 2),
   with half-widths one standard deviation of those samples (both taken over the samples that
   percolate in both directions: a blocked direction sits at the artificial log floor; its frequency
   is reported). They are computed once, printed and stored in ``targets.json``.
2. **Data.** A reduced case-1 training set (uniform φ, 4 microstructures per φ) and a coarse
   reference grid, generated with :func:`psppyro.data.generate` (resumable: a second run reuses
   them).
3. **Model.** PSP-GEN trained briefly (:class:`psppyro.models.PSPGen`).
4. **Design.** :func:`psppyro.infer_design` with stochastic gradient ascent (the paper's method) for
   every target, and the SVI posterior over φ for every target (its φ* is the posterior draw with
   the best model-predicted probability, ``point="best"``).
5. **Check.** Each φ* is evaluated by true simulation (:func:`psppyro.design.evaluate`) and against
   the reference grid's best point; the paper's boxes get their reference probability too.
6. **Output.** A Table-1-style table (``table.txt``), heat maps of P(m ∈ M_d | φ) with φ* and the
   SVI posterior marked (``heatmap_*.png``), microstructure galleries at φ* (``gallery_*.png``), the
   training history (``training.png``) and every number in ``results.json``.

Example::

    $ psppyro demo --out demo_output            # about 10 minutes on 2 cores
    $ psppyro demo --out /tmp/d --quick         # a tiny smoke run (about a minute)
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass

import torch

__all__ = ["DemoConfig", "PAPER_BOXES", "TARGET_ANCHORS", "run_demo"]

#: The φ that anchor the three targets' meaning (φ1 = 1 → low k_xx: the orientation in
#: ``docs/architecture.md`` § "The PSP-GEN spectral density").
TARGET_ANCHORS = {"L": (1.0, 2.0), "M": (5.0, 0.2), "R": (9.0, 2.0)}

#: The PSP-GEN paper's boxes (ln k_xx, ln k_yy), reported for comparison.
PAPER_BOXES = {
    "L": ((-10.0, -7.0), (-9.0, -5.0)),
    "M": ((-7.0, -7.0), (-5.0, -5.0)),
    "R": ((-7.0, -10.0), (-5.0, -9.0)),
}


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo's steps (defaults: the full demo, ≤ 10 minutes on 2 cores).

    Example::

        >>> DemoConfig.quick().train_scale < DemoConfig().train_scale
        True
    """

    anchor_samples: int = 100
    train_scale: float = 0.2  # of the 2500 φ × 4 case-1 training set
    grid: int = 7  # reference grid points per φ axis
    grid_per_phi: int = 40
    epochs: int = 100
    batch_size: int = 50
    sga_num_z: int = 10_000
    sga_epochs: int = 10
    sga_restarts: int = 4
    svi_steps: int = 400
    evaluate_samples: int = 200
    workers: int | None = None

    @classmethod
    def quick(cls):
        """Tiny sizes for a smoke run (tests, CI)."""
        return cls(
            anchor_samples=16,
            train_scale=0.01,
            grid=3,
            grid_per_phi=4,
            epochs=2,
            batch_size=25,
            sga_num_z=500,
            sga_epochs=2,
            sga_restarts=2,
            svi_steps=20,
            evaluate_samples=16,
            workers=1,
        )


def _say(msg):
    print(f"[psppyro demo] {msg}", flush=True)


def _target_boxes(proc, cfg, seed, workers):
    from .design import Box, simulate_properties
    from .properties import LOG_PERMEABILITY_FLOOR

    phi = torch.tensor(list(TARGET_ANCHORS.values()), dtype=torch.float64)
    m = simulate_properties(
        phi, proc, "log_permeability", cfg.anchor_samples, seed=seed, workers=workers
    )
    boxes, stats = {}, {}
    for i, name in enumerate(TARGET_ANCHORS):
        # A blocked direction sits at the log floor (−20), an artificial value: the median and the
        # standard deviation are taken over the samples that percolate in both directions, and the
        # blocked fraction is reported.
        flows = (m[i] > LOG_PERMEABILITY_FLOOR).all(-1)
        if int(flows.sum()) < 2:
            raise RuntimeError(
                f"fewer than 2 percolating samples at anchor φ = {TARGET_ANCHORS[name]}"
            )
        mi = m[i][flows]
        med = mi.median(0).values
        sd = mi.std(0)
        boxes[name] = Box(low=(med - sd).tolist(), high=(med + sd).tolist())
        stats[name] = {
            "anchor_phi": list(TARGET_ANCHORS[name]),
            "median": med.tolist(),
            "std": sd.tolist(),
            "low": (med - sd).tolist(),
            "high": (med + sd).tolist(),
            "blocked_fraction": 1.0 - float(flows.double().mean()),
        }
    return boxes, stats


def _reference_map(ds, box, grid):
    """A :class:`~psppyro.design.ReferenceMap` from a grid dataset, without new simulations."""
    from .data import reference_probability
    from .design import ReferenceMap

    ref = reference_probability(ds, box.low.tolist(), box.high.tolist())
    phi = torch.as_tensor(ref["phi"].values)
    axes = [torch.unique(phi[:, j]) for j in range(phi.shape[1])]
    if any(len(a) != grid for a in axes):
        raise RuntimeError(f"reference dataset is not a {grid}x{grid} grid")
    # Order the points as meshgrid(indexing="ij") does: by φ1, then φ2.
    order = torch.as_tensor(
        sorted(range(len(phi)), key=lambda i: (float(phi[i, 0]), float(phi[i, 1])))
    )
    values = torch.as_tensor(ref["probability"].values)[order].reshape(grid, grid)
    se = torch.as_tensor(ref["standard_error"].values)[order].reshape(grid, grid)
    return ReferenceMap(axes, values, se, box, int(ref["count"].values.min()), ["phi1", "phi2"])


def _gallery(proc, phi_star, path, title, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = proc.sample(phi_star.to(torch.float64), num_samples=8, seed=seed)
    fig, axes = plt.subplots(2, 4, figsize=(8, 4.3))
    for ax, img in zip(axes.flat, x):
        ax.imshow(img.cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title + "  (white = void)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out="demo_output", seed=0, quick=False, workers=None, config=None):
    """Run the demo end to end and write its outputs to ``out``; returns the results dict.

    Args:
        out: output folder (created). Datasets and the trained model are cached there, so a second
            run resumes instead of recomputing.
        seed: master seed of every step.
        quick: tiny sizes (a smoke run, about a minute).
        workers: processes for simulation (default: all cores).
        config: a :class:`DemoConfig` overriding ``quick``.

    Returns:
        dict with the targets, designs, evaluations and output paths (also in ``results.json``).

    Example (not a doctest: even the quick run trains a model for about a minute; its shell form
    ``psppyro demo --quick`` is the smoke test of ``tests/test_demo.py``)::

        res = run_demo("/tmp/psppyro-demo", quick=True)
        sorted(res["designs"])  # ['L/sga', 'L/svi', 'M/sga', 'M/svi', 'R/sga', 'R/svi']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import data, design, diagnostics, models, process

    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    workers = workers or cfg.workers or os.cpu_count() or 1
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    t0 = time.perf_counter()
    timings = {}
    proc = process.preset("pspgen36")

    # 1. targets ---------------------------------------------------------------------------
    _say(f"1/6 targets: simulating {cfg.anchor_samples} microstructures at each anchor φ")
    t = time.perf_counter()
    boxes, box_stats = _target_boxes(proc, cfg, seed, workers)
    for name, s in box_stats.items():
        _say(
            f"    M_d^{name}: anchor φ={tuple(s['anchor_phi'])}, median m="
            f"({s['median'][0]:.2f}, {s['median'][1]:.2f}), sd=({s['std'][0]:.2f}, "
            f"{s['std'][1]:.2f}), blocked {100 * s['blocked_fraction']:.0f} % -> box "
            f"[{s['low'][0]:.2f}, {s['high'][0]:.2f}] x "
            f"[{s['low'][1]:.2f}, {s['high'][1]:.2f}]"
        )
    with open(os.path.join(out, "targets.json"), "w") as f:
        json.dump(box_stats, f, indent=2)
    timings["targets"] = time.perf_counter() - t

    # 2. data --------------------------------------------------------------------------------
    t = time.perf_counter()
    preset = data.dataset_preset("pspgen-case1-train", scale=cfg.train_scale)
    _say(f"2/6 data: {preset.n_samples} training triads and a {cfg.grid}x{cfg.grid} reference grid")
    ds = preset.generate(os.path.join(out, "data", "train.zarr"), workers=workers)
    ref_ds = data.generate(
        proc,
        "log_permeability",
        n_phi=cfg.grid**2,
        per_phi=cfg.grid_per_phi,
        design="grid",
        path=os.path.join(out, "data", "reference.zarr"),
        seed=seed + 20_001,
        workers=workers,
    )
    timings["data"] = time.perf_counter() - t

    # 3. model -------------------------------------------------------------------------------
    t = time.perf_counter()
    _say(f"3/6 model: training PSP-GEN for {cfg.epochs} epochs")
    train, val = data.split(ds, (0.9, 0.1), seed=seed)
    gen = models.PSPGen.from_dataset(train, seed=seed)
    history = gen.fit(
        train, val=val, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=seed, progress=True
    )
    gen.save(os.path.join(out, "pspgen.pt"))
    gen.eval()
    timings["train"] = time.perf_counter() - t
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative β-ELBO per pair")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "training.png"), dpi=110)
    plt.close(fig)

    # 4. design ------------------------------------------------------------------------------
    t = time.perf_counter()
    _say("4/6 design: SGA (the paper's point estimate) and the SVI posterior for each target")
    results = {}
    with warnings.catch_warnings():
        # The demo reports each result's judged diagnostics (k-hat, unreachable box) itself.
        warnings.simplefilter("ignore", design.DesignWarning)
        for i, (name, box) in enumerate(boxes.items()):
            results[f"{name}/sga"] = design.infer_design(
                gen,
                box,
                method="sga",
                seed=seed + i,
                num_z=cfg.sga_num_z,
                epochs=cfg.sga_epochs,
                restarts=cfg.sga_restarts,
            )
            results[f"{name}/svi"] = design.infer_design(
                gen, box, method="svi", seed=seed + i, num_steps=cfg.svi_steps, point="best"
            )
    for label, res in results.items():
        for msg in res.warnings:
            _say(f"   warning ({label}): {msg}")
    timings["design"] = time.perf_counter() - t

    # 5. check by simulation ------------------------------------------------------------------
    t = time.perf_counter()
    _say(f"5/6 check: {cfg.evaluate_samples} true simulations at each φ*")
    evaluations, references = {}, {}
    for label, res in results.items():
        box = boxes[label.split("/")[0]]
        evaluations[label] = design.evaluate(
            res.phi_star,
            proc,
            "log_permeability",
            box,
            num_samples=cfg.evaluate_samples,
            seed=seed + 30_001,
            workers=workers,
        )
    ref_maps = {name: _reference_map(ref_ds, box, cfg.grid) for name, box in boxes.items()}
    for label in results:
        references[label] = ref_maps[label.split("/")[0]]
    paper = {}
    for name, (low, high) in PAPER_BOXES.items():
        rmap = _reference_map(ref_ds, design.Box(low, high), cfg.grid)
        paper[name] = {"box": [list(low), list(high)], "best_grid_probability": float(
            rmap.values.max()
        ), "best_grid_phi": rmap.argmax().tolist()}
    timings["check"] = time.perf_counter() - t

    # 6. outputs -----------------------------------------------------------------------------
    _say("6/6 outputs")
    table = design.design_table(results, evaluations, references)
    paper_lines = [
        f"paper box M_d^{n} {v['box']}: best reference-grid P = {v['best_grid_probability']:.3f} "
        f"at φ = ({v['best_grid_phi'][0]:.3g}, {v['best_grid_phi'][1]:.3g})"
        for n, v in paper.items()
    ]
    text = table + "\n\n" + "\n".join(paper_lines) + "\n"
    with open(os.path.join(out, "table.txt"), "w") as f:
        f.write(text)
    print(text, flush=True)
    paths = {"table": os.path.join(out, "table.txt")}
    for name in boxes:
        fig = diagnostics.plot_reference_map(
            ref_maps[name],
            designs={"SGA φ*": results[f"{name}/sga"], "SVI φ*": results[f"{name}/svi"]},
            samples={"SVI posterior": results[f"{name}/svi"]},
            title=f"P(m ∈ $M_d^{name}$ | φ), reference grid ({cfg.grid_per_phi} per point)",
        )
        paths[f"heatmap_{name}"] = os.path.join(out, f"heatmap_{name}.png")
        fig.savefig(paths[f"heatmap_{name}"], dpi=110)
        plt.close(fig)
        phi_star = results[f"{name}/sga"].phi_star
        paths[f"gallery_{name}"] = os.path.join(out, f"gallery_{name}.png")
        _gallery(
            proc,
            phi_star,
            paths[f"gallery_{name}"],
            f"$M_d^{name}$: microstructures at SGA φ* = ({float(phi_star[0]):.2f}, "
            f"{float(phi_star[1]):.2f})",
            seed + 40_001,
        )
    paths["training"] = os.path.join(out, "training.png")
    summary = {
        "seed": seed,
        "config": cfg.__dict__,
        "targets": box_stats,
        "paper_boxes": paper,
        "designs": {
            label: {
                "phi_star": res.phi_star.tolist(),
                "model_probability": res.probability,
                "model_probability_se": res.probability_se,
                "simulated_probability": float(evaluations[label][0]),
                "simulated_se": float(evaluations[label][1]),
                "wall_time_s": res.wall_time,
            }
            for label, res in results.items()
        },
        "timings_s": timings,
        "total_s": time.perf_counter() - t0,
        "outputs": paths,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    _say(f"done in {summary['total_s']:.0f} s; figures:")
    for key, path in paths.items():
        print(f"    {key:<12} {path}", flush=True)
    return summary
