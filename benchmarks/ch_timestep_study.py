"""Time-step convergence study for the PSP-GEN Cahn–Hilliard step (reproduces the table in
``psppyro/process/cahn_hilliard.py``).

Set-up: the literal PSP-GEN process (preset ``"pspgen36"`` without its phase field, i.e. the
hard-thresholded 36² fields at void fraction 2/3, φ drawn uniformly from the φ box), evolved with
``CahnHilliard(D=10, gamma=2, T=5, stabilization=2, dx=1)`` at a ladder of time steps. Each run is
compared after re-binarization at c > 0 with

* a converged reference: the independent fourth-order integrating-factor RK4 solver at Δt = 0.001
  (its own change from Δt = 0.002 is printed), and
* the same scheme at Δt / 2 (the brief's dt-vs-dt/2 check).

Columns: fraction of differing pixels, max |Δc| over all pixels and images, the void fraction after
Cahn–Hilliard, and — what the design targets see — the log-permeabilities m = (ln k_xx, ln k_yy)
(MAC Stokes, ``psppyro.properties.log_permeability``) against the reference: median and max
|Δm| over the directions that percolate in both, and the number of directions whose percolation
flag flips. The default Δt is the largest one meeting the tolerance (≤ 1 % differing pixels
and max |Δc| ≤ 0.25 against the reference); the script prints which one that is.

Usage::

    .venv/bin/python benchmarks/ch_timestep_study.py            # 64 images, ~2 min on 1 core
    .venv/bin/python benchmarks/ch_timestep_study.py --quick    # 8 images, coarser reference
"""

from __future__ import annotations

import argparse
import time

import torch

from psppyro.process import CahnHilliard, preset
from psppyro.process.cahn_hilliard import _ifrk4_reference
from psppyro.properties.permeability import log_permeability

TOL_PIXELS = 0.01
TOL_MAX_DC = 0.25


def initial_images(num_images, seed):
    proc = preset("pspgen36", phase_field=None)
    bounds = proc.phi_bounds.to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(num_images, bounds.shape[0], generator=g, dtype=torch.float64)
    phi = bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])
    x = proc.sample(phi, num_samples=1, seed=seed)[:, 0]
    return x.to(torch.float64)


def compare(a, b):
    return float(((a > 0) != (b > 0)).double().mean()), float((a - b).abs().max())


def compare_log_k(x, reference):
    """(median |Δm|, max |Δm|) over directions percolating in both, and the number of flips."""
    m, flags = log_permeability(x, return_percolation=True)
    m_ref, flags_ref = reference
    both = flags & flags_ref
    dm = (m - m_ref).abs()[both]
    return float(dm.median()), float(dm.max()), int((flags != flags_ref).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 images, reference at dt=0.002")
    parser.add_argument("--num-images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.num_images or (8 if args.quick else 64)
    ref_dt = 0.002 if args.quick else 0.001
    dts = [0.1, 0.05, 0.025, 0.02] if args.quick else [
        0.1, 0.05, 0.04, 0.025, 0.02, 0.0125, 0.01, 0.005, 0.0025
    ]

    x = initial_images(n, args.seed)
    c0 = 2 * x - 1
    print(f"{n} pspgen36 images (36x36), void fraction before CH {float(x.mean()):.4f}")
    t0 = time.perf_counter()
    reference = _ifrk4_reference(c0, 10.0, 2.0, 5.0, ref_dt)
    coarse = _ifrk4_reference(c0, 10.0, 2.0, 5.0, 2 * ref_dt)
    pix, dc = compare(coarse, reference)
    print(f"reference: IFRK4 dt={ref_dt} ({time.perf_counter() - t0:.1f} s); "
          f"vs IFRK4 dt={2 * ref_dt}: {100 * pix:.4f} % pixels, max|dc| {dc:.2e}")
    if not args.quick:
        literal = CahnHilliard(dt=0.0005).evolve(c0)
        pix, dc = compare(literal, reference)
        print(f"semi-implicit dt=0.0005 (earlier reference) vs reference: {100 * pix:.4f} % "
              f"pixels, max|dc| {dc:.3f}")
    binary_ref = (reference > 0).double()
    log_k_ref = log_permeability(binary_ref, return_percolation=True)
    print(f"reference: ln k median {float(log_k_ref[0][log_k_ref[1]].median()):.2f}, "
          f"{int(log_k_ref[1].sum())} of {log_k_ref[1].numel()} directions percolate")
    print()
    header = (f"{'dt':>8} {'steps':>6} {'% pix vs ref':>13} {'max|dc| ref':>12} "
              f"{'% pix vs dt/2':>14} {'max|dc| dt/2':>13} {'void frac':>10} {'max|c|':>7} "
              f"{'med|dlnk|':>10} {'max|dlnk|':>10} {'flips':>6}")
    print(header)
    print("-" * len(header))
    chosen = None
    for dt in dts:
        ch = CahnHilliard(dt=dt)
        c = ch.evolve(c0)
        c_half = CahnHilliard(dt=dt / 2).evolve(c0)
        pix_ref, dc_ref = compare(c, reference)
        pix_half, dc_half = compare(c, c_half)
        med_lnk, max_lnk, flips = compare_log_k((c > 0).double(), log_k_ref)
        print(f"{dt:8.4f} {ch.steps:6d} {100 * pix_ref:13.3f} {dc_ref:12.3f} "
              f"{100 * pix_half:14.3f} {dc_half:13.3f} {float((c > 0).double().mean()):10.4f} "
              f"{float(c.abs().max()):7.3f} {med_lnk:10.4f} {max_lnk:10.3f} {flips:6d}")
        if chosen is None and pix_ref <= TOL_PIXELS and dc_ref <= TOL_MAX_DC:
            chosen = dt
    print(f"\nlargest dt within tolerance ({100 * TOL_PIXELS:g} % pixels, max|dc| <= {TOL_MAX_DC}):"
          f" {chosen}")

    # float32 time loop at the chosen step: is the round-off small against the dt error?
    if chosen is not None:
        c64 = CahnHilliard(dt=chosen).evolve(c0)
        c32 = CahnHilliard(dt=chosen, precision="float32").evolve(c0.float())
        pix, dc = compare(c32.double(), c64)
        pix_ref, dc_ref = compare(c32.double(), reference)
        print(f"precision='float32' at dt={chosen}: vs float64 {100 * pix:.4f} % pixels, "
              f"max|dc| {dc:.2e}; vs reference {100 * pix_ref:.3f} % pixels, max|dc| {dc_ref:.3f}")


if __name__ == "__main__":
    main()
