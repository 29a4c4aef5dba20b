"""Command-line interface: ``psppyro generate | train | design | evaluate | benchmark | demo``.

Each sub-command lives in its own pair of functions, ``_add_<name>(subparsers)`` (arguments) and
``_run_<name>(args)`` (work), and imports what it needs lazily so that ``psppyro --help`` is instant.

Example::

    $ psppyro demo --out demo_output
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


# --------------------------------------------------------------------------- demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="run the end-to-end demo and write its figures")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from psppyro.demo import run_demo

    run_demo(out=args.out, seed=args.seed)


# --------------------------------------------------------------------------- generate
def _add_generate(sub):
    p = sub.add_parser(
        "generate",
        help="generate (or resume) a named triad dataset",
        description="Generate a named triad dataset (phi, x, m) into a Zarr store, with a progress "
        "bar and a final summary. Re-running the same command on the same --out resumes an "
        "interrupted run. PRESET is a name of psppyro.data.DATASET_PRESETS, e.g. "
        "pspgen-case1-train, pspgen-case1-reference, rixner-o1-initial.",
    )
    p.add_argument("preset", metavar="PRESET", help="dataset preset name")
    p.add_argument("--out", required=True, help="path of the Zarr store (a folder)")
    p.add_argument("--scale", type=float, default=1.0, help="factor on the number of phi values")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: the preset's seed)")
    p.add_argument("--chunk-size", type=int, default=None, help="samples per chunk")
    p.set_defaults(func=_run_generate)


def _run_generate(args):
    import time

    import numpy as np

    from psppyro.data import dataset_preset, generate

    try:
        preset = dataset_preset(args.preset, scale=args.scale)
    except ValueError as err:
        print(f"psppyro generate: {err}", file=sys.stderr)
        return 2
    kwargs = preset.kwargs()
    if args.seed is not None:
        kwargs["seed"] = args.seed
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    print(
        f"{preset.name}: {kwargs['n_phi']} phi x {kwargs['per_phi']} = "
        f"{kwargs['n_phi'] * kwargs['per_phi']} samples ({kwargs['process']}, "
        f"{kwargs['properties']}, design {kwargs['design']}, seed {kwargs['seed']}) -> {args.out}"
    )
    start = time.perf_counter()
    try:
        ds = generate(
            **kwargs,
            path=args.out,
            client=client,
            workers=args.workers,
            chunk_size=args.chunk_size,
            progress=True,
        )
    finally:
        if client is not None:
            client.close()
    elapsed = time.perf_counter() - start
    n = ds.sizes["sample"]
    lines = [
        f"samples: {n}",
        f"time: {elapsed:.1f} s",
        f"samples/s: {n / elapsed:.1f} (all samples / this run's time; a resumed run counts "
        "earlier samples too)",
    ]
    if "percolates" in ds:
        perc = np.asarray(ds["percolates"].values)
        per_dir = ", ".join(
            f"{c}: {f:.3f}" for c, f in zip(ds["m_dim"].values.tolist(), perc.mean(axis=0))
        )
        lines.append(f"percolation fraction: {perc.mean():.3f} ({per_dir})")
    print("\n".join(lines))


# --------------------------------------------------------------------------- train
def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a learned model on a triad dataset",
        description="Train a learned link on a triad dataset written by `psppyro generate` and "
        "save it. METHOD 'pspgen' trains PSP-GEN (psppyro.models.PSPGen) with SVI; dimensions not "
        "given follow the paper's rules (d_z0 = 5%% of the pixels, d_z1 from the PCA of two-point "
        "correlations). Re-run with --resume and the same --checkpoint-dir to continue.",
    )
    p.add_argument("method", choices=("pspgen",), help="model to train")
    p.add_argument("--data", required=True, help="labelled training dataset (Zarr store)")
    p.add_argument("--out", required=True, help="file to write the trained model to (.pt)")
    p.add_argument("--val", default=None, help="labelled validation dataset (Zarr store)")
    p.add_argument("--unlabelled", default=None, help="unlabelled (phi, x) dataset (Zarr store)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=60, help="early-stopping patience (epochs)")
    p.add_argument("--beta", type=float, default=2.0, help="KL weight (beta-VAE)")
    p.add_argument("--d-z0", type=int, default=None, help="size of z0 (default: 5%% of pixels)")
    p.add_argument("--d-z1", type=int, default=None, help="size of z1 (default: PCA rule)")
    p.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args):
    from psppyro.data import open_dataset
    from psppyro.models import PSPGen

    train = open_dataset(args.data)
    val = open_dataset(args.val) if args.val else None
    unlabelled = open_dataset(args.unlabelled) if args.unlabelled else None
    if args.resume and not args.checkpoint_dir:
        raise SystemExit("psppyro train: --resume needs --checkpoint-dir")
    model = PSPGen.from_dataset(
        train, d_z0=args.d_z0, d_z1=args.d_z1, beta=args.beta, architecture=args.architecture
    )
    history = model.fit(
        train,
        val=val,
        unlabelled=unlabelled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=True if args.resume else None,
        seed=args.seed,
        progress=not args.no_progress,
        device=args.device,
    )
    model.save(args.out)
    last = len(history["loss"]) - 1
    print(
        f"PSP-GEN (d_z0={model.d_z0}, d_z1={model.d_z1}, beta={model.beta:g}): "
        f"{last + 1} epochs, best epoch {history['best_epoch']}, final loss "
        f"{history['loss'][last]:.4g} (rec-x {history['rec_x'][last]:.4g}, rec-m "
        f"{history['rec_m'][last]:.4g}, KL {history['kl'][last]:.4g}); saved to {args.out}"
    )


# --------------------------------------------------------------------------- main
_COMMANDS = (_add_demo, _add_generate, _add_train)


def build_parser():
    """The ``argparse`` parser of the ``psppyro`` command."""
    parser = argparse.ArgumentParser(
        prog="psppyro",
        description="Inverse design of random materials through the Process-Structure-Property chain.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv=None):
    """Entry point of the ``psppyro`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
