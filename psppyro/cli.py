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


# --------------------------------------------------------------------------- main
_COMMANDS = (_add_demo, _add_generate)


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
