"""Amortized design vs per-target design on PSP-GEN Case 1 (paper presets), plus robustness.

Stages (each cached in ``--out``, so a rerun continues where it stopped):

1. data: ``pspgen-paper-case1-train`` at ``--scale`` (uniform φ, 4 microstructures per φ) on the
   reconstructed simulator (``pspgen36-paper``, ``log_permeability_paper``);
2. model: ``PSPGen.from_dataset`` + ``fit`` (``--epochs``), or ``--model PATH`` (a saved PSPGen);
3. designer: ``AmortizedDesigner(model, BoxFamily(width=...))`` trained ``--amortized-steps``
   steps (``--targets-per-step`` boxes per step); its training wall time is the training cost;
4. held-out boxes: ``--boxes`` boxes drawn from the family with a seed not used in training; for
   each, φ* from the amortized designer, per-target ``infer_design(method="flow")`` and ``"sga"``;
   time per design and the true P(m ∈ M_d | φ*) by ``--sim-samples`` simulations;
5. robustness: for the paper's Case-1 boxes (``design.paper_targets("case1")``) the posterior-mean
   design (per-target flow) and the SGA point design, P(m ∈ M_d) under a manufacturing tolerance
   ball (uniform in φ* ± r τ, τ = ``--tolerance`` × the φ range) for radii ``--radii``.

Writes ``results.json``, ``results.md`` and ``robustness.png`` into ``--out``.

Reduced run (what ``docs/results/amortized.md`` reports)::

    OMP_NUM_THREADS=1 python benchmarks/bench_amortized.py --out /tmp/bench_amortized

Full scale (the paper's 10 000 training triads, paper-length training, longer per-target runs)::

    python benchmarks/bench_amortized.py --out bench_amortized_full --scale 1 --epochs 500 \\
        --amortized-steps 6000 --flow-steps 2000 --am-samples 1000 --sga-num-z 50000 \\
        --sga-epochs 20 --boxes 50 --sim-samples 500 --rob-num-phi 32 --rob-num-samples 32 \\
        --workers 8
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from psppyro.design import (
    AmortizedDesigner,
    BoxFamily,
    DesignWarning,
    evaluate,
    infer_design,
    paper_targets,
    robustness_curve,
)

PROCESS, PROPS = "pspgen36-paper", "log_permeability_paper"


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _model(args, out):
    from psppyro.data import dataset_preset, split
    from psppyro.models import PSPGen

    if args.model:
        return PSPGen.load(args.model), {"model": args.model}
    path = out / "pspgen.pt"
    info = {"scale": args.scale, "epochs": args.epochs}
    if path.is_file():
        return PSPGen.load(path), info
    t0 = time.perf_counter()
    preset = dataset_preset("pspgen-paper-case1-train", scale=args.scale)
    ds = preset.generate(out / f"train-s{args.scale:g}.zarr", workers=args.workers,
                         progress=False)
    info["data_s"] = time.perf_counter() - t0
    info["triads"] = preset.n_phi * preset.per_phi
    _log(f"data: {info['triads']} triads in {info['data_s']:.0f} s")
    t0 = time.perf_counter()
    train, val = split(ds, (0.9, 0.1), seed=1)
    gen = PSPGen.from_dataset(ds, seed=2)
    gen.fit(train, val, epochs=args.epochs, batch_size=50, lr=1e-3, patience=args.epochs,
            seed=3, progress=False)
    info["train_s"] = time.perf_counter() - t0
    _log(f"PSP-GEN trained ({args.epochs} epochs) in {info['train_s']:.0f} s")
    gen.save(path)
    (out / "model_info.json").write_text(json.dumps(info))
    return gen, info


def _designer(model, args, out):
    path = out / "designer.pt"
    if path.is_file():
        return AmortizedDesigner.load(path, model)
    d = AmortizedDesigner(model, BoxFamily(width=tuple(args.width)), seed=args.seed,
                          hidden_features=(64, 64), transforms=3)
    d.fit(num_steps=args.amortized_steps, targets_per_step=args.targets_per_step,
          num_particles=4, lr=3e-3, final_lr=3e-4, progress=args.progress)
    d.save(path)
    _log(f"amortized designer: {d.num_steps_trained} steps in {d.train_time:.0f} s")
    return d


def _true_p(phi, box, args, seed):
    p, se = evaluate(phi, PROCESS, PROPS, box, num_samples=args.sim_samples, seed=seed,
                     workers=args.workers)
    return float(p), float(se)


def _per_box(model, designer, box, i, args):
    row = {"box": box.config(), "ood": designer.out_of_distribution(box)}
    evals = dict(num_eval_samples=args.num_eval_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        designer(box, seed=i, num_samples=args.am_samples, **evals)  # warm-up (first call)
        t0 = time.perf_counter()
        ra = designer(box, seed=i, num_samples=args.am_samples, **evals)
        t_am = time.perf_counter() - t0
        t0 = time.perf_counter()
        rf = infer_design(model, box, "flow", seed=i, num_steps=args.flow_steps,
                          num_samples=args.num_samples, progress=False, **evals)
        t_flow = time.perf_counter() - t0
        t0 = time.perf_counter()
        rs = infer_design(model, box, "sga", seed=i, num_z=args.sga_num_z,
                          epochs=args.sga_epochs, restarts=args.sga_restarts, progress=False,
                          **evals)
        t_sga = time.perf_counter() - t0
    for name, res, t in (("amortized", ra, t_am), ("flow", rf, t_flow), ("sga", rs, t_sga)):
        p, se = _true_p(res.phi_star, box, args, seed=1000 + i)
        row[name] = {
            "phi_star": res.phi_star.tolist(),
            "p_model": res.objective,
            "p_true": p,
            "p_true_se": se,
            "time_s": t,
            "khat": res.diagnostics.get("khat"),
        }
    return row


def _summary(rows, train_s):
    ok = [r for r in rows if r["flow"]["p_true"] >= 0.05]
    out = {}
    methods = ["amortized", "flow", "sga"]
    if all("amortized_best" in r for r in rows):
        methods.append("amortized_best")
    for am in [m for m in methods if m.startswith("amortized")]:
        tag = "" if am == "amortized" else "best_"
        for ref in ("flow", "sga"):
            ratios = [r[am]["p_true"] / r[ref]["p_true"] for r in rows
                      if r[ref]["p_true"] >= 0.05]
            out[f"{tag}mean_ratio_vs_{ref}"] = (
                sum(ratios) / len(ratios) if ratios else float("nan"))
            out[f"n_ratio_vs_{ref}"] = len(ratios)
            sa = sum(r[am]["p_true"] for r in rows)
            sr = sum(r[ref]["p_true"] for r in rows)
            out[f"{tag}ratio_of_means_vs_{ref}"] = sa / sr if sr > 0 else float("nan")
    for m in methods:
        out[f"mean_p_true_{m}"] = sum(r[m]["p_true"] for r in rows) / len(rows)
        out[f"median_time_{m}"] = sorted(r[m]["time_s"] for r in rows)[len(rows) // 2]
    out["speedup_vs_flow"] = out["median_time_flow"] / out["median_time_amortized"]
    out["speedup_vs_sga"] = out["median_time_sga"] / out["median_time_amortized"]
    gain = out["median_time_flow"] - out["median_time_amortized"]
    out["break_even_targets_vs_flow"] = train_s / gain if gain > 0 else float("inf")
    gain = out["median_time_sga"] - out["median_time_amortized"]
    out["break_even_targets_vs_sga"] = train_s / gain if gain > 0 else float("inf")
    out["n_boxes"] = len(rows)
    out["n_boxes_flow_p_ge_0.05"] = len(ok)
    return out


def _robustness(model, args, out):
    bounds = model.phi_bounds.double()
    tol = args.tolerance * (bounds[:, 1] - bounds[:, 0])
    curves, rows = [], {}
    for name, box in paper_targets("case1").items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DesignWarning)
            rf = infer_design(model, box, "flow", seed=7, num_steps=args.flow_steps,
                              num_samples=args.num_samples, progress=False,
                              num_eval_samples=args.num_eval_samples)
            rs = infer_design(model, box, "sga", seed=7, num_z=args.sga_num_z,
                              epochs=args.sga_epochs, restarts=args.sga_restarts,
                              progress=False, num_eval_samples=args.num_eval_samples)
        rows[name] = {}
        for label, res in ((f"{name}: posterior mean (flow)", rf), (f"{name}: SGA", rs)):
            c = robustness_curve(res, PROCESS, PROPS, box, tolerance=tol, radii=args.radii,
                                 num_phi=args.rob_num_phi, num_samples=args.rob_num_samples,
                                 seed=11, label=label, workers=args.workers)
            curves.append(c)
            rows[name][label.split(": ")[1]] = c.to_dict()
            _log(f"robustness {label}: {[round(v, 3) for v in c.values.tolist()]}")
    plot_robustness_rows(rows, out / "robustness.png")
    return rows


def plot_robustness_rows(rows, path):
    """The three panels (boxes L, M, R) of robustness curves from their saved dicts."""
    from matplotlib.figure import Figure

    from psppyro.design import RobustnessCurve
    from psppyro.diagnostics import plot_robustness

    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3)
    for k, (name, pair) in enumerate(rows.items()):
        curves = []
        for label, c in pair.items():
            t = {key: torch.tensor(c[key], dtype=torch.float64)
                 for key in ("radii", "values", "se", "phi_star", "tolerance", "clipped")}
            curves.append(RobustnessCurve(distribution=c["distribution"], label=label,
                                          objective=c["objective"], **t))
        tol = ", ".join(f"{float(v):.2g}" for v in curves[0].tolerance)
        plot_robustness(*curves, title=f"Case 1, box {name} (τ = ({tol}))", axes=axes[k])
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _markdown(res):
    s = res["summary"]
    lines = [
        "| design | mean true P | median time / design (s) |",
        "|---|---|---|",
    ]
    for m in ("amortized", "amortized_best", "flow", "sga"):
        if f"mean_p_true_{m}" in s:
            lines.append(f"| {m} | {s[f'mean_p_true_{m}']:.3f} | {s[f'median_time_{m}']:.3g} |")
    lines += [
        "",
        f"- boxes: {s['n_boxes']} held out; amortized / flow true P: mean per-box ratio "
        f"{s['mean_ratio_vs_flow']:.3f} (over the {s['n_ratio_vs_flow']} boxes with flow P ≥ "
        f"0.05), ratio of means {s['ratio_of_means_vs_flow']:.3f}",
        f"- amortized / SGA: mean per-box ratio {s['mean_ratio_vs_sga']:.3f} "
        f"({s['n_ratio_vs_sga']} boxes), ratio of means {s['ratio_of_means_vs_sga']:.3f}",
        f"- amortized point='best' / flow: mean per-box ratio "
        f"{s.get('best_mean_ratio_vs_flow', float('nan')):.3f}; / SGA: "
        f"{s.get('best_mean_ratio_vs_sga', float('nan')):.3f} (ratio of means "
        f"{s.get('best_ratio_of_means_vs_sga', float('nan')):.3f})",
        f"- speed-up: {s['speedup_vs_flow']:.0f}× vs flow, {s['speedup_vs_sga']:.0f}× vs SGA",
        f"- training: {res['designer']['train_s']:.0f} s ({res['designer']['steps']} steps); "
        f"break-even after {s['break_even_targets_vs_flow']:.1f} targets vs flow, "
        f"{s['break_even_targets_vs_sga']:.1f} vs SGA",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="bench_amortized_output")
    ap.add_argument("--model", default=None, help="a saved PSPGen (skips data and training)")
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--amortized-steps", type=int, default=1500)
    ap.add_argument("--targets-per-step", type=int, default=8)
    ap.add_argument("--width", type=float, nargs=2, default=[0.5, 2.0])
    ap.add_argument("--boxes", type=int, default=20)
    ap.add_argument("--flow-steps", type=int, default=200)
    ap.add_argument("--sga-num-z", type=int, default=2000)
    ap.add_argument("--sga-epochs", type=int, default=5)
    ap.add_argument("--sga-restarts", type=int, default=4)
    ap.add_argument("--num-samples", type=int, default=1000, help="posterior draws (flow)")
    ap.add_argument("--am-samples", type=int, default=250,
                    help="posterior draws of the amortized design (its phi* is their mean)")
    ap.add_argument("--num-eval-samples", type=int, default=2000)
    ap.add_argument("--sim-samples", type=int, default=100)
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="tau as a fraction of each phi range")
    ap.add_argument("--radii", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    ap.add_argument("--rob-num-phi", type=int, default=12)
    ap.add_argument("--rob-num-samples", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--skip-robustness", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    res["args"] = vars(args)

    model, info = _model(args, out)
    res["model"] = info
    designer = _designer(model, args, out)
    res["designer"] = {"train_s": designer.train_time, "steps": designer.num_steps_trained,
                       "config": designer.config()}
    boxes = designer.sample_targets(args.boxes, seed=987654)  # held out: not a training stream
    rows = res.get("boxes", [])
    for i in range(len(rows), len(boxes)):
        rows.append(_per_box(model, designer, boxes[i], i, args))
        r = rows[-1]
        _log(f"box {i}: P true am/flow/sga = {r['amortized']['p_true']:.2f} / "
             f"{r['flow']['p_true']:.2f} / {r['sga']['p_true']:.2f}; time "
             f"{r['amortized']['time_s']:.3f} / {r['flow']['time_s']:.1f} / "
             f"{r['sga']['time_s']:.1f} s")
        res["boxes"] = rows
        res_path.write_text(json.dumps(res, indent=1))
    for i, row in enumerate(rows):  # the amortized posterior's best draw (point="best")
        if "amortized_best" in row:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DesignWarning)
            t0 = time.perf_counter()
            rb = designer(boxes[i], seed=i, num_samples=args.am_samples, point="best",
                          num_eval_samples=args.num_eval_samples)
            t_b = time.perf_counter() - t0
        p, se = _true_p(rb.phi_star, boxes[i], args, seed=1000 + i)
        row["amortized_best"] = {"phi_star": rb.phi_star.tolist(), "p_model": rb.objective,
                                 "p_true": p, "p_true_se": se, "time_s": t_b,
                                 "khat": rb.diagnostics.get("khat")}
        _log(f"box {i}: amortized point='best' P true {p:.2f} ({t_b:.2f} s)")
        res["boxes"] = rows
        res_path.write_text(json.dumps(res, indent=1))
    res["summary"] = _summary(rows, designer.train_time)
    res_path.write_text(json.dumps(res, indent=1))
    md = _markdown(res)
    print(md)
    if not args.skip_robustness and "robustness" not in res:
        res["robustness"] = _robustness(model, args, out)
        res_path.write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(md + "\n")
    return res


if __name__ == "__main__":
    main()
