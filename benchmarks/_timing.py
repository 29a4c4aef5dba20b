"""Timing helper shared by the benchmark scripts (imported as ``from _timing import timed``)."""

import math
import time

import torch


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """Best wall time of ``repeats`` calls after a warm-up call; returns (seconds, last output)."""
    out = fn()
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out
