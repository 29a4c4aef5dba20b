"""The unit of work of dataset generation: one chunk of φ values → (x, m, flags).

This module imports only numpy and torch so that worker processes start quickly. It is used in the
main process (one worker), in a local process pool, and on Dask workers alike, and it is the only
place where samples are drawn, which is what makes a dataset independent of how it was executed.

Randomness: the microstructures of φ value ``i`` (global index) are drawn with
``proc.sample(phi_i, per_phi, seed=derive_seed(seed, SAMPLE_STREAM, i))``. Properties are evaluated
per φ value (a batch of ``per_phi`` images), never across φ values, so that no solver's batched
arithmetic (for example a convergence test over the batch) can couple samples of different chunks.
Torch runs on one thread during the computation, so reductions do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
import torch

from .._random import derive_seed
from .._validation import check_binary

__all__ = ["SAMPLE_STREAM", "compute_chunk", "init_worker"]

#: Key of the random stream of the microstructures in ``derive_seed(seed, SAMPLE_STREAM, i)``.
SAMPLE_STREAM = 0

_STATE = {}


def init_worker(process=None, properties=None):
    """Process-pool initializer: one torch thread, and the process/property objects kept once."""
    torch.set_num_threads(1)
    _STATE["process"] = process
    _STATE["properties"] = properties


def compute_chunk(phi, first_index, per_phi, seed, labelled, process=None, properties=None):
    """Draw and label the samples of a contiguous block of φ values.

    Args:
        phi: array (n, d_phi), the φ values (already in the process's dtype, stored as float64).
        first_index: global index of ``phi[0]``.
        per_phi: microstructures per φ value.
        seed: the run seed.
        labelled: whether to evaluate ``properties``.
        process: the process (default: the one installed by :func:`init_worker`).
        properties: the :class:`~psppyro.properties.PropertyMap` or ``None``.

    Returns:
        dict with ``x`` uint8 (n * per_phi, *shape), and if labelled ``m`` float64
        (n * per_phi, d_m) and ``flags`` {name: bool (n * per_phi, d_m)}.
    """
    process = _STATE.get("process") if process is None else process
    properties = _STATE.get("properties") if properties is None else properties
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dtype = process.phi_bounds.dtype
        xs, ms, flags = [], [], {}
        for j, phi_j in enumerate(np.asarray(phi, dtype=np.float64)):
            phi_t = torch.as_tensor(phi_j, dtype=dtype)
            s = derive_seed(int(seed), SAMPLE_STREAM, int(first_index) + j)
            x = process.sample(phi_t, per_phi, seed=s)
            expected = (per_phi, *tuple(process.shape))
            if tuple(x.shape) != expected:
                raise ValueError(
                    f"process.sample returned shape {tuple(x.shape)} for one phi value and "
                    f"num_samples={per_phi}; expected {expected}"
                )
            check_binary("process.sample output", x)
            xs.append(x.detach().to("cpu", torch.uint8).numpy())
            if labelled:
                m, fl = properties.evaluate(x)
                ms.append(m.detach().to("cpu", torch.float64).numpy())
                for name, value in fl.items():
                    flags.setdefault(name, []).append(value.detach().to("cpu", torch.bool).numpy())
        out = {"x": np.concatenate(xs)}
        if labelled:
            out["m"] = np.concatenate(ms)
            out["flags"] = {k: np.concatenate(v) for k, v in flags.items()}
        return out
    finally:
        torch.set_num_threads(threads)
