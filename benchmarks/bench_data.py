"""Benchmark of triad-dataset generation (issue 4).

Prints plain-text tables of

1. wall time and samples/s for a dataset preset (default ``pspgen-case1-train``) at a reduced
   ``--scale``, with 1 and 2 local workers, projected to the full 10 000-triad training set
   (goal <= 3 min on a 2-core machine) and to the 200 000-triad reference set (goal <= 60 min);
2. the scaling from 1 to 2 workers;
3. peak memory (RSS) of the generating process for two dataset sizes (``--scale`` and 4x that):
   generation streams chunks to the store, so it must not grow with the size;
4. the cost of the integrity checks when a store is opened: ``open_dataset`` (fingerprints of every
   chunk file), plain ``xarray.open_zarr`` (no check) and the full ``verify_dataset`` (decode and
   SHA-256 of everything), on the 4x store, or on any store given with ``--open PATH`` (e.g. the
   10 000-triad ``psppyro generate pspgen-case1-train --out train.zarr``).

Every measurement runs in a fresh Python process (so imports, worker start-up and peak RSS are
those of a real run); the reported wall time is that of the ``generate`` call inside it, which
includes creating the store and starting the worker pool. The projections add that fixed cost to
N / (steady rate), where the steady rate is measured from the completion times of the chunks
(their markers), so small benchmark runs are not dominated by start-up.

Usage::

    python benchmarks/bench_data.py            # scale 0.05 (500 triads), about 1-2 minutes
    python benchmarks/bench_data.py --quick    # scale 0.005 (52 triads), smoke run
    python benchmarks/bench_data.py --preset rixner-o2-initial --scale 0.01
    python benchmarks/bench_data.py --open train.zarr   # only the open/verify timings of a store
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(spec):
    """Run one generation in this process and print a JSON line with its figures."""
    sys.path.insert(0, ROOT)
    from psppyro.data import dataset_preset, generate

    preset = dataset_preset(spec["preset"], scale=spec["scale"])
    kwargs = preset.kwargs()
    start = time.perf_counter()
    ds = generate(**kwargs, path=spec["path"], workers=spec["workers"], progress=False)
    wall = time.perf_counter() - start
    n = int(ds.sizes["sample"])
    perc = float(ds["percolates"].mean()) if "percolates" in ds else float("nan")
    # Steady rate from the completion markers' times: samples after the first finished chunk over
    # the time between the first and the last marker (excludes imports, store creation, pool start).
    folder = os.path.join(spec["path"], "_psppyro", "chunks")
    marks = sorted(
        (os.stat(os.path.join(folder, f)).st_mtime, json.load(open(os.path.join(folder, f))))
        for f in os.listdir(folder)
        if f.endswith(".json")
    )
    span = marks[-1][0] - marks[0][0]
    later = n - (marks[0][1]["stop"] - marks[0][1]["start"])
    steady = later / span if span > 0 and later > 0 else n / wall
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "samples": n,
                "wall": wall,
                "rss_self_mb": self_kb / 1024,
                "rss_children_mb": children_kb / 1024,
                "percolation": perc,
                "steady_rate": steady,
            }
        )
    )


def _open_times(path, repeats=5):
    """Wall times [s] of opening ``path``: checked, plain xarray, and the full verification."""
    import xarray as xr

    from psppyro.data import describe_store, open_dataset, verify_dataset

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times), sorted(times)[len(times) // 2]

    t0 = time.perf_counter()
    open_dataset(path)
    first = time.perf_counter() - t0  # includes importing xarray, zarr and dask
    checked = best(lambda: open_dataset(path))
    plain = best(lambda: xr.open_zarr(path))
    t0 = time.perf_counter()
    verify_dataset(path)
    full = time.perf_counter() - t0
    info = describe_store(path)
    n_files = sum(len(files) for _, _, files in os.walk(path))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return {
        "samples": info["n_samples"],
        "chunks": info["n_chunks"],
        "files": n_files,
        "mib": size / 2**20,
        "first": first,
        "checked": checked,
        "plain": plain,
        "verify": full,
    }


def _print_open(path, r):
    print(
        f"\nopening {path}: {r['samples']} samples, {r['chunks']} chunks, {r['files']} files, "
        f"{r['mib']:.1f} MiB on disk"
    )
    print("operation                                   best [ms]  median [ms]")
    print(
        f"open_dataset (fingerprint check)            {r['checked'][0] * 1e3:9.1f}  "
        f"{r['checked'][1] * 1e3:11.1f}"
    )
    print(
        f"xarray.open_zarr (no check)                 {r['plain'][0] * 1e3:9.1f}  "
        f"{r['plain'][1] * 1e3:11.1f}"
    )
    print(f"first open_dataset in the process (imports) {r['first'] * 1e3:9.1f}")
    print(f"verify_dataset (decode + SHA-256, once)     {r['verify'] * 1e3:9.1f}")


def _run(preset, scale, workers, folder, keep=False):
    path = os.path.join(folder, f"{preset}-{scale}-{workers}.zarr")
    shutil.rmtree(path, ignore_errors=True)
    spec = json.dumps({"preset": preset, "scale": scale, "workers": workers, "path": path})
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", spec],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if keep:
        result["path"] = path
    else:
        shutil.rmtree(path, ignore_errors=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--preset", default="pspgen-case1-train")
    parser.add_argument("--scale", type=float, default=None, help="default 0.05 (quick: 0.005)")
    parser.add_argument(
        "--open",
        default=None,
        metavar="PATH",
        help="only time opening and verifying the store at PATH",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return
    if args.open:
        sys.path.insert(0, ROOT)
        print(f"# bench_data --open: load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
        _print_open(args.open, _open_times(args.open))
        return
    scale = args.scale or (0.005 if args.quick else 0.05)
    sys.path.insert(0, ROOT)
    from psppyro.data import dataset_preset

    full = dataset_preset(args.preset)
    print(
        f"# bench_data: {args.preset} at scale {scale} "
        f"({dataset_preset(args.preset, scale).n_samples} of {full.n_samples} triads)"
    )
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    folder = tempfile.mkdtemp(prefix="bench_data_")
    try:
        rows = {w: _run(args.preset, scale, w, folder) for w in (1, 2)}
        print()
        print(
            "workers  samples  wall [s]  samples/s  steady samples/s  fixed [s]"
            "  proj. 10 000 [min]  proj. 200 000 [min]  percolation"
        )
        for w, r in rows.items():
            rate, steady = r["samples"] / r["wall"], r["steady_rate"]
            fixed = max(0.0, r["wall"] - r["samples"] / steady)
            print(
                f"{w:7d}  {r['samples']:7d}  {r['wall']:8.2f}  {rate:9.1f}  {steady:16.1f}  "
                f"{fixed:9.1f}  {(fixed + 10_000 / steady) / 60:18.2f}  "
                f"{(fixed + 200_000 / steady) / 60:19.1f}  {r['percolation']:11.3f}"
            )
        print(
            "(steady rate: samples between the first and last chunk completion over that time; "
            "fixed: the rest of the wall time - imports, store creation, worker start-up; "
            "projection = fixed + N / steady rate)"
        )
        speedup = rows[2]["steady_rate"] / rows[1]["steady_rate"]
        print(
            f"\nscaling 1 -> 2 workers (steady rate): speed-up {speedup:.2f}x "
            f"(parallel efficiency {speedup / 2:.0%}); wall-time ratio "
            f"{rows[1]['wall'] / rows[2]['wall']:.2f}x"
        )
        print("goals: 10 000 triads <= 3 min, 200 000 triads <= 60 min (2-core machine)")

        big = scale * 4
        small_r = rows[1]
        big_r = _run(args.preset, big, 1, folder, keep=True)
        print("\npeak RSS of the generating process (1 worker, in-process):")
        print("samples  wall [s]  samples/s  peak RSS [MiB]")
        for r in (small_r, big_r):
            print(
                f"{r['samples']:7d}  {r['wall']:8.2f}  {r['samples'] / r['wall']:9.1f}  "
                f"{r['rss_self_mb']:14.0f}"
            )
        print(
            f"RSS growth for {big_r['samples'] / small_r['samples']:.1f}x the samples: "
            f"{big_r['rss_self_mb'] - small_r['rss_self_mb']:+.0f} MiB"
        )
        print(
            f"(2 workers: parent {rows[2]['rss_self_mb']:.0f} MiB, largest worker "
            f"{rows[2]['rss_children_mb']:.0f} MiB)"
        )
        _print_open(big_r["path"], _open_times(big_r["path"]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
