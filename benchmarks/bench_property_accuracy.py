"""Benchmark: accuracy of the conductivity and elasticity estimates against converged values.

For every data set and property it solves a *lower* and an *upper* discretization of the pixelated
medium at several refinements:

- conductivity K (phases (1, 50)): finite volumes (``method="fft"``, under-estimates) and Q1
  elements (``method="q1"``, over-estimates); quantities K_11 and K_22;
- elasticity C (E = (1, 50), ν = 0.3, plane strain): the staggered grid (``method="staggered"``,
  under-estimates) and Q1 elements (``method="fft"``, over-estimates); quantity (C_11 + C_22)/2.

The *converged value* is a joint least-squares fit of both schemes at the reference refinements
(default 2, 4, 8) with a shared limit: ``X_s(h) = X + a_s h^q + b_s h`` (s = lower, upper),
``q = corner_exponent(phases)`` = 0.358 at contrast 50, the order at which corner contacts converge
(``psppyro.properties.corner_exponent``). For elasticity the exponent of the elastic corner problem
is not known in closed form; the fit is repeated with q = 0.3 and 0.6 and the spread is printed.

Estimates compared (relative error against the converged value, median and max over samples and
quantities) with their cost (ms per image of the data set, float64 unless stated; on the CPU the
process time of the one thread, which a loaded machine inflates less than wall time):

- ``lower r`` / ``upper r`` — one scheme at refine r;
- ``Richardson upper (1,2)`` — one scheme extrapolated at first order, 2 X(2) − X(1);
- ``mean r`` — the mean of lower and upper at refine r;
- ``extrapolated`` — 2 mean(2) − mean(1) (``method="extrapolated"``, what the rixner maps use);
- ``map (float32)`` — the property map itself.

Data: ``rixner64`` at volume fraction 0.5 and 0.3 (φ ~ N(0, I), one structure per φ),
``pspgen36`` blobs (φ uniform in its box), and a checkerboard of 8-pixel squares (exact
K = √50, Dykhne).

Run::

    python benchmarks/bench_property_accuracy.py                 # the table in
                                                                 # docs/results/property_accuracy.md
    python benchmarks/bench_property_accuracy.py --quick         # smoke run (refs 1, 2, 4)
    python benchmarks/bench_property_accuracy.py --n 16 --ref-levels 4 8 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch

from psppyro.process import preset
from psppyro.properties import conductivity, elasticity, property_map
from psppyro.properties.conductivity import corner_exponent

PHASES = (1.0, 50.0)
SCHEMES = {"K": ("fft", "q1"), "C": ("staggered", "fft")}


def solve(kind, x, method, refine, device, dtype=torch.float64):
    """Quantities (B, n_q) of property ``kind`` by one scheme, and seconds per image."""
    xd = x.to(device)
    clock = time.process_time if device == "cpu" else time.perf_counter  # CPU: robust to load
    if device != "cpu":
        torch.cuda.synchronize()
    t = clock()
    if kind == "K":
        K = conductivity(xd, phases=PHASES, method=method, refine=refine, dtype=dtype)
        q = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)
    else:
        C = elasticity(xd, youngs=PHASES, poisson=0.3, plane="strain", method=method,
                       refine=refine, columns=(0, 1), dtype=dtype)
        q = (0.5 * (C[:, 0, 0] + C[:, 1, 1]))[:, None]
    if device != "cpu":
        torch.cuda.synchronize()
    return q.double().cpu().numpy(), (clock() - t) / x.shape[0]


def joint_fit(levels, lower, upper, q):
    """Shared limit of lower/upper (each (n_levels, B, n_q)) under X_s(h) = X + a_s h^q + b_s h."""
    h = 1.0 / np.asarray(levels, float)
    n, z = len(h), np.zeros(len(h))
    A = np.stack([np.r_[np.ones(n), np.ones(n)], np.r_[h**q, z], np.r_[z, h**q],
                  np.r_[h, z], np.r_[z, h]], 1)
    y = np.concatenate([lower, upper], 0).reshape(2 * n, -1)
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return coef[0].reshape(lower.shape[1:])


def study(name, x, kind, args, q_list, ref_levels=None, exact=None):
    lo_m, up_m = SCHEMES[kind]
    ref_levels = list(ref_levels or args.ref_levels)
    levels = sorted({1, 2, *ref_levels})
    vals, cost = {}, {}
    for m in (lo_m, up_m):
        for r in levels:
            vals[m, r], cost[m, r] = solve(kind, x, m, r, args.device)
            print(f"  [{name} {kind}] {m} r={r}: {cost[m, r] * 1e3:.0f} ms/img", flush=True)
    refs = {q: joint_fit(ref_levels, np.stack([vals[lo_m, r] for r in ref_levels]),
                         np.stack([vals[up_m, r] for r in ref_levels]), q) for q in q_list}
    fitted = refs[q_list[0]]
    ref = fitted if exact is None else np.full_like(fitted, exact)
    mean = {r: 0.5 * (vals[lo_m, r] + vals[up_m, r]) for r in (1, 2)}
    est = {
        "lower r=1": (vals[lo_m, 1], cost[lo_m, 1]),
        "upper r=1": (vals[up_m, 1], cost[up_m, 1]),
        "lower r=2": (vals[lo_m, 2], cost[lo_m, 2]),
        "upper r=2": (vals[up_m, 2], cost[up_m, 2]),
        "Richardson lower (1,2)": (2 * vals[lo_m, 2] - vals[lo_m, 1],
                                   cost[lo_m, 1] + cost[lo_m, 2]),
        "Richardson upper (1,2)": (2 * vals[up_m, 2] - vals[up_m, 1],
                                   cost[up_m, 1] + cost[up_m, 2]),
        "mean r=1": (mean[1], cost[lo_m, 1] + cost[up_m, 1]),
        "mean r=2": (mean[2], cost[lo_m, 2] + cost[up_m, 2]),
        "extrapolated": (2 * mean[2] - mean[1],
                         sum(cost[m, r] for m in (lo_m, up_m) for r in (1, 2))),
    }
    rows = []
    for label, (v, c) in est.items():
        err = np.abs(v - ref) / ref
        rows.append({"estimate": label, "median": float(np.median(err)),
                     "max": float(err.max()), "ms": c * 1e3})
    spread = max(float(np.max(np.abs(refs[q] - fitted) / fitted)) for q in q_list)
    return {"data": name, "property": kind, "n": int(x.shape[0]), "rows": rows,
            "ref_levels": ref_levels, "q": q_list[0], "q_spread": spread,
            "reference_mean": float(fitted.mean()), "exact": exact}


def map_cost(x, name, device):
    pm = property_map(name)
    xd = x.to(device)
    clock = time.process_time if device == "cpu" else time.perf_counter
    t = clock()
    pm(xd)
    if device != "cpu":
        torch.cuda.synchronize()
    return (clock() - t) / x.shape[0] * 1e3


def cost_table(args):
    """CPU seconds per 64² rixner64 image (process time of this thread: robust to a loaded machine).

    The former maps (finite volumes and Q1 elasticity at refine 1, float64) against the current
    ones (``method="extrapolated"``, float32) and its parts.
    """
    proc = preset("rixner64")
    x = proc.sample(torch.randn(args.cost_images, proc.d_phi,
                                generator=torch.Generator().manual_seed(5)), 1, seed=6)[:, 0]
    xd = x.to(args.device)
    kw_c = {"youngs": PHASES, "poisson": 0.3, "columns": (0, 1)}
    rows = [
        ("former rixner_o2: K finite volumes r=1, float64",
         lambda: conductivity(xd, phases=PHASES)),
        ("former rixner_o1: + C Q1 r=1, float64",
         lambda: (conductivity(xd, phases=PHASES), elasticity(xd, **kw_c))),
        ("K finite volumes r=1, float32", lambda: conductivity(xd, phases=PHASES,
                                                             dtype=torch.float32)),
        ("K Q1 r=1, float32", lambda: conductivity(xd, phases=PHASES, method="q1",
                                                  dtype=torch.float32)),
        ("K finite volumes r=2, float32", lambda: conductivity(xd, phases=PHASES, refine=2,
                                                             dtype=torch.float32)),
        ("K Q1 r=2, float32", lambda: conductivity(xd, phases=PHASES, method="q1", refine=2,
                                                  dtype=torch.float32)),
        ("C staggered r=1, float32", lambda: elasticity(xd, method="staggered",
                                                       dtype=torch.float32, **kw_c)),
        ("C Q1 r=1, float32", lambda: elasticity(xd, dtype=torch.float32, **kw_c)),
        ("rixner_o2 (K extrapolated, float32)", lambda: property_map("rixner_o2")(xd)),
        ("rixner_o1 (K and C extrapolated, float32)", lambda: property_map("rixner_o1")(xd)),
    ]
    print(f"\n### cost per 64² image ({args.cost_images} rixner64 images, one batch, "
          f"{args.device}, CPU seconds of the process)")
    print("| solve | ms / image | × former rixner_o2 |")
    print("|---|---|---|")
    base = None
    for label, fn in rows:
        fn()  # warm-up
        t0, w0 = time.process_time(), time.perf_counter()
        fn()
        if args.device != "cpu":
            torch.cuda.synchronize()
        t = (time.process_time() - t0 if args.device == "cpu" else time.perf_counter() - w0)
        ms = t / x.shape[0] * 1e3
        base = base or ms
        print(f"| {label} | {ms:.0f} | {ms / base:.1f} |", flush=True)


def print_result(res):
    what = (f"exact value {res['exact']:.4f} (the joint fit at refine {res['ref_levels']} gives "
            f"{res['reference_mean']:.4f})" if res["exact"] is not None else
            f"converged value: joint fit at refine {res['ref_levels']}, q = {res['q']:.3f}; "
            f"q-sensitivity {res['q_spread']:.2%}")
    print(f"\n### {res['data']} — {res['property']} ({res['n']} images; {what})")
    print("| estimate | median rel. error | max rel. error | ms / image |")
    print("|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['estimate']} | {r['median']:.2%} | {r['max']:.2%} | {r['ms']:.0f} |")
    if "map_ms" in res:
        print(f"| map {res['map']} (float32, = extrapolated) | | | {res['map_ms']:.0f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 images, refs 1 2 4")
    parser.add_argument("--n", type=int, default=8, help="images per data set (rixner64 vf 0.5)")
    parser.add_argument("--ref-levels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-elasticity", action="store_true")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--sets", nargs="+", default=None,
                        choices=["rixner05", "rixner03", "pspgen36", "checkerboard"],
                        help="data sets to study (default: all)")
    parser.add_argument("--skip-cost", action="store_true", help="no cost table")
    parser.add_argument("--cost-only", action="store_true", help="only the cost table")
    parser.add_argument("--cost-images", type=int, default=16)
    parser.add_argument("--skip-accuracy", action="store_true",
                        help="do nothing (for bench_properties.py -- --skip-accuracy)")
    args, unknown = parser.parse_known_args(argv)  # bench_properties.py passes its extras to all
    if unknown:
        print(f"ignoring arguments {unknown}")
    if args.skip_accuracy:
        print("accuracy study skipped (--skip-accuracy)")
        return
    if args.quick:
        args.n, args.ref_levels = 2, [1, 2, 4]
    torch.set_num_threads(args.threads)
    print(f"# property accuracy — {platform.processor() or platform.machine()}, device "
          f"{args.device}, {torch.get_num_threads()} thread(s), load average "
          f"{os.getloadavg()[0]:.1f} at start")
    if not args.skip_cost:
        cost_table(args)
    if args.cost_only:
        return
    qK = corner_exponent(PHASES)
    g = torch.Generator().manual_seed(12)
    sets = {}
    rix = preset("rixner64")
    sets["rixner64 vf 0.5"] = rix.sample(torch.randn(args.n, rix.d_phi, generator=g), 1,
                                         seed=1)[:, 0]
    rix3 = preset("rixner64", volume_fraction=0.3)
    sets["rixner64 vf 0.3"] = rix3.sample(torch.randn(max(2, args.n // 2), rix.d_phi,
                                                      generator=g), 1, seed=2)[:, 0]
    ps = preset("pspgen36")
    lo, hi = ps.phi_bounds[:, 0], ps.phi_bounds[:, 1]
    sets["pspgen36"] = ps.sample(lo + (hi - lo) * torch.rand(args.n, lo.shape[0], generator=g),
                                 1, seed=3)[:, 0]
    i = torch.arange(16)
    sets["checkerboard 8 px"] = ((i[:, None] // 8 + i[None, :] // 8) % 2).float()[None]
    keys = dict(zip(("rixner05", "rixner03", "pspgen36", "checkerboard"), sets))
    if args.sets:
        sets = {keys[k]: sets[keys[k]] for k in args.sets}
    results = []
    for name, x in sets.items():
        kinds = ["K"] if (args.skip_elasticity or name == "rixner64 vf 0.3") else ["K", "C"]
        for kind in kinds:
            q_list = [qK] if kind == "K" else [qK, 0.3, 0.6]
            checker = name.startswith("checkerboard")
            res = study(name, x, kind, args, q_list,
                        ref_levels=[8, 16, 32] if checker and not args.quick else None,
                        exact=math.sqrt(PHASES[0] * PHASES[1]) if checker and kind == "K"
                        else None)
            if name.startswith("rixner") or name == "pspgen36":
                res["map"] = "rixner_o2" if kind == "K" else "rixner_o1 (K and C)"
                res["map_ms"] = map_cost(x, "rixner_o2" if kind == "K" else "rixner_o1",
                                         args.device)
            results.append(res)
            print_result(res)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
