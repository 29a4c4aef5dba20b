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
   |k_r − k_2r| / |k_2r − k_4r| on refine 1, 2, 4 for MAC and 1, 2, 3 for Taylor–Hood).

Run::

    .venv/bin/python benchmarks/bench_permeability.py            # full figures
    .venv/bin/python benchmarks/bench_permeability.py --quick    # smoke run (small counts)
    .venv/bin/python benchmarks/bench_permeability.py --order    # also the convergence orders

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
from psppyro.properties import extrapolate_permeability, permeability  # noqa: E402


def samples(num, size=36, seed=0):
    """``num`` binary images of the pspgen preset at φ uniform in its box, and a description."""
    proc = preset("pspgen36" if size == 36 else "pspgen128")
    bounds = proc.phi_bounds.double()
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, bounds.shape[0], generator=gen, dtype=torch.float64)
    phi = bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])
    x = proc.sample(phi, num_samples=1, seed=seed).reshape(num, size, size).double()
    return x, f"pspgen{size} preset, phi uniform in its box"


def _solve_chunk(images):
    torch.set_num_threads(1)
    return permeability(torch.as_tensor(images)).numpy()


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
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cpus {os.cpu_count()}")
    if not (args.skip_speed or args.order_only):
        speed_table(args.quick)
    if args.speed_only:
        return
    if not args.order_only:
        accuracy_table(args.quick)
    if args.order or args.order_only:
        order_table(args.quick)


if __name__ == "__main__":
    main()
