"""Fingerprints of the two readings of the PSP-GEN simulator at the paper's reference optima.

For each reading of the simulator

* ``literal``: process preset ``pspgen36`` / ``pspgen128`` (filter √S, Cahn–Hilliard on a
  one-pixel grid) with the property map ``log_permeability`` (exact Stokes, κ_s = 0: a blocked
  direction is floored at ln k = −20);
* ``paper``: the reconstruction ``pspgen36-paper`` / ``pspgen128-paper`` (filter S, Cahn–Hilliard
  dx = 2) with ``log_permeability_paper`` (Darcy–Brinkman–Stokes, κ_s = 0.02 h²),

and for each of the paper's three target boxes L, M, R (case 1 at 36², Table 1; case 4 at 128²,
Table 3) this script simulates ``--samples`` microstructures at the paper's reference optimum
φ_ref of that box and prints

* P(m ∈ box | φ_ref) with its binomial standard error √(p(1−p)/n), next to the paper's value;
* the blocked fraction per direction (the void phase does not percolate along x / y);
* the 5 / 50 / 95 % quantiles of m = (ln k_xx, ln k_yy);
* the void fraction after Cahn–Hilliard (mean; 2/3 before it).

Run::

    .venv/bin/python benchmarks/pspgen_fingerprints.py                   # 36², 200 per point
    .venv/bin/python benchmarks/pspgen_fingerprints.py --size 128 --samples 100
    .venv/bin/python benchmarks/pspgen_fingerprints.py --quick           # smoke run (20 per point)
    .venv/bin/python benchmarks/pspgen_fingerprints.py --samples 0 --gallery docs/_static/g.png

``--gallery PATH`` also writes a PNG of microstructures of both readings at φ = (1, 2), (5, 0.2),
(9, 2) (four samples each, solid yellow, void black, m = (ln k_xx, ln k_yy) above each);
``--samples 0`` skips the table. ``--ablation`` prints, instead of the table, P at the three φ_ref
and the correlation-length ratio l_y / l_x at φ = (1, 2) for filter amplitude √S / S × Cahn–Hilliard
dx = 1, 2, 3, all with ``log_permeability_paper`` (which detail does what; 36² only).
``--case5`` prints, instead of the table, P(m ∈ box) of case 5 (10-D φ, ``pspgen10d`` /
``pspgen10d-paper``) at the paper's φ_prop and φ_comp of its two boxes (the paper: 1 000 samples
each; it has no φ_ref), for both readings.

Randomness: point j of a reading draws its microstructures in chunks of 25 with seeds
``derive_seed(seed, j, chunk)``, so the figures do not depend on ``--workers``; both readings use
the same seeds (the same white noise).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

from psppyro._random import derive_seed  # noqa: E402
from psppyro.design import paper_reference  # noqa: E402
from psppyro.process import preset  # noqa: E402
from psppyro.properties import property_map  # noqa: E402

CHUNK = 25

READINGS = {
    # reading: (process preset suffix, property map)
    "literal": ("", "log_permeability"),
    "paper": ("-paper", "log_permeability_paper"),
}


def _case(size):
    return "case1" if size == 36 else "case4"


def _chunk(args):
    """(m, percolates, void fraction) of ``n`` simulations of one process at one φ."""
    process_name, map_name, phi, n, seed = args
    torch.set_num_threads(1)
    x = preset(process_name).sample(torch.tensor(phi, dtype=torch.float64), n, seed=seed)
    m, flags = property_map(map_name).evaluate(x)
    return m.double(), flags["percolates"], x.double().mean((-2, -1))


def simulate(reading, size, phi, n, seed, point, pool=None):
    """Simulate one reading at one φ: (m (n, 2), percolates (n, 2), void fraction (n,))."""
    suffix, map_name = READINGS[reading]
    process_name = f"pspgen{size}{suffix}"
    tasks = [
        (process_name, map_name, tuple(phi), min(CHUNK, n - start), derive_seed(seed, point, c))
        for c, start in enumerate(range(0, n, CHUNK))
    ]
    parts = list(pool.map(_chunk, tasks)) if pool is not None else [_chunk(t) for t in tasks]
    return tuple(torch.cat(p, 0) for p in zip(*parts))


def fingerprint(reading, size, n, seed=0, pool=None):
    """Rows (one per paper box) of the fingerprint table of one reading; see the module doc."""
    rows = []
    for j, (name, ref) in enumerate(paper_reference(_case(size)).items()):
        t0 = time.perf_counter()
        m, perc, vf = simulate(reading, size, ref.phi_ref, n, seed, j, pool)
        p = float(ref.box.contains(m).double().mean())
        q = torch.quantile(m, torch.tensor([0.05, 0.5, 0.95], dtype=m.dtype), dim=0)  # (3, 2)
        rows.append({
            "reading": reading, "box": name, "phi": ref.phi_ref, "n": n,
            "p": p, "se": math.sqrt(p * (1 - p) / n), "paper": ref.p_ref,
            "blocked": (1.0 - perc.double().mean(0)).tolist(),
            "q": q.T.tolist(), "void": float(vf.mean()), "seconds": time.perf_counter() - t0,
        })
    return rows


def format_table(rows):
    """Plain-text table of :func:`fingerprint` rows."""
    head = (f"{'reading':8} {'box':3} {'phi_ref':>14} {'n':>4} {'P +- s.e.':>14} {'paper':>6} "
            f"{'blk x':>6} {'blk y':>6} {'ln k_xx 5/50/95 %':>20} {'ln k_yy 5/50/95 %':>20} "
            f"{'void':>6} {'s':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        qx = "/".join(f"{v:.2f}" for v in r["q"][0])
        qy = "/".join(f"{v:.2f}" for v in r["q"][1])
        phi = f"({r['phi'][0]:.3f}, {r['phi'][1]:.3f})"
        pm = f"{r['p']:.3f} +- {r['se']:.3f}"
        lines.append(
            f"{r['reading']:8} {r['box']:3} {phi:>14} {r['n']:>4} {pm:>14} {r['paper']:>6.3f} "
            f"{r['blocked'][0]:>6.3f} {r['blocked'][1]:>6.3f} {qx:>20} {qy:>20} "
            f"{r['void']:>6.3f} {r['seconds']:>6.1f}"
        )
    return "\n".join(lines)


GALLERY_PHI = ((1.0, 2.0), (5.0, 0.2), (9.0, 2.0))


def gallery(path, size, seed=0, per_row=4):
    """Write a PNG: one row per (reading, φ in :data:`GALLERY_PHI`), ``per_row`` samples each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#f2c500", "black"])  # 0 = solid (yellow), 1 = void (black)
    rows = [(r, phi) for r in READINGS for phi in GALLERY_PHI]
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.5 * per_row + 1.2, 1.62 * len(rows)),
                             squeeze=False)
    for i, (reading, phi) in enumerate(rows):
        suffix, map_name = READINGS[reading]
        x = preset(f"pspgen{size}{suffix}").sample(torch.tensor(phi, dtype=torch.float64),
                                                   per_row, seed=derive_seed(seed, 99, i % 3))
        m = property_map(map_name)(x)
        for j in range(per_row):
            ax = axes[i, j]
            ax.imshow(x[j].numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"({m[j, 0]:.1f}, {m[j, 1]:.1f})", fontsize=7, pad=2)
        axes[i, 0].set_ylabel(f"{reading}\nφ=({phi[0]:g}, {phi[1]:g})", fontsize=7)
    fig.suptitle(f"PSP-GEN microstructures at {size}², literal vs paper reading "
                 f"(solid yellow; titles: ln k_xx, ln k_yy)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def case5(reading, n, seed=0):
    """Rows (box, which φ, P, s.e., paper P) of case 5 at φ_prop and φ_comp for one reading."""
    suffix, map_name = READINGS[reading]
    rows = []
    for j, (name, ref) in enumerate(paper_reference("case5").items()):
        for k, (which, phi, paper) in enumerate(
            (("prop", ref.phi_prop, ref.p_prop), ("comp", ref.phi_comp, ref.p_comp))
        ):
            tasks = [
                (f"pspgen10d{suffix}", map_name, tuple(phi), min(CHUNK, n - start),
                 derive_seed(seed, 2 * j + k, c))
                for c, start in enumerate(range(0, n, CHUNK))
            ]
            m = torch.cat([_chunk(t)[0] for t in tasks], 0)
            p = float(ref.box.contains(m).double().mean())
            rows.append((name, which, p, math.sqrt(p * (1 - p) / n), paper))
    return rows


def ablation(n, seed=0):
    """Rows (amplitude, dx, l_y/l_x at (1, 2), {box: P}) at 36² with ``log_permeability_paper``."""
    from psppyro.process import CahnHilliard, correlation_length

    pm = property_map("log_permeability_paper")
    rows = []
    for amplitude in ("sqrt", "density"):
        for dx in (1.0, 2.0, 3.0):
            proc = preset("pspgen36", filter_amplitude=amplitude,
                          phase_field=CahnHilliard(D=10.0, gamma=2.0, T=5.0, dx=dx))
            probs, ratio = {}, None
            for j, (name, ref) in enumerate(paper_reference("case1").items()):
                x = proc.sample(torch.tensor(ref.phi_ref, dtype=torch.float64), n,
                                seed=derive_seed(seed, j, 0))
                probs[name] = float(ref.box.contains(pm(x)).double().mean())
                if ref.phi_ref == (1.0, 2.0):
                    ly, lx = correlation_length(x, -2).mean(), correlation_length(x, -1).mean()
                    ratio = float(ly / lx)
            rows.append((amplitude, dx, ratio, probs))
    return rows


def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, choices=(36, 128), default=36,
                    help="image size: 36 (case 1, Table 1) or 128 (case 4, Table 3)")
    ap.add_argument("--samples", type=int, default=None,
                    help="microstructures per point (default 200; 20 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 samples per point")
    ap.add_argument("--readings", nargs="+", choices=sorted(READINGS), default=["literal", "paper"])
    ap.add_argument("--workers", type=int, default=1, help="process-pool size (1 = in process)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gallery", metavar="PATH", default=None,
                    help="also write a PNG gallery of both readings to PATH")
    ap.add_argument("--ablation", action="store_true",
                    help="amplitude x Cahn-Hilliard dx table at 36^2 instead of the fingerprints")
    ap.add_argument("--case5", action="store_true",
                    help="case 5 (10-D phi): P at the paper's phi_prop / phi_comp, both readings")
    args = ap.parse_args(argv)
    n = args.samples if args.samples is not None else (20 if args.quick else 200)
    if n < 0:
        ap.error(f"--samples must be >= 0, got {n}")
    if args.gallery is not None:
        print(f"gallery written to {gallery(args.gallery, args.size, seed=args.seed)}")
    if n == 0:
        return
    if args.ablation:
        print(f"ablation at 36x36, log_permeability_paper, {n} samples per point, seed {args.seed}")
        print(f"{'amplitude':9} {'dx':>4} {'ly/lx (1,2)':>11}  P(L)  P(M)  P(R)   (s.e. <= "
              f"{0.5 / math.sqrt(n):.3f})")
        for amplitude, dx, ratio, p in ablation(n, seed=args.seed):
            ps = "  ".join(f"{p[b]:.2f}" for b in ("L", "M", "R"))
            print(f"{amplitude:9} {dx:>4g} {ratio:>11.1f}  {ps}")
        print("paper (Table 1):          0.81  0.30  0.84")
        return
    if args.case5:
        print(f"case 5 (10-D phi, 36x36), {n} samples per point, seed {args.seed}; boxes "
              + "; ".join(f"{k} = {d.box!r}" for k, d in paper_reference("case5").items()))
        print(f"{'reading':8} {'box':5} {'phi':5} {'P +- s.e.':>14} {'paper':>6}")
        for reading in args.readings:
            for name, which, p, se, paper in case5(reading, n, seed=args.seed):
                print(f"{reading:8} {name:5} {which:5} {f'{p:.3f} +- {se:.3f}':>14} {paper:>6.3f}")
        return
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    print(f"PSP-GEN fingerprints at {args.size}x{args.size}: {_case(args.size)} boxes and phi_ref "
          f"of the paper, {n} samples per point, seed {args.seed}, {args.workers} worker(s)")
    pool = None
    if args.workers > 1:
        import multiprocessing as mp

        pool = ProcessPoolExecutor(args.workers, mp.get_context("spawn"))
    try:
        rows = []
        for reading in args.readings:
            rows += fingerprint(reading, args.size, n, seed=args.seed, pool=pool)
    finally:
        if pool is not None:
            pool.shutdown()
    print(format_table(rows))
    boxes = {k: d.printed for k, d in paper_reference(_case(args.size)).items()}
    print("boxes (ln k_xx range x ln k_yy range): "
          + "; ".join(f"{k} = {v}" for k, v in boxes.items()))
    print("blk x / blk y: fraction of samples whose void phase does not percolate along x / y; "
          "void: void fraction after Cahn-Hilliard (2/3 before); s: wall seconds per point")


if __name__ == "__main__":
    main()
