"""What the vae-regression case loses by using 16³ volumes instead of the paper's 51³.

The filtered3d process keeps σ in voxels, so a 16³ volume is a smaller window of the same material
as a 51³ one: fewer grains per volume (C_11 scatters more from volume to volume) and the periodic
box constrains the longest grains. For a few filter families at a fixed hard-phase fraction this
prints the mean and standard deviation of C_11 over ``--volumes`` independent volumes per side, and
the mean's difference from the largest side's. (The discretization error of a side, the same voxels
solved on a 3× finer mesh, is the case's own ``resolution`` part.)

Usage::

    OMP_NUM_THREADS=1 python benchmarks/inversion_volume_size.py --sides 16 32 48 --volumes 8
"""

import argparse
import sys
import time

import torch

from psppyro._random import derive_seed
from psppyro.process import preset
from psppyro.properties import property_map

FAMILIES = ((1.0, 1.0, 1.0), (3.0, 3.0, 3.0), (7.0, 7.0, 7.0), (1.0, 1.0, 7.0), (7.0, 1.0, 1.0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[16, 32, 48])
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--volume-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pm = property_map("c11_3d")
    ref = max(args.sides)
    print(f"hard-phase fraction {args.volume_fraction}, {args.volumes} volumes per family and "
          "side; C_11 in GPa (mean ± sd over volumes)\n")
    print("| σ | " + " | ".join(f"{s}³" for s in args.sides) + " | "
          + " | ".join(f"mean {s}³ vs {ref}³" for s in args.sides if s != ref) + " |")
    print("|---" * (1 + 2 * len(args.sides) - 1) + "|")
    seconds = {s: 0.0 for s in args.sides}
    for i, sigma in enumerate(FAMILIES):
        stats = {}
        for side in args.sides:
            proc = preset("filtered3d", shape=(side,) * 3, volume_fraction=args.volume_fraction)
            x = proc.sample(torch.tensor(sigma), args.volumes, seed=derive_seed(args.seed, i, side))
            t0 = time.perf_counter()
            c = pm(x)[:, 0].float()
            seconds[side] += time.perf_counter() - t0
            stats[side] = (float(c.mean()), float(c.std()))
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in stats.values()]
        diffs = [f"{100 * (stats[s][0] - stats[ref][0]) / stats[ref][0]:+.1f} %"
                 for s in args.sides if s != ref]
        print(f"| {list(sigma)} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")
    n = len(FAMILIES) * args.volumes
    print("\nseconds per C_11: " + ", ".join(f"{s}³ {seconds[s] / n:.2f}" for s in args.sides))


if __name__ == "__main__":
    sys.exit(main())
