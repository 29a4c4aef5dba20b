"""What every benchmark case shares: argument checks, a per-stage wall clock, JSON conversion and
atomic JSON caches of finished stages.

Example::

    >>> clock = StageClock()
    >>> with clock("train"):
    ...     pass
    >>> list(clock.stages), jsonable({"p": float("inf"), "q": float("nan")})
    (['train'], {'p': 'inf', 'q': None})
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .._validation import check_seed


def check_scale(scale) -> float:
    """``scale`` as a float in (0, 1]; TypeError for a non-number, ValueError outside the range.

    Example::

        >>> check_scale(2)
        Traceback (most recent call last):
        ...
        ValueError: scale must be in (0, 1], got 2
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number in (0, 1], got {scale!r}")
    if not (math.isfinite(scale) and 0.0 < scale <= 1.0):
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    return float(scale)


def check_run_args(scale, out, seed, progress) -> tuple[float, Path, int]:
    """Check the common arguments of a case's ``run`` before any work; returns (scale, out, seed).

    ``out`` may not exist yet (it is created by the case) but its parent folder must.

    Example::

        >>> check_run_args(0.5, "results", 0, True)[0]
        0.5
    """
    scale = check_scale(scale)
    seed = check_seed("seed", seed)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out must be a str or pathlib.Path, got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file; give a folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise ValueError(f"out {str(out)!r}: the folder {str(parent)!r} does not exist")
    return scale, out, seed


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold ``out`` for one run: a second run into the same folder while this one is alive gets a
    ``ValueError`` at once (its caches would race: two trainings resuming the same checkpoints).

    The lock is an ``flock`` on ``out/.lock``, released by the operating system when the
    process ends however it ends, so a killed run never leaves a stale lock. Where ``fcntl`` is
    missing (not POSIX) nothing is locked.

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, folder_lock(Path(d)):
        ...     with folder_lock(Path(d)):
        ...         pass
        Traceback (most recent call last):
        ...
        ValueError: out ... is in use by another run (pid ...); wait for it to finish or use ...
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    out.mkdir(exist_ok=True)
    handle = open(out / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ValueError(f"out {str(out)!r} is in use by another run ({holder}); wait for it to "
                         "finish or use another out folder") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


class StageClock:
    """Per-stage wall times in seconds (``stages``, in first-use order); a stage may recur."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t0


def jsonable(x):
    """``x`` with tensors/arrays as lists, NumPy scalars as Python numbers, NaN as None, ±inf as
    the strings "inf"/"-inf" (so ``json.dumps(..., allow_nan=False)`` accepts it)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename (no torn files)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True))
    tmp.replace(path)


def read_cache(path, settings):
    """The cached result in ``path`` when it was made with the same ``settings``, else None."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except ValueError:
        return None
    return cached if cached.get("settings") == jsonable(settings) else None
