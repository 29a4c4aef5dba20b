"""Benchmark: effective conductivity (FFT-preconditioned batched CG) — speed and accuracy.

Prints plain-text tables:

1. 2-D throughput, batched: images/s at 36² and 64², float32 and float64, contrast 50, with the mean
   and maximum CG iterations (per load case), for the finite volumes (``fft``), the matrix-free Q1
   (``q1``) and the extrapolated bracket mean of the rixner maps (``extrapolated``), and the
   scikit-fem Q1 path for comparison (36²). Accuracy on corner-rich media:
   ``bench_property_accuracy.py``.
2. 3-D: seconds per 32³ volume (batched), float32 and float64.
3. Accuracy: median relative error of ``refine=1`` and ``refine=2`` against Richardson-extrapolated
   values K_ext = K(4) + (K(4) - K(2)) / (2^p - 1) on 20 "pspgen36" samples, for the FV solver and
   the Q1 cross-check, with p the median observed order log2((K(1) - K(2)) / (K(2) - K(4))), and
   the gap between the two methods' extrapolated values.

Run::

    python benchmarks/bench_conductivity.py            # full figures (a few minutes on 2 cores)
    python benchmarks/bench_conductivity.py --quick    # smoke run
    python benchmarks/bench_conductivity.py --device cuda --threads 2

Images for the speed rows are thresholded Gaussian-filtered noise (volume fraction 0.5, correlation
length 2 px), so the timings do not depend on the process layer; the accuracy rows use
``psppyro.process.preset("pspgen36")`` with φ drawn uniformly in its box.
"""

from __future__ import annotations

import argparse
import math
import platform

import torch
from _timing import timed  # noqa: E402

from psppyro.properties.conductivity import conductivity

PHASES = (1.0, 50.0)


