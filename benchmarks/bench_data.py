"""Benchmark of triad-dataset generation (issue 4).

Prints plain-text tables of

1. wall time and samples/s for a dataset preset (default ``pspgen-case1-train``) at a reduced
   ``--scale``, with 1 and 2 local workers, projected to the full 10 000-triad training set
   (goal <= 3 min on a 2-core machine) and to the 200 000-triad reference set (goal <= 60 min);
2. the scaling from 1 to 2 workers;
3. peak memory (RSS) of the generating process for two dataset sizes (``--scale`` and 4x that):
   generation streams chunks to the store, so it must not grow with the size.

Every measurement runs in a fresh Python process (so imports, worker start-up and peak RSS are
those of a real run); the reported wall time is that of the ``generate`` call inside it, which
includes creating the store and starting the worker pool. The projections add that fixed cost to
N / (steady rate), where the steady rate is measured from the completion times of the chunks
(their markers), so small benchmark runs are not dominated by start-up.

Usage::

    python benchmarks/bench_data.py            # scale 0.05 (500 triads), about 1-2 minutes
    python benchmarks/bench_data.py --quick    # scale 0.005 (52 triads), smoke run
    python benchmarks/bench_data.py --preset rixner-o2-initial --scale 0.01
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


def _run(preset, scale, workers, folder):
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
    shutil.rmtree(path, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--preset", default="pspgen-case1-train")
    parser.add_argument("--scale", type=float, default=None, help="default 0.05 (quick: 0.005)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
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
        big_r = _run(args.preset, big, 1, folder)
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
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
