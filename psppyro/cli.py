"""Command-line interface: ``psppyro generate | train | design | evaluate | benchmark | demo``.

Each sub-command lives in its own pair of functions, ``_add_<name>(subparsers)`` (arguments) and
``_run_<name>(args)`` (work), and imports what it needs lazily so that ``psppyro --help`` is
instant.

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
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of about a minute")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default: all)")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from psppyro.demo import run_demo

    run_demo(out=args.out, seed=args.seed, quick=args.quick, workers=args.workers)


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


# --------------------------------------------------------------------------- design
def _parse_options(items):
    """``key=value`` strings → dict; values parsed as Python literals when possible."""
    import ast

    out = {}
    for item in items or ():
        if "=" not in item:
            raise SystemExit(f"psppyro: --option must look like key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def _add_target_args(p):
    p.add_argument("--low", type=float, nargs="+", help="lower corner of the target box M_d")
    p.add_argument("--high", type=float, nargs="+", help="upper corner of the target box M_d")
    p.add_argument("--target-value", type=float, nargs="+", default=None,
                   help="target value m_t (utility exp(-tau |m - m_t|^2)) instead of a box")
    p.add_argument("--tau", type=float, default=1.0, help="sharpness of --target-value")


def _target_from_args(args):
    from psppyro.design import Box, TargetValue

    if args.target_value is not None:
        return TargetValue(args.target_value, tau=args.tau)
    if args.low is None or args.high is None:
        raise SystemExit("psppyro: give --low and --high (a box) or --target-value")
    return Box(args.low, args.high)


def _add_design(sub):
    p = sub.add_parser(
        "design",
        help="design processing parameters phi for a target with a trained model",
        description="Run psppyro.infer_design on a trained PSP-GEN model (saved by `psppyro "
        "train`) and print the result; optionally check phi* by true simulation.",
    )
    p.add_argument("--model", required=True, help="trained model file (PSPGen.save)")
    _add_target_args(p)
    p.add_argument("--method", choices=("sga", "svi", "nuts", "flow"), default="sga")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option, e.g. --option epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--process", default=None,
                   help="process preset for a simulation check of phi* (e.g. pspgen36)")
    p.add_argument("--properties", default="log_permeability", help="property map of the check")
    p.add_argument("--num-samples", type=int, default=200, help="simulations for the check")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_design)


def _run_design(args):
    import json

    import psppyro as pp
    from psppyro.models import PSPGen

    model = PSPGen.load(args.model)
    target = _target_from_args(args)
    options = _parse_options(args.option)
    options.setdefault("progress", not args.no_progress)
    res = pp.infer_design(model, target, method=args.method, seed=args.seed, **options)
    print(res.summary())
    out = {
        "method": res.method,
        "target": target.config(),
        "phi_star": res.phi_star.tolist(),
        res.objective: res.probability,
        f"{res.objective}_se": res.probability_se,
        "diagnostics": res.diagnostics,
        "wall_time": res.wall_time,
    }
    if args.process:
        value, se = pp.design.evaluate(
            res.phi_star, pp.process.preset(args.process), args.properties, target,
            num_samples=args.num_samples, seed=args.seed + 1, workers=args.workers,
        )
        out["simulated"] = float(value)
        out["simulated_se"] = float(se)
        print(f"  simulated {res.objective} at phi_star: {float(value):.4g} ± {float(se):.2g}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2, default=float)


# --------------------------------------------------------------------------- evaluate
def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="true-simulator objective at given phi (P(m in M_d | phi) with its s.e.)",
        description="Simulate the process and property solver at phi and report the target "
        "probability (binomial s.e.) or expected utility.",
    )
    p.add_argument("--process", required=True, help="process preset, e.g. pspgen36")
    p.add_argument("--properties", default="log_permeability", help="property map name")
    p.add_argument("--phi", type=float, nargs="+", required=True, help="processing parameters")
    _add_target_args(p)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args):
    import torch

    import psppyro as pp

    target = _target_from_args(args)
    value, se = pp.design.evaluate(
        torch.tensor(args.phi), pp.process.preset(args.process), args.properties, target,
        num_samples=args.num_samples, seed=args.seed, workers=args.workers,
    )
    kind = "P(m in M_d | phi)" if isinstance(target, pp.design.Box) else "E[u(m) | phi]"
    print(f"{kind} = {float(value):.4f} ± {float(se):.4f} ({args.num_samples} simulations)")


# --------------------------------------------------------------------------- main
_COMMANDS = (_add_demo, _add_generate, _add_train, _add_design, _add_evaluate)


def build_parser():
    """The ``argparse`` parser of the ``psppyro`` command."""
    parser = argparse.ArgumentParser(
        prog="psppyro",
        description=(
            "Inverse design of random materials through the Process-Structure-Property chain."
        ),
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
