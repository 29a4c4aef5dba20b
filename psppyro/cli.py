"""Command-line interface: ``psppyro generate | train | design | evaluate | verify | benchmark``
and ``psppyro demo``.

Each sub-command lives in its own pair of functions, ``_add_<name>(subparsers)`` (arguments) and
``_run_<name>(args)`` (work), and imports what it needs lazily so that ``psppyro --help`` is
instant.

**Errors.** A mistake of the user (a ``ValueError``, ``TypeError`` or ``OSError``, an exception
class of psppyro's own, or a ``RuntimeError`` raised by psppyro's code) is printed as one line,
``psppyro <command>: <message>``, on standard error with exit status 2; ``--debug`` (before or
after the command) prints the traceback too. Anything else is a bug and shows its traceback.
Handlers check their arguments (counts, seeds, output paths, target dimension) before the
expensive work.

Example::

    $ psppyro demo --out demo_output
    $ psppyro evaluate --process pspgen36 --phi 1 2 --low -5 -5 --high -6 -6
    psppyro evaluate: low must be < high in every component; component 0: low=-5 >= high=-6
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["build_parser", "main"]


# --------------------------------------------------------------------------- shared checks
def _check_out_file(path, option="--out"):
    """Refuse an output file that cannot be written, before any work is done.

    The folder that will hold ``path`` must exist and be writable, and ``path`` must not be a
    folder. Raises ``ValueError`` naming ``option`` and the path.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a folder; give a file name")
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} does not exist; create it")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} is not writable")


def _check_out_store(path, option="--out"):
    """Refuse a Zarr store path (a folder made by the command) whose parent folder is missing."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a file, not a store folder")
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} does not exist; create it")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} is not writable")


def _check_in_path(path, option):
    """Refuse an input path that does not exist (``ValueError`` naming ``option``)."""
    if not os.path.exists(os.fspath(path)):
        raise ValueError(f"{option} {os.fspath(path)!r} does not exist")


def _check_counts(args, **minimums):
    """Check integer options of ``args`` (``dest=minimum``; ``None`` values are skipped)."""
    from psppyro._validation import check_int

    for dest, minimum in minimums.items():
        value = getattr(args, dest)
        if value is not None:
            check_int("--" + dest.replace("_", "-"), value, minimum=minimum)


def _check_device(device):
    """Refuse a torch device string that is malformed or not available here."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"--device must be a torch device such as cpu or cuda, got {device!r}"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available on this machine")


def _process_and_properties(process, properties, target=None):
    """Resolve ``--process`` / ``--properties`` names and check the target's dimension against them.

    Cheap (no simulation), so a handler calls it first. Returns ``(process, property_map)``.
    """
    import psppyro as pp

    for option, value, names in (
        ("--process", process, pp.process.PRESETS),
        ("--properties", properties, pp.properties.PROPERTY_MAPS),
    ):
        if value not in names:
            raise ValueError(f"{option} must be one of {', '.join(names)}; got {value!r}")
    proc = pp.process.preset(process)
    pm = pp.properties.property_map(properties)
    ndim = len(getattr(proc, "shape", ())) or None
    if ndim is not None and ndim != pm.ndim:
        raise ValueError(
            f"--properties {properties!r} takes {pm.ndim}-D images but --process {process!r} "
            f"makes {ndim}-D ones"
        )
    if target is not None and target.dim != pm.dim:
        raise ValueError(
            f"the target has {target.dim} components but --properties {properties!r} gives "
            f"{pm.dim} ({', '.join(pm.components)})"
        )
    return proc, pm


def _check_design_args(args):
    """Validate the ``design`` sub-command's options before the model is loaded or designed.

    Checks ``--model`` exists, ``--out`` is writable, ``--seed``, ``--num-samples``, ``--workers``
    and, when ``--process`` is given, the process and property names and the target's dimension.
    """
    from psppyro._validation import check_seed

    _check_in_path(args.model, "--model")
    if getattr(args, "out", None):
        _check_out_file(args.out)
    check_seed("--seed", args.seed)
    _check_counts(args, num_samples=1, workers=1)
    if getattr(args, "process", None):
        _process_and_properties(args.process, args.properties, _target_from_args(args))


