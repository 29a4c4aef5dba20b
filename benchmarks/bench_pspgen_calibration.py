"""Calibration of PSP-GEN against the simulator on the Case-1 reference grid (issue 11, item 4).

For each of the paper's three boxes (L, M, R), the mean and max over the grid points of
|P_model(m ∈ M_d | φ) − P_sim(m ∈ M_d | φ)| (goal: mean ≤ 0.05); the coverage of the central 90 %
predictive intervals of p(m | φ) on the test triads (goal 0.88–0.92); R² of the model's E[m | φ]
against the oracle's (per-φ sample means of the reference set), on percolating entries, and the
blocking-probability error. The computations are :mod:`psppyro.cases._calibration` (the
``psppyro benchmark pspgen-paper-case1`` harness reports the same numbers).

Data: the ``pspgen-paper-case1-{train,test,reference}`` presets at ``--scale`` (reference grid
round(20 √s)² points × ``--per-phi``), generated into ``--workdir`` or reused from there (the
harness's ``out/data`` folder works: pass it as ``--workdir``). Model: ``--model FILE`` (a saved
PSPGen), else one is trained with the harness's paper settings at ``--scale`` (saved in
``--workdir/models``; reused on the next run).

Usage::

    python benchmarks/bench_pspgen_calibration.py --scale 0.05               # ~10 min loaded
    python benchmarks/bench_pspgen_calibration.py --scale 1 --model m.pt     # the issue's figure
    # train on the full-size Case-1 data with the −λ log p(m | φ) term (PSPGen.fit) and check
    python benchmarks/bench_pspgen_calibration.py --scale 1 \
        --workdir benchmark_output/case1-full/data --epochs 40 --prior-m-weight 1
    python benchmarks/bench_pspgen_calibration.py --workdir benchmark_output/case1-s0.1/data \\
        --scale 0.1 --model benchmark_output/case1-s0.1/models/dz1_default.pt

Timings and numbers at reduced scale are not the full-size figure; the script prints the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from psppyro.cases import _calibration as cal  # noqa: E402
from psppyro.cases import pspgen_paper as harness  # noqa: E402
from psppyro.design import paper_targets  # noqa: E402


def calibration_table(gen, boxes, ref_ds, test, num_samples, seed):
    """All calibration figures of one model as a dict (see the module docstring)."""
    prob = cal.probability_calibration(gen, boxes, ref_ds, num_samples, seed)
    dt = torch.get_default_dtype()
    coverage = cal.interval_coverage(gen, test["phi"].to(dt), test["m"], 0.9, num_samples,
                                     seed + 1)
    oracle = cal.oracle_r2(gen, ref_ds, num_samples, seed + 2)
    return {
        "probability": {t: {k: c[k] for k in ("mean_abs_error", "max_abs_error")}
                        for t, c in prob.items()},
        "coverage90": coverage,
        "oracle": oracle,
    }


def format_table(res):
    f = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    lines = [f"{'box':<4} {'mean |dP|':>10} {'max |dP|':>10}   (goal: mean <= 0.05)"]
    for t, c in res["probability"].items():
        lines.append(f"{t:<4} {c['mean_abs_error']:>10.3f} {c['max_abs_error']:>10.3f}")
    o = res["oracle"]
    lines += [
        f"coverage of 90 % intervals of p(m | phi), per component: {f(res['coverage90'])} "
        "(goal 0.88-0.92)",
        f"R2 of E[m | phi] vs the oracle's grid means: {f(o['r2_mean_vs_oracle'])}",
        f"R2 on reference triads: model {f(o['r2_triads_model'])}, oracle "
        f"{f(o['r2_triads_oracle'])}",
        f"blocking-probability error mean / max: {f(o['blocking_error_mean'])} / "
        f"{f(o['blocking_error_max'])}",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--per-phi", type=int, default=None,
                    help="reference microstructures per grid point (default: the harness's)")
    ap.add_argument("--workdir", default="benchmark_output/pspgen-calibration")
    ap.add_argument("--model", default=None, help="a saved PSPGen (else train one)")
    ap.add_argument("--num-samples", type=int, default=2000, help="z draws per grid point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--prior-m-weight", type=float, default=0.0,
                    help="λ of PSPGen.fit's −λ log p(m | φ) term when training here (0: paper)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs when training here (default: the harness's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    proto = harness.protocol("pspgen-paper-case1", args.scale)
    proto["prior_m_weight"] = args.prior_m_weight
    label = "calibration"
    if args.epochs is not None:
        proto["train_epochs"] = args.epochs
        label += f"_e{args.epochs}"
    if args.prior_m_weight:
        label += f"_pm{args.prior_m_weight:g}"
    per_phi = args.per_phi or proto["reference_per_phi"]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    t0 = time.perf_counter()
    train_ds, _ = harness._dataset("pspgen-paper-case1-train", args.scale, work, progress=progress)
    test_ds, _ = harness._dataset("pspgen-paper-case1-test", args.scale, work, progress=progress)
    ref_ds, _ = harness._dataset("pspgen-paper-case1-reference", args.scale, work,
                                 per_phi=per_phi, progress=progress)
    t_data = time.perf_counter() - t0
    if args.model:
        from psppyro.models import PSPGen

        gen = PSPGen.load(args.model)
        t_train = 0.0
    else:
        (work / "models").mkdir(exist_ok=True)
        t1 = time.perf_counter()
        gen, _, _ = harness._train(train_ds, None, proto, work / "models", label, args.seed,
                                   progress)
        t_train = time.perf_counter() - t1
    test = harness._test_tensors(test_ds)
    t2 = time.perf_counter()
    res = calibration_table(gen, paper_targets("case1"), ref_ds, test, args.num_samples,
                            args.seed)
    t_cal = time.perf_counter() - t2
    n_grid = len(set(ref_ds["phi_index"].values.tolist()))
    print(f"Case-1 calibration, scale {args.scale:g}: train {train_ds.sizes['sample']} triads, "
          f"test {test_ds.sizes['sample']}, reference {n_grid} grid points x {per_phi}; "
          f"model {'loaded from ' + args.model if args.model else 'trained here'}")
    print(format_table(res))
    print(f"wall time (loaded machine): data {t_data:.0f} s, training {t_train:.0f} s, "
          f"calibration {t_cal:.0f} s")
    if args.json:
        res.update(scale=args.scale, per_phi=per_phi, grid_points=n_grid, model=args.model)
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
