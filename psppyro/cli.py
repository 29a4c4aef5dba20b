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


# --------------------------------------------------------------------------- main
_COMMANDS = (_add_demo,)


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
