"""Benchmark of the one-shot inversion methods (issue 14): VAE-Regression and GAN + MDN.

Runs :func:`psppyro.cases.inversion.run_protocol` with the protocol of ``--scale`` and any size
overridden on the command line, and prints the Markdown tables it writes (``results.md``, paper
numbers beside ours, per-stage wall times) into ``--out/<case>``.

Usage::

    # the runs of docs/results/inversion.md (forward and inverse as two processes; 20-40 min each)
    OMP_NUM_THREADS=1 python benchmarks/bench_inversion.py --case vae-regression --scale 0.05 \\
        --per-family 16 --seeds 3 --epochs 60 --width 256 --parts forward,resolution
    OMP_NUM_THREADS=1 python benchmarks/bench_inversion.py --case vae-regression --scale 0.05 \\
        --bimodal-per-family 150 --inverse-seeds 3 --epochs 60 --width 256 --parts inverse
    OMP_NUM_THREADS=1 python benchmarks/bench_inversion.py --case gan-mdn --scale 1 \\
        --gan-images 5000 --channels 64,32,16,8 --labelled 5000 --opt-iterations 40
    # the paper's protocol (51^3, 8 900 volumes, 10 seeds; days on a CPU)
    python benchmarks/bench_inversion.py --case vae-regression --scale 1
    python benchmarks/bench_inversion.py --case gan-mdn --scale 1

Equivalently ``psppyro benchmark vae-regression --scale S`` runs the unmodified protocol.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from psppyro.cases import inversion

OVERRIDES = {
    "vae-regression": ("side", "grid_points", "per_family", "bimodal_per_family", "epochs",
                       "seeds", "width", "latent_dim", "components", "reconstruction",
                       "refine_steps", "targets", "resolution_volumes", "patience", "inverse_seeds",
                       "parts", "style_weight"),
    "gan-mdn": ("gan_images", "labelled", "gan_epochs", "mdn_epochs", "samples", "opt_init",
                "opt_iterations", "opt_offspring", "latent_dim", "components", "channels",
                "instance_noise"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=inversion.CASE_NAMES, required=True)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/inversion"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    for key in sorted({k for v in OVERRIDES.values() for k in v}):
        kind = {"reconstruction": str, "parts": lambda v: v.split(","), "style_weight": float,
                "instance_noise": float,
                "channels": lambda v: [int(c) for c in v.split(",")]}.get(key, int)
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    proto = inversion.protocol(args.case, args.scale)
    for key in OVERRIDES[args.case]:
        value = getattr(args, key)
        if value is not None:
            proto[key] = value
    print("protocol:", proto, flush=True)
    t0 = time.perf_counter()
    inversion.run_protocol(proto, args.out / args.case, seed=args.seed, progress=args.progress)
    print((args.out / args.case / "results.md").read_text())
    print(f"total {time.perf_counter() - t0:.0f} s (threads={args.threads}; shared machine)")


if __name__ == "__main__":
    sys.exit(main())