class _HelpWithList(argparse.Action):
    """``-h/--help`` that appends a list (e.g. the presets) computed only when help is asked for.

    Keeps ``psppyro --help`` instant: the list may need heavy imports.
    """

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show this help message and exit", listing=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.listing = listing

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        print()
        print(self.listing())
        parser.exit()


def _list_dataset_presets():
    from psppyro.data import DATASET_PRESETS

    lines = ["dataset presets (PRESET; sizes at --scale 1):"]
    for p in DATASET_PRESETS.values():
        size = f"{p.n_phi} phi x {p.per_phi}"
        lines.append(f"  {p.name:<26} {p.process:<16} {p.properties:<22} {size}")
    return "\n".join(lines)


def _list_process_presets():
    import psppyro as pp

    return (
        "process presets (--process): " + ", ".join(pp.process.PRESETS) + "\n"
        "property maps (--properties): " + ", ".join(pp.properties.PROPERTY_MAPS)
    )


# --------------------------------------------------------------------------- demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="run the end-to-end demo and write its figures")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of about a minute")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default: all)")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from psppyro._validation import check_seed

    _check_counts(args, workers=1)
    check_seed("--seed", args.seed)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; give a folder for the demo's output")
    from psppyro.demo import run_demo

    run_demo(out=args.out, seed=args.seed, quick=args.quick, workers=args.workers)


