"""All structure–property benchmarks in one run (issue 3's ``bench_properties.py``).

Runs, one after the other and each in its own interpreter (so thread settings do not leak):

- ``bench_permeability.py``  — MAC vs Taylor–Hood Stokes: images/s, ratio, 128², accuracy table;
- ``bench_conductivity.py``  — FFT-preconditioned CG: images/s at 36²/64², 3-D, accuracy table;
- ``bench_elasticity.py``    — Q1 matrix-free CG: images/s at 36²/64², 3-D C11, accuracy table;
- ``bench_property_accuracy.py`` — conductivity and elasticity against converged values on
  rixner64 (corner contacts), pspgen36 and a checkerboard: lower/upper schemes, the extrapolated
  bracket mean of the rixner maps, cost per image (``docs/results/property_accuracy.md``).

Run::

    .venv/bin/python benchmarks/bench_properties.py            # full figures (about 15 minutes)
    .venv/bin/python benchmarks/bench_properties.py --quick    # smoke run

Extra arguments after ``--`` go to every sub-benchmark (e.g. ``-- --skip-accuracy``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ("bench_permeability.py", "bench_conductivity.py", "bench_elasticity.py",
         "bench_property_accuracy.py")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every part")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for every part")
    args = parser.parse_args(argv)
    extra = [a for a in args.rest if a != "--"]
    if args.quick:
        extra = ["--quick", *extra]
    failed = []
    for part in PARTS:
        print(f"\n===== {part} {' '.join(extra)} =====", flush=True)
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, os.path.join(HERE, part), *extra])
        print(f"===== {part}: exit {rc}, {time.perf_counter() - t:.0f} s =====", flush=True)
        if rc:
            failed.append(part)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
