"""Benchmark of the Stokes permeability solvers (MAC finite volumes vs scikit-fem Taylor–Hood).

Prints plain-text tables:

1. speed at 36², both force directions per image: images/s of the MAC path on one core
   (torch/BLAS threads = 1) and on two cores (a process pool of 2 workers, as the data layer
   parallelizes), the Taylor–Hood path on one core, and the MAC/Taylor–Hood speed ratio;
2. seconds per 128² image (MAC);
3. accuracy: median, 90 % quantile and max relative error of ``k_xx``, ``k_yy`` at refine 1, 2, 4
   and of cheap extrapolations, against the three-level Richardson value from refine (2, 3, 4),
   on pspgen36 samples;
4. with ``--order``: the observed convergence order in h of both methods (successive ratios
   |k_r − k_2r| / |k_2r − k_4r| on refine 1, 2, 4 for MAC and 1, 2, 3 for Taylor–Hood);
5. Darcy–Brinkman–Stokes (``solid_permeability`` κ_s = 0.02 h², the PSP-GEN paper's value), all
   ratios measured in the same run, with the load average printed before and after: images/s at
   36² of the MAC solvers (stream-function Cholesky on 1 core and 2 worker processes, projected
   CG on 1 core, SuperLU reference) against today's κ_s = 0 path; seconds per 128² image; the
   accuracy of the CG tolerance against the direct solve on 20 pspgen36 images; ln k of the
   directions where the void does not percolate (the paper: ≈ −9.5 at 36², ≈ −11.7 at 128²).

Run::

    .venv/bin/python benchmarks/bench_permeability.py            # full figures
    .venv/bin/python benchmarks/bench_permeability.py --quick    # smoke run (small counts)
    .venv/bin/python benchmarks/bench_permeability.py --order    # also the convergence orders
    .venv/bin/python benchmarks/bench_permeability.py --brinkman-only   # only table 5

Samples come from ``psppyro.process.preset("pspgen36")`` (``"pspgen128"`` for the 128² row), with
φ uniform in its box.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from psppyro.process import preset  # noqa: E402
from psppyro.properties import (  # noqa: E402
    extrapolate_permeability,
    log_permeability,
    permeability,
)


def samples(num, size=36, seed=0):
    """``num`` binary images of the pspgen preset at φ uniform in its box, and a description."""
    proc = preset("pspgen36" if size == 36 else "pspgen128")
    bounds = proc.phi_bounds.double()
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, bounds.shape[0], generator=gen, dtype=torch.float64)
    phi = bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])
    x = proc.sample(phi, num_samples=1, seed=seed).reshape(num, size, size).double()
    return x, f"pspgen{size} preset, phi uniform in its box"


def _solve_chunk(images, solid_permeability=0.0):
    torch.set_num_threads(1)
    return permeability(torch.as_tensor(images), solid_permeability=solid_permeability).numpy()


def _solve_chunk_timed(images, solid_permeability):
    """(permeability of the chunk, CPU seconds the worker spent on it)."""
    torch.set_num_threads(1)
    c0 = time.process_time()
    k = permeability(torch.as_tensor(images), solid_permeability=solid_permeability).numpy()
    return k, time.process_time() - c0


def _pool_rate(x, solid_permeability, chunks_per_worker=4, return_cpu=False):
    """images/s of ``permeability`` over 2 worker processes (one thread each).

    With ``return_cpu`` also the images per CPU-second summed over the workers, times 2: the rate
    two otherwise idle cores would give.
    """
    chunks = np.array_split(x.numpy(), 2 * chunks_per_worker)
    kappas = [solid_permeability] * len(chunks)
    with ProcessPoolExecutor(max_workers=2, initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        list(pool.map(_solve_chunk, [c[:1] for c in chunks[:2]], kappas[:2]))  # start workers
        t0 = time.perf_counter()
        out = list(pool.map(_solve_chunk_timed, chunks, kappas))
        wall = len(x) / (time.perf_counter() - t0)
    if return_cpu:
        return wall, 2 * len(x) / sum(cpu for _, cpu in out)
    return wall


def _blocked_log_k(x, solid_permeability):
    """ln k of the diagonal entries whose direction the void does not percolate."""
    m, flags = log_permeability(x, return_percolation=True, solid_permeability=solid_permeability)
    return m[~flags]


def _rates(fn, images):
    """(images per wall second, images per CPU second of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(images)
    return len(images) / (time.perf_counter() - t0), len(images) / (time.process_time() - c0)


def brinkman_table(quick):
    from psppyro.properties._brinkman import solve_dbs_direct, solve_dbs_pcg
    from psppyro.properties.permeability import PCG_RTOL

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    n36, n_stokes, n_pcg, n_direct = (20, 6, 10, 5) if quick else (200, 40, 60, 20)
    x, source = samples(n36, seed=5)
    kappa = 0.02 / 36**2
    print(f"# Darcy-Brinkman-Stokes, kappa_s = 0.02 h^2, 36^2, both directions, samples: {source}")
    print(f"# load average (1, 5, 15 min) before: {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f} "
          f"on {os.cpu_count()} cpus")
    permeability(x[:2], solid_permeability=kappa)  # warm-up: symbolic analysis, imports
    permeability(x[:2])
    permeability(x[:2], solid_permeability=kappa, solver="pcg")
    stokes1, stokes_cpu = _rates(permeability, x[:n_stokes])
    chol1, chol_cpu = _rates(lambda im: permeability(im, solid_permeability=kappa), x)
    chol2, chol2_cpu = _pool_rate(x, kappa, return_cpu=True)
    pcg1, pcg_cpu = _rates(lambda im: permeability(im, solid_permeability=kappa, solver="pcg"),
                           x[:n_pcg])
    direct1, direct_cpu = _rates(
        lambda im: permeability(im, solid_permeability=kappa, solver="direct"), x[:n_direct]
    )
    print("# images/s: wall clock; images/CPU-s: per second of CPU time the process got (less")
    print("# sensitive to the other jobs' load; for 2 workers: 2 x images per summed CPU-second)")
    print(f"{'path':<52}{'images/s':>10}{'ms/image':>10}{'images/CPU-s':>14}")
    for name, r, c in (
        ("kappa_s = 0 (today's Stokes path), 1 core", stokes1, stokes_cpu),
        ("kappa_s > 0, Cholesky (default), 1 core", chol1, chol_cpu),
        ("kappa_s > 0, Cholesky (default), 2 worker processes", chol2, chol2_cpu),
        (f"kappa_s > 0, projected CG (rtol {PCG_RTOL:g}), 1 core", pcg1, pcg_cpu),
        ("kappa_s > 0, SuperLU saddle point (reference), 1 core", direct1, direct_cpu),
    ):
        print(f"{name:<52}{r:>10.1f}{1e3 / r:>10.2f}{c:>14.1f}")
    print(f"ratio Cholesky / kappa_s = 0 path (1 core each): {chol1 / stokes1:.1f}x wall, "
          f"{chol_cpu / stokes_cpu:.1f}x CPU time; Cholesky / SuperLU: {chol1 / direct1:.1f}x; "
          f"Cholesky / CG: {chol1 / pcg1:.1f}x")

    # accuracy against the direct solve
    num = 5 if quick else 20
    fluid = x[:num].numpy() == 1
    ref = np.stack([solve_dbs_direct(f, kappa) for f in fluid])
    chol = permeability(x[:num], solid_permeability=kappa).numpy()
    d_ref = ref[:, [0, 1], [0, 1]]
    print(f"# accuracy against SuperLU on {num} images: max relative error of k_xx, k_yy "
          f"(k_xy relative to max |k|)")
    print(f"Cholesky: {np.abs(chol[:, [0, 1], [0, 1]] / d_ref - 1).max():.2e}")
    kap_t = torch.full((num,), kappa, dtype=torch.float64)
    for rtol in (1e-3, 1e-4, PCG_RTOL, 1e-6):
        k, info = solve_dbs_pcg(torch.as_tensor(fluid), kap_t, rtol=rtol, return_info=True)
        k = k.numpy()
        err = np.abs(k[:, [0, 1], [0, 1]] / d_ref - 1)
        off = np.abs(k[:, 0, 1] - ref[:, 0, 1]).max() / np.abs(ref).max()
        it = info["iterations"].double()
        print(f"CG rtol {rtol:g}: diagonal median {np.median(err):.1e}, max {err.max():.1e}; "
              f"k_xy max {off:.1e}; iterations mean {it.mean():.0f}, max {int(it.max())}")

    # 128^2
    n128 = 2 if quick else 10
    x128, source = samples(n128, size=128, seed=6)
    kappa128 = 0.02 / 128**2
    permeability(x128[:1], solid_permeability=kappa128)
    t0, c0 = time.perf_counter(), time.process_time()
    permeability(x128, solid_permeability=kappa128)
    chol128 = (time.perf_counter() - t0) / n128
    chol128_cpu = (time.process_time() - c0) / n128
    wall2, cpu2 = _pool_rate(x128, kappa128, chunks_per_worker=1, return_cpu=True)
    chol128_2, chol128_2_cpu = 1.0 / wall2, 1.0 / cpu2
    t0 = time.perf_counter()
    permeability(x128[:2])
    stokes128 = (time.perf_counter() - t0) / 2
    t0 = time.perf_counter()
    permeability(x128[:1], solid_permeability=kappa128, solver="pcg")
    pcg128 = time.perf_counter() - t0
    print(f"# 128^2 ({source}), kappa_s = 0.02 h^2: seconds per image")
    print(f"Cholesky 1 core {chol128:.3f} ({chol128_cpu:.3f} CPU-s), 2 worker processes "
          f"{chol128_2:.3f} ({chol128_2_cpu:.3f} from CPU time); projected CG "
          f"1 core {pcg128:.3f}; kappa_s = 0 path 1 core {stokes128:.3f} "
          f"(ratio {stokes128 / chol128:.1f}x)")
    for size, xs, kap in ((36, x, kappa), (128, x128, kappa128)):
        blocked = _blocked_log_k(xs, kap)
        if blocked.numel():
            print(f"ln k of non-percolating directions at {size}^2: median "
                  f"{blocked.median().item():.2f}, range [{blocked.min().item():.2f}, "
                  f"{blocked.max().item():.2f}] over {blocked.numel()} of {2 * len(xs)}")
        else:
            print(f"ln k of non-percolating directions at {size}^2: none among {2 * len(xs)}")
    load1 = os.getloadavg()
    print(f"# load average after: {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")
    print()


def rate(fn, images):
    t0 = time.perf_counter()
    fn(images)
    return len(images) / (time.perf_counter() - t0)


def speed_table(quick):
    n_mac, n_fem = (20, 3) if quick else (200, 20)
    x, source = samples(n_mac, seed=1)
    print(f"# speed at 36^2, both directions, samples: {source}")
    torch.set_num_threads(1)
    permeability(x[:2])  # warm-up (imports, caches)
    permeability(x[:1], method="fem")
    mac1 = rate(permeability, x)
    chunks = np.array_split(x.numpy(), 8)  # several chunks per worker balance the load
    with ProcessPoolExecutor(max_workers=2, initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        list(pool.map(_solve_chunk, [c[:2] for c in chunks]))  # start both workers
        t0 = time.perf_counter()
        list(pool.map(_solve_chunk, chunks))
        mac2 = len(x) / (time.perf_counter() - t0)
    fem1 = rate(lambda images: permeability(images, method="fem"), x[:n_fem])
    print(f"{'path':<36}{'images/s':>12}{'ms/image':>12}")
    for name, r in (
        ("MAC, 1 core", mac1),
        ("MAC, 2 cores (2 worker processes)", mac2),
        ("Taylor-Hood (scikit-fem), 1 core", fem1),
    ):
        print(f"{name:<36}{r:>12.1f}{1e3 / r:>12.2f}")
    print(f"MAC / Taylor-Hood speed ratio (1 core): {mac1 / fem1:.1f}x")
    n128 = 2 if quick else 10
    x128, source = samples(n128, size=128, seed=2)
    t0 = time.perf_counter()
    permeability(x128)
    print(f"MAC at 128^2 ({source}): {(time.perf_counter() - t0) / n128:.3f} s/image")
    print()


def accuracy_table(quick):
    num = 5 if quick else 20
    x, source = samples(num, seed=3)
    print(f"# MAC accuracy on {num} samples ({source}); relative error of k_xx, k_yy against the")
    print("# three-level Richardson value from refine (2, 3, 4) (itself within ~0.1 % median, ~2 %")
    print("# max of Taylor-Hood extrapolated, see tests); non-percolating entries skipped")
    ks = {r: permeability(x, refine=r) for r in (1, 2, 3, 4)}
    ref = extrapolate_permeability(x, refines=(2, 3, 4))
    rows = [
        ("refine 1", ks[1]),
        ("refine 2", ks[2]),
        ("refine 4", ks[4]),
        ("Richardson (1, 2), p = 1.25", extrapolate_permeability(x, refines=(1, 2))),
        ("Richardson (1, 2, 3), p = (1.09, 2)", extrapolate_permeability(x, refines=(1, 2, 3))),
    ]
    d_ref = torch.diagonal(ref, dim1=-2, dim2=-1)
    ok = d_ref > 0
    print(f"{'estimate':<38}{'median rel. err':>16}{'90% rel. err':>14}{'max':>10}")
    for name, k in rows:
        err = ((torch.diagonal(k, dim1=-2, dim2=-1) - d_ref).abs() / d_ref)[ok]
        print(f"{name:<38}{err.median().item():>16.4f}{err.quantile(0.9).item():>14.4f}"
              f"{err.max().item():>10.4f}")
    d1 = torch.diagonal(ks[1], dim1=-2, dim2=-1)
    print(f"ln k at refine 1 over percolating entries: min {d1[d1 > 0].log().min().item():.2f}, "
          f"max {d1[d1 > 0].log().max().item():.2f}; "
          f"{int((d1 == 0).sum())} of {d1.numel()} entries blocked")
    print()


def order_table(quick):
    num = 3 if quick else 10
    x, source = samples(num, seed=4)
    print(f"# observed convergence order in h, {num} samples: {source}")
    for method, refines in (("mac", (1, 2, 4)), ("fem", (1, 2, 3))):
        ks = [torch.diagonal(permeability(x, refine=r, method=method), dim1=-2, dim2=-1)
              for r in refines]
        d1, d2 = (ks[0] - ks[1]).abs(), (ks[1] - ks[2]).abs()
        ok = (d1 > 0) & (d2 > 0)
        ratio = (d1 / d2)[ok].numpy()
        orders = [_order(q, refines) for q in ratio]
        print(
            f"{method} refines {refines}: order median {np.nanmedian(orders):.2f}, range "
            f"[{np.nanmin(orders):.2f}, {np.nanmax(orders):.2f}] over {len(orders)} entries"
        )
    print()


def _order(ratio, refines):
    """p with (r1^-p - r2^-p) / (r2^-p - r3^-p) = ratio (bisection)."""
    r1, r2, r3 = refines

    def f(p):
        return (r1**-p - r2**-p) / (r2**-p - r3**-p) - ratio

    lo, hi = 0.05, 6.0
    if f(lo) * f(hi) > 0:
        return float("nan")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(lo) * f(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    parser.add_argument("--order", action="store_true", help="also measure convergence orders")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy/order tables only")
    parser.add_argument("--order-only", action="store_true", help="only the convergence orders")
    parser.add_argument("--speed-only", action="store_true", help="only the speed table")
    parser.add_argument("--brinkman-only", action="store_true",
                        help="only the Darcy-Brinkman-Stokes table")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cpus {os.cpu_count()}")
    if args.brinkman_only:
        brinkman_table(args.quick)
        return
    if not (args.skip_speed or args.order_only):
        speed_table(args.quick)
    if args.speed_only:
        return
    if not args.order_only:
        accuracy_table(args.quick)
    if args.order or args.order_only:
        order_table(args.quick)
    if not args.order_only:
        brinkman_table(args.quick)


if __name__ == "__main__":
    main()
