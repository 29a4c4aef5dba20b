"""Figure: convergence of the conductivity schemes on media with corner contacts.

Left: the 8-pixel checkerboard (exact K = √50, Dykhne). Right: four ``rixner64`` structures at
volume fraction 0.5 (φ ~ N(0, I), seeds 0/1), relative error of K_11 against the joint fit of both
schemes at the three finest levels (shared limit, terms h^q and h, q = corner_exponent = 0.358).
Curves: finite volumes (lower), Q1 (upper), their mean, and the extrapolated mean
2 mean(2r) − mean(r) plotted at its base level r; the dotted line has slope q.

Run::

    python benchmarks/plot_corner_convergence.py --out docs/results/figures/corner_convergence.png
    python benchmarks/plot_corner_convergence.py --max-refine 8      # quicker (refs 2, 4, 8)

``--cache FILE`` stores the solves in a JSON file and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch

from psppyro.process import preset
from psppyro.properties import conductivity, corner_exponent

PHASES = (1.0, 50.0)


def joint_limit(levels, lower, upper, q):
    h = 1.0 / np.asarray(levels, float)
    n, z = len(h), np.zeros(len(h))
    A = np.stack([np.ones(2 * n), np.r_[h**q, z], np.r_[z, h**q], np.r_[h, z], np.r_[z, h]], 1)
    y = np.concatenate([lower, upper], 0).reshape(2 * n, -1)
    return np.linalg.lstsq(A, y, rcond=None)[0][0].reshape(np.shape(lower)[1:])


def compute(max_refine):
    levels = [2**k for k in range(int(math.log2(max_refine)) + 1)]
    i = torch.arange(16)
    board = ((i[:, None] // 8 + i[None, :] // 8) % 2).double()
    proc = preset("rixner64")
    phi = torch.randn(4, proc.d_phi, generator=torch.Generator().manual_seed(0))
    x = proc.sample(phi, 1, seed=1)[:, 0].double()
    out = {"levels": levels}
    for name, img in (("board", board[None]), ("rixner", x)):
        for m in ("fft", "q1"):
            out[f"{name}_{m}"] = [conductivity(img, phases=PHASES, method=m, refine=r)[:, 0, 0]
                                  .tolist() for r in levels]
            print(name, m, "done", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-refine", type=int, default=16)
    parser.add_argument("--out", default="corner_convergence.png")
    parser.add_argument("--cache", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.cache and os.path.exists(args.cache):
        with open(args.cache) as f:
            data = json.load(f)
    else:
        data = compute(args.max_refine)
        if args.cache:
            with open(args.cache, "w") as f:
                json.dump(data, f)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.asarray(data["levels"], float)
    q = corner_exponent(PHASES)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, name in zip(axes, ("board", "rixner")):
        lo, up = np.asarray(data[f"{name}_fft"]), np.asarray(data[f"{name}_q1"])
        if name == "board":
            ref = np.full(lo.shape[1:], math.sqrt(PHASES[0] * PHASES[1]))
            title = "checkerboard, 8-px squares (exact √50)"
        else:
            ref = joint_limit(levels[-3:], lo[-3:], up[-3:], q)
            title = f"4 rixner64 structures (ref: joint fit r={int(levels[-3])}..{int(levels[-1])})"
        mean = 0.5 * (lo + up)
        ext = 2 * mean[1:] - mean[:-1]
        err = {"finite volumes (lower)": lo, "Q1 (upper)": up, "mean": mean}
        for label, v in err.items():
            e = np.abs(v / ref - 1.0)
            ax.loglog(levels, np.median(e, axis=1), "o-", label=label)
        e = np.abs(ext / ref - 1.0)
        ax.loglog(levels[:-1], np.median(e, axis=1), "s-", label="extrapolated (base r)")
        start = float(np.median(np.abs(lo[0] / ref - 1.0)))
        ax.loglog(levels, start * levels ** (-q), "k:", label=f"slope −q = −{q:.3f}")
        ax.axhline(0.02, color="grey", lw=0.8)
        ax.set_xlabel("refine r")
        ax.set_ylabel("|relative error| (median)")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