# --------------------------------------------------------------------------- generate
def _add_generate(sub):
    p = sub.add_parser(
        "generate",
        help="generate (or resume) a named triad dataset",
        description="Generate a named triad dataset (phi, x, m) into a Zarr store, with a progress "
        "bar and a final summary. Re-running the same command on the same --out resumes an "
        "interrupted run. PRESET is a name of psppyro.data.DATASET_PRESETS (listed below).",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_HelpWithList, listing=_list_dataset_presets)
    p.add_argument("preset", metavar="PRESET", help="dataset preset name (listed below)")
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

    from psppyro._validation import check_seed
    from psppyro.data import DATASET_PRESETS, dataset_preset, generate

    if args.preset not in DATASET_PRESETS:
        raise ValueError(
            f"PRESET must be one of {', '.join(DATASET_PRESETS)}; got {args.preset!r} "
            "(psppyro generate --help lists them)"
        )
    preset = dataset_preset(args.preset, scale=args.scale)
    _check_counts(args, workers=1, chunk_size=1)
    check_seed("--seed", args.seed, allow_none=True)
    _check_out_store(args.out)
    if args.workers is None and not args.scheduler:
        args.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1
        )
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
        "save it. METHOD 'pspgen' trains PSP-GEN (psppyro.models.PSPGen) on its beta-ELBO and "
        "keeps the weights with the best validation property likelihood (--select); dimensions not "
        "given follow the paper's rules (d_z0 = 5 % of the pixels, d_z1 from the PCA of two-point "
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
    p.add_argument("--d-z0", type=int, default=None, help="size of z0 (default: 5 %% of pixels)")
    p.add_argument("--d-z1", type=int, default=None, help="size of z1 (default: PCA rule)")
    p.add_argument("--architecture", choices=("mlp", "conv", "paper"), default="mlp",
                   help="networks: residual MLPs, periodic convolutions, or the paper's appendix-A "
                   "widths")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout in the x-networks")
    p.add_argument("--weight-decay", type=float, default=0.0, help="decoupled (AdamW) weight decay")
    p.add_argument("--select", choices=("property", "elbo"), default="property",
                   help="model selection / early stopping on the validation property "
                   "log-likelihood (default) or the validation ELBO")
    p.add_argument("--percolation", choices=("auto", "on", "off"), default="auto",
                   help="percolation head for blocked directions (auto: when the data have any)")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args):
    from psppyro._validation import check_positive, check_seed

    # Everything that can be wrong with the options is checked before the data are read.
    _check_counts(args, epochs=1, batch_size=1, patience=1, d_z0=1, d_z1=1, checkpoint_every=1)
    check_seed("--seed", args.seed)
    check_positive("--lr", args.lr)
    check_positive("--beta", args.beta)
    check_positive("--weight-decay", args.weight_decay, allow_zero=True)
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    _check_out_file(args.out)
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir (the folder of the epoch_*.pt files)")
    if args.checkpoint_dir and os.path.exists(args.checkpoint_dir) and not os.path.isdir(
        args.checkpoint_dir
    ):
        raise ValueError(f"--checkpoint-dir {args.checkpoint_dir!r} is a file, not a folder")
    _check_device(args.device)

    from psppyro.data import open_dataset
    from psppyro.models import PSPGen

    train = open_dataset(args.data)
    val = open_dataset(args.val) if args.val else None
    unlabelled = open_dataset(args.unlabelled) if args.unlabelled else None
    model = PSPGen.from_dataset(
        train, d_z0=args.d_z0, d_z1=args.d_z1, beta=args.beta, architecture=args.architecture,
        seed=args.seed, dropout=args.dropout,
        percolation={"auto": None, "on": True, "off": False}[args.percolation],
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
        weight_decay=args.weight_decay,
        select=args.select,
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
            raise ValueError(f"--option must look like key=value, got {item!r}")
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
        raise ValueError("give --low and --high (a box) or --target-value")
    return Box(args.low, args.high)


def _list_design_methods():
    from psppyro.design import describe_methods

    return (
        "design methods (--method NAME) and their options (--option KEY=VALUE, defaults):\n"
        + describe_methods()
        + "\nevery method also takes point='mean' (or 'median', 'best'), num_eval_samples=10000 "
        "and num_candidates=64 (see psppyro.infer_design)"
    )


def _add_design(sub):
    p = sub.add_parser(
        "design",
        help="design processing parameters phi for a target with a trained model",
        description="Run psppyro.infer_design on a trained PSP-GEN model (saved by `psppyro "
        "train`) and print the result; optionally check phi* by true simulation. --out r.json "
        "writes the result as JSON and the posterior (arviz InferenceData) as r.nc. `psppyro "
        "design --method` lists the registered methods; --help lists each method's options.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_HelpWithList, listing=_list_design_methods)
    p.add_argument("--model", default=None, help="trained model file (PSPGen.save); required")
    _add_target_args(p)
    p.add_argument("--method", nargs="?", const="", default="sga", metavar="NAME",
                   help="a registered design method (default sga); without NAME, list them")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option, e.g. --option epochs=5 (repeatable; see --help)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--process", default=None,
                   help="process preset for a simulation check of phi* (e.g. pspgen36)")
    p.add_argument("--properties", default="log_permeability", help="property map of the check")
    p.add_argument("--num-samples", type=int, default=200, help="simulations for the check")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=None,
                   help="write the result as JSON to this file and the posterior next to it (.nc)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_design)


def _run_design(args):
    import psppyro as pp
    from psppyro.design import get_method, method_names

    if args.method == "":  # `psppyro design --method`: list the registered methods
        for name in method_names():
            print(f"{name}: {get_method(name).summary}")
        return 0
    if args.model is None:
        raise ValueError("--model is required (a trained model file, PSPGen.save)")
    if args.method not in method_names():
        names = ", ".join(method_names())
        raise ValueError(f"--method must be one of {names}; got {args.method!r}")
    options = _parse_options(args.option)
    allowed = get_method(args.method).options
    unknown = sorted(set(options) - set(allowed) - {"point", "num_eval_samples", "num_candidates"})
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "(none)"
        raise ValueError(
            f"--option {unknown} not an option of method {args.method!r}; its options are: "
            f"{listing} (and point, num_eval_samples, num_candidates)"
        )
    _check_design_args(args)  # cheap option checks before loading and designing (main's owner)
    from psppyro.models import PSPGen

    model = PSPGen.load(args.model)
    target = _target_from_args(args)
    options.setdefault("progress", not args.no_progress)
    res = pp.infer_design(model, target, method=args.method, seed=args.seed, **options)
    print(res.summary())
    extra = {}
    if args.process:
        value, se = pp.design.evaluate(
            res.phi_star, pp.process.preset(args.process), args.properties, target,
            num_samples=args.num_samples, seed=args.seed + 1, workers=args.workers,
        )
        extra = {"simulated": float(value), "simulated_se": float(se)}
        print(f"  simulated {res.objective_name} at phi_star: {float(value):.4g} ± {float(se):.2g}")
    if args.out:
        json_path, nc_path = res.save(args.out, extra=extra)
        print(f"  wrote {json_path}" + (f" and {nc_path}" if nc_path else ""))
    return 0


# --------------------------------------------------------------------------- evaluate
def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="true-simulator objective at given phi (P(m in M_d | phi) with its s.e.)",
        description="Simulate the process and property solver at phi and report the target "
        "probability (binomial s.e.) or expected utility.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_HelpWithList, listing=_list_process_presets)
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
    from psppyro._validation import check_finite, check_in_bounds, check_last_dim, check_seed

    # Checked before any simulation: sizes, seed, names, target dimension and phi.
    _check_counts(args, num_samples=1, workers=1)
    check_seed("--seed", args.seed)
    target = _target_from_args(args)
    proc, pm = _process_and_properties(args.process, args.properties, target)
    phi = torch.tensor(args.phi)
    check_finite("--phi", phi)
    check_last_dim("--phi", phi, proc.phi_bounds.shape[0])
    check_in_bounds("--phi", phi, proc.phi_bounds)
    value, se = pp.design.evaluate(
        phi, proc, pm, target, num_samples=args.num_samples, seed=args.seed, workers=args.workers,
    )
    kind = "P(m in M_d | phi)" if isinstance(target, pp.design.Box) else "E[u(m) | phi]"
    print(f"{kind} = {float(value):.4f} ± {float(se):.4f} ({args.num_samples} simulations)")


# --------------------------------------------------------------------------- verify
def _add_verify(sub):
    p = sub.add_parser(
        "verify",
        help="check a triad dataset store completely (exit status 0 ok, 1 corrupt)",
        description="Fully check a dataset store written by `psppyro generate`: every file against "
        "the fingerprint recorded when it was written, every chunk decoded and compared with its "
        "SHA-256, and phi against the generation arguments. Prints one line; the exit status is "
        "0 if the store is complete and intact, 1 otherwise (corrupt, unfinished, not a store).",
    )
    p.add_argument("path", metavar="PATH", help="the Zarr store (a folder)")
    p.set_defaults(func=_run_verify)


def _run_verify(args):
    import time

    from psppyro.data import describe_store, verify_dataset

    start = time.perf_counter()
    try:
        verify_dataset(args.path)
        info = describe_store(args.path)
    except ValueError as err:  # CorruptStoreError, not a store, unfinished generation
        print(_one_line("verify", err), file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    what = (
        f"{info['n_samples']} samples in {info['n_chunks']} chunks "
        f"({', '.join(info['variables'])}, {info['format']})"
    )
    if not info["complete"]:
        print(
            f"psppyro verify: incomplete: {info['path']}: {info['chunks_done']} of "
            f"{info['n_chunks']} chunks written (those are intact); resume with the same "
            "generate arguments",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {info['path']}: {what}; every chunk matches its SHA-256 ({elapsed:.2f} s)")
    return 0


# --------------------------------------------------------------------------- benchmark
def _add_benchmark(sub):
    p = sub.add_parser(
        "benchmark",
        help="run a seed paper's protocol end to end and write its tables and figures",
        description="Run a benchmark case (see --list): data, training, design, and a check of "
        "every design by true simulation; writes results.json, results.md (the paper's layout, "
        "its numbers beside ours), figures and a wall-time table into --out.",
    )
    p.add_argument("case", nargs="?", metavar="CASE", help="the case to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--scale", type=float, default=1.0,
                   help="shrink every size by this factor, 0 < s <= 1 (default 1: the paper's)")
    p.add_argument("--out", default=None, help="output folder (default: benchmark_output/CASE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-competitor", action="store_true",
                   help="skip the competitor stage (pspgen-paper-case1/3/4)")
    p.add_argument("--no-bayesopt", action="store_true",
                   help="skip the Bayesian-optimization stage (pspgen-paper-case1/3/4)")
    p.add_argument("--variants", nargs="+", default=None, metavar="LABEL",
                   help="run only these PSP-GEN model variants (pspgen-paper-case1/3/4: "
                        "dz1_default, dz1_2 for case 1)")
    p.add_argument("--tempering", action="store_true",
                   help="VB-EM with adaptive tempering of the target (rixner-o1/o2)")
    p.set_defaults(func=_run_benchmark)


def _run_benchmark(args):
    from pathlib import Path

    from psppyro._validation import check_seed
    from psppyro.cases import describe_cases, get_case

    if args.list:
        print(describe_cases())
        return 0
    if args.case is None:
        raise ValueError("CASE is required (psppyro benchmark --list shows the cases)")
    check_seed("--seed", args.seed)
    if not (0.0 < args.scale <= 1.0):
        raise ValueError(f"--scale must be in (0, 1], got {args.scale:g}")
    out = Path(args.out if args.out is not None else os.path.join("benchmark_output", args.case))
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder")
    parent = out.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: the folder {str(parent)!r} is missing or read-only")
    run = get_case(args.case)
    options = {k: False for k, flag in (("competitor", args.no_competitor),
                                      ("bayesopt", args.no_bayesopt)) if flag}
    if args.variants is not None:
        options["variants"] = args.variants
    if args.tempering:
        options["tempering"] = True
    import inspect

    unknown = sorted(set(options) - set(inspect.signature(run).parameters))
    if unknown:
        flag, cases = {"variants": ("--variants", "pspgen-paper-case1/3/4"),
                       "tempering": ("--tempering", "rixner-o1/o2")}.get(
            unknown[0], (f"--no-{unknown[0]}", "pspgen-paper-case1/3/4"))
        raise ValueError(f"case {args.case!r} has no {unknown[0]!r} option ({flag} applies to "
                         f"{cases})")
    run(args.case, scale=args.scale, out=out, seed=args.seed, progress=not args.no_progress,
        **options)  # each case checks its arguments, then creates ``out``
    print(f"results written to {out}")
    return 0


# --------------------------------------------------------------------------- main
_COMMANDS = (_add_demo, _add_generate, _add_train, _add_design, _add_evaluate, _add_verify,
             _add_benchmark)


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the ``psppyro`` command.

    Returns:
        argparse.ArgumentParser: with one sub-parser per command; every sub-parser also accepts
        ``--debug``.

    Example:
        >>> build_parser().parse_args(["--debug", "demo", "--quick"]).debug
        True
    """
    from psppyro import __version__

    parser = _Parser(
        prog="psppyro",
        description=(
            "Inverse design of random materials through the Process-Structure-Property chain."
        ),
    )
    parser.add_argument("--version", action="version", version=f"psppyro {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback (also accepted after COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    for command in sub.choices.values():
        # SUPPRESS: the sub-parser sets ``debug`` only when given, so `psppyro --debug CMD` works.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, print the full traceback")
    return parser


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose syntax errors are one line too (exit status 2, as argparse)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


#: Exceptions that are the user's mistake (bad option, missing file): one line, exit status 2.
_USER_ERRORS = (ValueError, TypeError, OSError)


def _is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is reported as one line (see the module docstring)."""
    if isinstance(err, _USER_ERRORS):
        return True
    if type(err).__module__.split(".")[0] == "psppyro":
        return True  # psppyro's own exception classes
    if isinstance(err, RuntimeError):
        # Raised on purpose by a `raise` statement in psppyro's code (e.g. a solver that did not
        # converge, a process pool that could not start), not by torch inside psppyro's code.
        import linecache

        tb = err.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None:
            return False
        module = tb.tb_frame.f_globals.get("__name__", "")
        line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
        return module.split(".")[0] == "psppyro" and line.startswith("raise")
    return False


def _one_line(command: str, err: BaseException) -> str:
    """``psppyro <command>: <message>`` on one line (no doubled ``psppyro ...:`` prefix)."""
    message = str(err) if not isinstance(err, SystemExit) else str(err.code)
    message = " ".join(message.split()) or type(err).__name__
    for prefix in (f"psppyro {command}:", "psppyro:"):
        if message.startswith(prefix):
            message = message[len(prefix):].lstrip()
    return f"psppyro {command}: {message}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``psppyro`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        int: the exit status: 0 on success, 2 for a user error (one line on standard error,
        ``psppyro <command>: <message>``; the traceback with ``--debug``), 130 when interrupted.
        Argument-syntax errors exit with status 2 from ``argparse``; ``--version`` and ``--help``
        exit with 0.

    Example:
        >>> main(["evaluate", "--process", "pspgen36", "--phi", "1", "2", "--low", "-5", "-5",
        ...       "--high", "-6", "-6"])
        2
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as err:
        if not isinstance(err.code, str):  # exit(n) from a handler keeps its status
            raise
        failure = err
    except Exception as err:
        if not _is_user_error(err):
            raise
        failure = err
    if args.debug:
        import traceback

        traceback.print_exception(type(failure), failure, failure.__traceback__, file=sys.stderr)
    print(_one_line(args.command, failure), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