def smoothed_noise_media(num, size, ndim=2, sigma=2.0, volume_fraction=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (num,) + (size,) * ndim
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    freq = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    k2 = sum(freq.reshape((-1,) + (1,) * (ndim - 1 - a)) ** 2 for a in range(ndim))
    dims = tuple(range(-ndim, 0))
    gauss = torch.exp(-2 * (math.pi * sigma / size) ** 2 * k2)
    field = torch.fft.ifftn(torch.fft.fftn(noise, dim=dims) * gauss, dim=dims).real.reshape(num, -1)
    x = torch.zeros_like(field)
    x.scatter_(1, field.argsort(dim=1)[:, : round(volume_fraction * field.shape[1])], 1.0)
    return x.reshape(shape).float()


def throughput_2d(args, device):
    print(f"\n2-D conductivity, contrast {PHASES[1] / PHASES[0]:g}, batched on {device}")
    print(f"{'size':>6} {'method':>12} {'dtype':>8} {'batch':>6} {'images/s':>10} "
          f"{'ms/image':>9} {'iter mean':>9} {'iter max':>8}")
    for size in (36, 64):
        batch = args.batch if size == 36 else max(1, args.batch // 2)
        x = smoothed_noise_media(batch, size, seed=size).to(device)
        # fft = finite volumes (lower bound), q1 = matrix-free Q1 (upper bound), extrapolated =
        # the rixner maps' estimate (both at refine 1 and 2; iterations summed over its 4 solves)
        for method in ("fft", "q1", "extrapolated"):
            for dtype in (torch.float32, torch.float64):
                t, (_, info) = timed(lambda x=x, dtype=dtype, method=method: conductivity(
                    x, phases=PHASES, method=method, dtype=dtype, return_info=True), device,
                    args.repeats)
                it = info["iterations"].float()
                print(f"{size:>4}^2 {method:>12} {str(dtype)[6:]:>8} {batch:>6} "
                      f"{batch / t:>10.0f} {1e3 * t / batch:>9.3f} {it.mean().item():>9.1f} "
                      f"{int(it.max()):>8}")
    if args.skip_fem:
        return
    n_fem = 4 if args.quick else 16
    x = smoothed_noise_media(n_fem, 36, seed=36)
    t, _ = timed(lambda: conductivity(x, phases=PHASES, method="fem"), torch.device("cpu"), 1)
    print(f"  36^2  Q1 FEM (scikit-fem, sparse LU, cpu): {n_fem / t:.1f} images/s, "
          f"{1e3 * t / n_fem:.1f} ms/image")


def timing_3d(args, device):
    size = 16 if args.quick else 32
    batch = 2 if args.quick else 4
    print(f"\n3-D conductivity {size}^3, batch {batch}, on {device}")
    print(f"{'dtype':>8} {'s/volume':>9} {'iter mean':>9} {'iter max':>8}")
    x = smoothed_noise_media(batch, size, ndim=3, sigma=1.5, seed=3).to(device)
    for dtype in (torch.float32, torch.float64):
        t, (_, info) = timed(lambda dtype=dtype: conductivity(
            x, phases=PHASES, ndim=3, dtype=dtype, return_info=True), device, 1)
        it = info["iterations"].float()
        print(f"{str(dtype)[6:]:>8} {t / batch:>9.3f} {it.mean().item():>9.1f} {int(it.max()):>8}")


def accuracy(args, device):
    from psppyro.process import preset

    num = 5 if args.quick else 20
    proc = preset("pspgen36")
    g = torch.Generator().manual_seed(2024)
    lo, hi = proc.phi_bounds[:, 0], proc.phi_bounds[:, 1]
    phi = lo + (hi - lo) * torch.rand(num, lo.shape[0], generator=g)
    x = proc.sample(phi, num_samples=1, seed=7)[:, 0]
    print(f"\nAccuracy on {num} 'pspgen36' samples (contrast 50; diagonal entries K_11, K_22); "
          f"reference: Richardson extrapolation from refine 2 and 4,\n  with the median observed "
          f"order p")
    print(f"{'method':>8} {'median rel err r=1':>19} {'r=2':>8} {'max r=1':>8} {'max r=2':>8} "
          f"{'order p (median)':>17}")
    extrapolated = {}
    for method in ("fft", "fem"):
        refines = (1, 2) if (method == "fem" and args.quick) else (1, 2, 4)
        vals = {}
        for r in refines:
            K = conductivity(x.to(device) if method == "fft" else x, phases=PHASES, method=method,
                             refine=r).cpu()
            vals[r] = torch.diagonal(K, dim1=-2, dim2=-1)
        if 4 not in vals:
            print(f"{method:>8}  (skipped in --quick)")
            continue
        order = torch.log2((vals[1] - vals[2]) / (vals[2] - vals[4])).flatten().nanmedian()
        ext = vals[4] + (vals[4] - vals[2]) / (2.0 ** order - 1.0)
        extrapolated[method] = ext
        err1 = ((vals[1] - ext).abs() / ext).flatten()
        err2 = ((vals[2] - ext).abs() / ext).flatten()
        print(f"{method:>8} {err1.median().item():>19.2%} {err2.median().item():>8.2%} "
              f"{err1.max().item():>8.2%} {err2.max().item():>8.2%} {order.item():>17.2f}")
    if len(extrapolated) == 2:
        gap = ((extrapolated["fft"] - extrapolated["fem"]).abs() / extrapolated["fem"]).flatten()
        print(f"  FV vs Q1 extrapolated values: median {gap.median().item():.3%}, "
              f"max {gap.max().item():.3%} relative difference")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--device", default="cpu", help="torch device for the FV solver")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=None, help="images per batch at 36²")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (best is shown)")
    parser.add_argument("--skip-accuracy", action="store_true", help="no accuracy table")
    parser.add_argument("--skip-fem", action="store_true", help="no scikit-fem timing row")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.batch is None:
        args.batch = 32 if args.quick else 512
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"bench_conductivity: torch {torch.__version__}, device {device} ({name or 'cpu'}), "
          f"threads {torch.get_num_threads()}")
    throughput_2d(args, device)
    timing_3d(args, device)
    if not args.skip_accuracy:
        accuracy(args, device)


if __name__ == "__main__":
    main()
