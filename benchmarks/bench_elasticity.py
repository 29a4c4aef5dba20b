"""Benchmark: effective elasticity (Q1 voxel FEM, FFT-preconditioned batched CG) — speed, accuracy.

Prints plain-text tables:

1. 2-D throughput, batched: images/s for the full 3×3 plane-strain tensor at 36² and 64², float64
   and float32, E = (1, 50), ν = 0.3, with mean and maximum CG iterations per load case, for Q1
   (``fft``), the staggered grid (``staggered``) and the extrapolated mean of the two
   (``extrapolated``, what ``rixner_o1`` uses); the scikit-fem P2 cross-check (``method="fem"``)
   at 36² for comparison. Accuracy on corner-rich media: ``bench_property_accuracy.py``.
2. 3-D: seconds per volume at 32³ and 51³ for C_11 alone (``columns=(0,)``, one load case) and for
   the full 6×6 tensor, E = (2.4, 120), ν = 0.3, float64 and float32.
3. Accuracy on 20 ``psppyro.process.preset("pspgen36")`` samples (φ uniform in its box): median
   relative error of ``refine=1`` and ``refine=2`` against the Richardson-extrapolated value
   C_ext = C(4) - (C(2) - C(4)) / (2^p - 1), with the order p fitted per sample from refine 1, 2, 4
   (the median p is printed too), for C_11, C_12, C_33 and κ2 = (C_11 + C_22)/2; and the P2 FEM at
   refine 2 against the same extrapolated value (a second discretization).

Run::

    python benchmarks/bench_elasticity.py            # full figures (several minutes on 2 cores)
    python benchmarks/bench_elasticity.py --quick    # smoke run (small sizes, few samples)
    python benchmarks/bench_elasticity.py --device cuda --threads 2
    python benchmarks/bench_elasticity.py --skip-fem --skip-accuracy

Images for the speed rows are thresholded Gaussian-smoothed noise (volume fraction 0.5, smoothing
length 2 px), so the timings do not depend on the process layer.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
from _timing import timed  # noqa: E402

from psppyro.properties.elasticity import elasticity

YOUNGS_2D = (1.0, 50.0)
YOUNGS_3D = (2.4, 120.0)
POISSON = 0.3


def smoothed_noise_media(num, size, ndim=2, length=2.0, seed=0):
    """Binary media: white noise smoothed by exp(-|k|^2 l^2 / 2), thresholded at the median."""
    g = torch.Generator().manual_seed(seed)
    shape = (num,) + (size,) * ndim
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    k = 2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64)
    k2 = sum(k.reshape((-1,) + (1,) * (ndim - 1 - a)) ** 2 for a in range(ndim))
    dims = tuple(range(-ndim, 0))
    field = torch.fft.ifftn(torch.fft.fftn(noise, dim=dims) * torch.exp(-0.5 * k2 * length**2),
                            dim=dims).real.reshape(num, -1)
    return (field > field.median(dim=1, keepdim=True).values).double().reshape(shape)


def throughput_2d(args, device):
    print("\n== 2-D throughput: plane strain, E = (1, 50), nu = 0.3, full 3x3 tensor ==")
    print(f"{'size':>6} {'method':>12} {'dtype':>8} {'batch':>6} {'images/s':>10} "
          f"{'ms/image':>9} {'CG it mean':>10} {'CG it max':>9}")
    batch = 8 if args.quick else args.batch
    for size in (36, 64):
        x = smoothed_noise_media(batch, size, seed=size).to(device)
        # fft = Q1 (upper), staggered = staggered grid (lower), extrapolated = the rixner_o1
        # estimate (both at refine 1 and 2; iterations summed over its 4 solves)
        for method in ("fft", "staggered", "extrapolated"):
            for dtype in (torch.float64, torch.float32):
                def run(x=x, dtype=dtype, method=method):
                    return elasticity(x.to(dtype), youngs=YOUNGS_2D, poisson=POISSON,
                                      method=method, dtype=dtype, return_info=True)
                sec, (_, info) = timed(run, device, 1 if args.quick else 2)
                it = info["iterations"].double()
                print(f"{size:>5}² {method:>12} {str(dtype)[6:]:>8} {batch:>6} "
                      f"{batch / sec:>10.1f} {1e3 * sec / batch:>9.2f} "
                      f"{float(it.mean()):>10.1f} {int(it.max()):>9d}")
    if not args.skip_fem:
        n_fem = 1 if args.quick else 4
        x = smoothed_noise_media(n_fem, 36, seed=36)
        t0 = time.perf_counter()
        elasticity(x, youngs=YOUNGS_2D, poisson=POISSON, method="fem")
        sec = time.perf_counter() - t0
        print(f"{36:>5}² {'P2 fem':>8} {n_fem:>6} {n_fem / sec:>10.2f} {1e3 * sec / n_fem:>9.1f} "
              f"{'(sparse LU)':>20}")


def timings_3d(args, device):
    print("\n== 3-D: seconds per volume, E = (2.4, 120), nu = 0.3 ==")
    print(f"{'size':>6} {'dtype':>8} {'batch':>6} {'C11 s/vol':>10} {'full s/vol':>11} "
          f"{'it C11':>7} {'it max full':>11}")
    sizes = (16, 24) if args.quick else (32, 51)
    for size in sizes:
        batch = 2
        x = smoothed_noise_media(batch, size, ndim=3, seed=size).to(device)
        for dtype in (torch.float64, torch.float32):
            def c11(x=x, dtype=dtype):
                return elasticity(x.to(dtype), youngs=YOUNGS_3D, poisson=POISSON, ndim=3,
                                  dtype=dtype, columns=(0,), return_info=True)

            def full(x=x, dtype=dtype):
                return elasticity(x.to(dtype), youngs=YOUNGS_3D, poisson=POISSON, ndim=3,
                                  dtype=dtype, return_info=True)
            s1, (C1, info1) = timed(c11, device, 1)
            s6, (C6, info6) = timed(full, device, 1)
            assert torch.allclose(C1[..., 0], C6[..., 0], rtol=1e-3)
            print(f"{size:>5}³ {str(dtype)[6:]:>8} {batch:>6} {s1 / batch:>10.3f} "
                  f"{s6 / batch:>11.3f} {int(info1['iterations'].max()):>7d} "
                  f"{int(info6['iterations'].max()):>11d}")


def accuracy(args, device):
    from psppyro.process import preset

    num = 4 if args.quick else 20
    proc = preset("pspgen36")
    g = torch.Generator().manual_seed(0)
    bounds = proc.phi_bounds.double()
    phi = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * torch.rand(num, 2, generator=g,
                                                                    dtype=torch.float64)
    x = proc.sample(phi, num_samples=1, seed=0).reshape(num, 36, 36).double()
    print(f"\n== Accuracy: {num} pspgen36 samples (phase-1 fraction {float(x.mean()):.3f}), "
          "plane strain, E = (1, 50), nu = 0.3 ==")
    C = {r: elasticity(x.to(device), youngs=YOUNGS_2D, poisson=POISSON, refine=r).cpu()
         for r in (1, 2, 4)}
    quantities = {
        "C_11": lambda c: c[..., 0, 0],
        "C_12": lambda c: c[..., 0, 1],
        "C_33": lambda c: c[..., 2, 2],
        "kappa2": lambda c: 0.5 * (c[..., 0, 0] + c[..., 1, 1]),
    }
    fem = None
    if not args.skip_fem:
        n_fem = 2 if args.quick else 5
        fem = elasticity(x[:n_fem], youngs=YOUNGS_2D, poisson=POISSON, refine=2, method="fem")
    print(f"{'quantity':>8} {'order p':>8} {'err r=1':>9} {'err r=2':>9} {'err r=4':>9}"
          + (f" {'P2 r=2':>9}" if fem is not None else ""))
    for name, q in quantities.items():
        q1, q2, q4 = (q(C[r]) for r in (1, 2, 4))
        p = torch.log2((q1 - q2) / (q2 - q4))
        ext = q4 - (q2 - q4) / (2**p - 1)
        errs = [float(((qr - ext).abs() / ext.abs()).median()) for qr in (q1, q2, q4)]
        line = (f"{name:>8} {float(p.median()):>8.2f} {errs[0]:>9.2%} {errs[1]:>9.2%} "
                f"{errs[2]:>9.2%}")
        if fem is not None:
            e = ((q(fem) - ext[: fem.shape[0]]).abs() / ext[: fem.shape[0]].abs()).median()
            line += f" {float(e):>9.2%}"
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--skip-fem", action="store_true", help="skip the scikit-fem rows")
    parser.add_argument("--skip-accuracy", action="store_true", help="skip the accuracy table")
    parser.add_argument("--batch", type=int, default=64, help="2-D batch size (default 64)")
    parser.add_argument("--skip-3d", action="store_true", help="skip the 3-D timings")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"bench_elasticity: torch {torch.__version__}, device {device} ({name}), "
          f"{torch.get_num_threads()} threads{' [quick]' if args.quick else ''}")
    throughput_2d(args, device)
    if not args.skip_3d:
        timings_3d(args, device)
    if not args.skip_accuracy:
        accuracy(args, device)


if __name__ == "__main__":
    main()
