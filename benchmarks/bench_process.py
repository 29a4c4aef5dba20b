"""Throughput of the process–structure link (issue 2): prints a plain-text table.

Rows:

* Cahn–Hilliard kernel on a batch of "pspgen36" images (36², 250 steps at the validated Δt = 0.02),
  in image-steps per second, float64 and float32, against the raw throughput of the same batched
  forward + inverse real FFTs (``torch.fft.rfft2`` / ``irfft2``) measured in the same run — one pair
  per step is the physical limit of the scheme — and against a plain per-image NumPy loop of the
  same scheme (whose result is checked against the torch solver);
* end-to-end microstructures per second: "pspgen36" (GRF + Cahn–Hilliard, batched), "rixner64"
  relaxed (``threshold="relaxed"``), and seconds per 51³ "filtered3d" sample.

Timings are the best of ``--repeats`` runs (the minimum is the least disturbed by other processes on
a shared machine; on a busy machine also try ``--threads 1``: oversubscribed OpenMP threads can
make every row 10-100x slower). Usage::

    .venv/bin/python benchmarks/bench_process.py              # full (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_process.py --quick      # smoke run, seconds
    .venv/bin/python benchmarks/bench_process.py --device cuda --batch 4096
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from psppyro.process import CahnHilliard, preset


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_time(fn, repeats, sync):
    fn()  # warm-up (plans, caches)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_cahn_hilliard(c0, ch):
    """The same scheme as ``CahnHilliard``, one image at a time in plain NumPy (float64)."""
    n = c0.shape[-1]
    ky = 2 * np.pi * np.fft.fftfreq(c0.shape[-2], d=ch.dx)
    kx = 2 * np.pi * np.fft.rfftfreq(n, d=ch.dx)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    denom = 1 + ch.dt * ch.D * k2 * (ch.stabilization + ch.gamma * k2)
    a = (1 + ch.dt * ch.D * ch.stabilization * k2) / denom
    b = -ch.dt * ch.D * k2 / denom
    out = np.empty_like(c0)
    for i in range(c0.shape[0]):
        c = c0[i]
        c_hat = np.fft.rfft2(c)
        for _ in range(ch.steps):
            c_hat = a * c_hat + b * np.fft.rfft2(c**3 - c)
            c = np.fft.irfft2(c_hat, s=c.shape)
        out[i] = c
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="psppyro process benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--batch", type=int, default=None, help="CH batch (default 256)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = args.batch or (32 if args.quick else 256)
    repeats = args.repeats or (1 if args.quick else 3)
    numpy_images = 2 if args.quick else 8
    rows = []

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))

    # ---------------------------------------------------------------- CH kernel vs FFT limit
    grf = preset("pspgen36", phase_field=None)
    bounds = grf.phi_bounds.to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    phi = bounds[:, 0] + torch.rand(batch, 2, generator=gen, dtype=torch.float64) * (
        bounds[:, 1] - bounds[:, 0])
    x = grf.sample(phi.to(device), num_samples=1, seed=0)[:, 0].to(torch.float64)
    c0 = 2 * x - 1
    ch = CahnHilliard()
    ch32 = CahnHilliard(precision="float32")
    steps = ch.steps
    image_steps = batch * steps

    t64 = best_time(lambda: ch.evolve(c0), repeats, sync)
    t32 = best_time(lambda: ch32.evolve(c0.float()), repeats, sync)

    def fft_pairs(c, n_pairs, chunk=None):
        chunk = chunk or c.shape[0]
        for start in range(0, c.shape[0], chunk):
            part = c[start : start + chunk].contiguous()
            for _ in range(n_pairs):
                torch.fft.irfft2(torch.fft.rfft2(part), s=part.shape[-2:])

    pairs = 25  # FFT pairs timed per repeat (rate is per pair; the loop length does not matter)
    cpu_chunk = max(1, 2**16 // (36 * 36)) if device.type == "cpu" else None
    fft64 = best_time(lambda: fft_pairs(c0, pairs), repeats, sync) / pairs
    fft32 = best_time(lambda: fft_pairs(c0.float(), pairs), repeats, sync) / pairs
    rows.append(("CH 36² float64 (evolve)", f"{image_steps / t64:,.0f}", "image-steps/s",
                 f"batch {batch}, {steps} steps, {t64 / batch * 1e3:.2f} ms/image"))
    rows.append(("CH 36² float32 (evolve)", f"{image_steps / t32:,.0f}", "image-steps/s",
                 f"{t32 / batch * 1e3:.2f} ms/image"))
    rows.append(("raw rfft2+irfft2 float64", f"{batch / fft64:,.0f}", "image-pairs/s",
                 f"same batch shape; limit/CH = {(batch / fft64) / (image_steps / t64):.2f}x"))
    rows.append(("raw rfft2+irfft2 float32", f"{batch / fft32:,.0f}", "image-pairs/s",
                 f"limit/CH32 = {(batch / fft32) / (image_steps / t32):.2f}x"))
    if cpu_chunk and cpu_chunk < batch:
        fftc = best_time(lambda: fft_pairs(c0, pairs, cpu_chunk), repeats, sync) / pairs
        rows.append((f"raw FFT pairs float64, chunks of {cpu_chunk}", f"{batch / fftc:,.0f}",
                     "image-pairs/s",
                     f"cache-sized chunks as CH uses; limit/CH = "
                     f"{(batch / fftc) / (image_steps / t64):.2f}x"))

    c0_np = c0[:numpy_images].cpu().numpy()
    t0 = time.perf_counter()
    c_np = numpy_cahn_hilliard(c0_np, ch)
    rate_np = numpy_images * steps / (time.perf_counter() - t0)
    check = float(np.abs(c_np - ch.evolve(c0[:numpy_images]).cpu().numpy()).max())
    rows.append(("NumPy per-image loop (same scheme)", f"{rate_np:,.0f}", "image-steps/s",
                 f"{numpy_images} images; torch CH float64 is {image_steps / t64 / rate_np:.1f}x "
                 f"faster; max|c_numpy - c_torch| = {check:.1e}"))

    # ---------------------------------------------------------------- end to end
    proc = preset("pspgen36")
    t = best_time(lambda: proc.sample(phi.to(device), num_samples=1, seed=1), repeats, sync)
    rows.append(("pspgen36 (GRF + CH, dt=0.02)", f"{batch / t:,.1f}", "microstructures/s",
                 f"batch {batch} (one per phi)"))
    t = best_time(lambda: grf.sample(phi.to(device), num_samples=1, seed=1), repeats, sync)
    rows.append(("pspgen36 GRF only (no CH)", f"{batch / t:,.1f}", "microstructures/s", ""))

    rix = preset("rixner64")
    n_rix = 32 if args.quick else 256
    phi_rix = torch.randn(n_rix, rix.d_phi, generator=gen, dtype=torch.float64).to(device)
    t = best_time(lambda: rix.sample(phi_rix, num_samples=1, seed=2, threshold="relaxed"),
                  repeats, sync)
    rows.append(("rixner64 relaxed", f"{n_rix / t:,.1f}", "microstructures/s", f"batch {n_rix}"))

    f3d = preset("filtered3d")
    n3d = 1 if args.quick else 4
    phi3 = torch.tensor([[1.0, 3.0, 7.0]], dtype=torch.float64).expand(n3d, 3).to(device)
    t = best_time(lambda: f3d.sample(phi3, num_samples=1, seed=3), repeats, sync)
    rows.append(("filtered3d 51³", f"{t / n3d:.3f}", "s/sample", f"batch {n3d}"))

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'benchmark':<{width}}  {'value':>14}  {'unit':<18}  notes")
    print("-" * (width + 60))
    for name, value, unit, note in rows:
        print(f"{name:<{width}}  {value:>14}  {unit:<18}  {note}")


if __name__ == "__main__":
    main()
