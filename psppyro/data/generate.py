r"""Generation of triad datasets (φ, x, m): φ designs, local or Dask execution, streamed to Zarr.

For ``n_phi`` process parameters φ_1 … φ_{n_phi} and ``per_phi`` microstructures each,

.. math::

    x_{i,r} \sim p(x \mid φ_i), \qquad m_{i,r} = \mathcal{M}(x_{i,r}), \qquad
    r = 1, \dots, \text{per\_phi},

where 𝓜 is a :class:`~psppyro.properties.PropertyMap`. Sample ``(i, r)`` sits at position
``i · per_phi + r`` of the ``sample`` dimension.

**φ designs** (``design``):

- ``"uniform"``: independent uniform draws in the box ``process.phi_bounds``. For a family with
  unbounded parameters (any infinite bound, e.g. the Rixner spectral mixture with φ ∈ R^100) the
  draws come from ``process.phi_prior`` instead (for Rixner: φ ~ N(0, I)).
- ``"sobol"``: a scrambled Sobol sequence (``torch.quasirandom.SobolEngine``) mapped to the box, or,
  for unbounded families, through the inverse CDF of the prior's independent marginals.
- ``"grid"``: the full tensor grid with ``p = round(n_phi ** (1 / d_phi))`` equally spaced points
  per axis, ends included; ``n_phi`` must equal ``p ** d_phi`` exactly. The first φ component varies
  slowest. Bounded families only.
- an explicit array ``phi`` of shape (n_phi, d_phi) (then ``design`` is recorded as ``"explicit"``).

φ values are rounded to the process's dtype before use and storage, so the stored φ is exactly the φ
that produced the sample.

**Randomness** (``docs/architecture.md`` § "Randomness and seeding"): the microstructures of φ value
``i`` use ``derive_seed(seed, 0, i)`` and nothing else; the φ design uses ``derive_seed(seed, 1)``.
Properties are evaluated per φ value, with torch on one thread. A dataset is therefore bit-identical
for any number of workers, any chunk size and any executor (in-process, process pool, Dask).

**Execution**: by default (``workers=None`` or ``1``) the chunks are computed in the calling
process, which works from any script, from standard input and in notebooks. ``workers > 1`` uses a
local process pool (``forkserver`` start method): each worker imports the main module, so the call
must sit under ``if __name__ == "__main__":`` in a script file, and custom process or property
classes must live in an importable module (not in ``__main__`` of a notebook or of standard input);
otherwise the pool cannot start and :func:`generate` raises a ``RuntimeError`` that says so. (The
``psppyro generate`` command uses all cores.) ``client=distributed.Client(...)`` runs the chunks on
any Dask cluster, e.g. one started with ``dask scheduler`` and ``dask worker tcp://host:8786``.
Workers only compute; the calling process writes each finished chunk to the store and then marks it
complete, so the store needs to be reachable from the caller only, and at most ``2 · workers``
chunks are held in memory at any time (peak memory does not grow with the dataset).

**Resuming**: the store is built in ``<path>.partial`` and renamed to ``path`` when complete
(:mod:`psppyro.data.store`). Calling :func:`generate` again with the same arguments computes only
the chunks of ``<path>.partial`` without a completion marker; a run with different arguments is
refused with the list of differing settings, and a finished store at ``path`` is returned as it is.

References:
    Zang, Y. and Koutsourelakis, P.-S. (2024). PSP-GEN: stochastic inversion of the
    Process-Structure-Property chain in materials design through deep, generative probabilistic
    modeling. (Training/test/reference triad sets.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .._random import derive_seed
from .._validation import (
    as_tensor,
    check_choice,
    check_finite,
    check_in_bounds,
    check_int,
    check_last_dim,
)
from . import store as _store
from ._worker import compute_chunk, init_worker

__all__ = ["DESIGNS", "design_phi", "generate"]

#: The φ designs :func:`generate` accepts by name.
DESIGNS = ("uniform", "grid", "sobol")

PHI_STREAM = 1
PROBE_STREAM = 2
_PROTOCOL = ("sample", "phi_bounds", "phi_prior", "d_phi", "phi_names", "shape", "config")


# --------------------------------------------------------------------------- resolving inputs
def _resolve_process(process):
    if isinstance(process, str):
        from ..process import preset

        return preset(process)
    missing = [a for a in _PROTOCOL if not hasattr(process, a)]
    if missing:
        raise TypeError(
            f"process must be a process preset name or an object with {_PROTOCOL}; "
            f"{type(process).__name__} lacks {missing}"
        )
    return process


def _resolve_properties(properties):
    if properties is None:
        return None
    from ..properties import PropertyMap, property_map

    if isinstance(properties, str):
        return property_map(properties)
    if isinstance(properties, PropertyMap):
        return properties
    raise TypeError(
        f"properties must be a property-map name, a PropertyMap or None, got {type(properties)}"
    )


# --------------------------------------------------------------------------- φ designs
def _prior_icdf(prior, u):
    base = prior
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    try:
        return base.icdf(u)
    except NotImplementedError as err:
        raise ValueError(
            "design='sobol' for a process with unbounded phi needs a prior with independent "
            f"marginals that implement icdf; {type(prior).__name__} does not"
        ) from err


def design_phi(process, design, n_phi, seed):
    """The φ values of a named design, shape (n_phi, d_phi), float64 (rounded to the process dtype).

    Args:
        process: an object with ``phi_bounds``, ``phi_prior`` and ``d_phi``.
        design: ``"uniform"``, ``"grid"`` or ``"sobol"`` (see the module docstring).
        n_phi: number of φ values (for ``"grid"``: a perfect ``d_phi``-th power).
        seed: run seed; the design draws from ``derive_seed(seed, 1)``.

    Returns:
        ``numpy.ndarray`` (n_phi, d_phi).

    Raises:
        ValueError: for an unknown design, a grid size that is not a perfect power, or a grid over
            an unbounded family.

    Example::

        >>> import torch
        >>> class Box:
        ...     phi_bounds = torch.tensor([[1.0, 9.0], [0.2, 2.0]]); d_phi = 2; phi_prior = None
        >>> design_phi(Box(), "grid", 9, seed=0)[:4, 0].tolist()
        [1.0, 1.0, 1.0, 5.0]
    """
    check_choice("design", design, DESIGNS)
    n_phi = check_int("n_phi", n_phi)
    bounds = process.phi_bounds.detach().cpu()
    d = int(bounds.shape[0])
    lo, hi = bounds[:, 0].double(), bounds[:, 1].double()
    bounded = bool(torch.isfinite(bounds).all())
    stream = derive_seed(seed, PHI_STREAM)
    if design == "grid":
        if not bounded:
            raise ValueError(
                "design='grid' needs finite phi_bounds; this process has unbounded parameters "
                f"(bounds {bounds.tolist()}); use 'uniform' (prior draws), 'sobol' or explicit phi"
            )
        p = round(n_phi ** (1.0 / d))
        if p**d != n_phi:
            raise ValueError(
                f"n_phi must be a perfect {d}-th power for design='grid' with d_phi={d} "
                f"(points per axis = round(n_phi ** (1/d_phi))), got n_phi={n_phi}; "
                f"nearest: {max(p - 1, 1) ** d}, {p**d}, {(p + 1) ** d}"
            )
        axes = [
            torch.linspace(float(lo[j]), float(hi[j]), p, dtype=torch.float64) for j in range(d)
        ]
        phi = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)
    elif design == "uniform":
        if bounded:
            u = np.random.default_rng(stream).random((n_phi, d))
            phi = lo + torch.as_tensor(u) * (hi - lo)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stream)
                phi = process.phi_prior.sample((n_phi,)).detach().cpu().double()
    else:
        engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=stream % 2**62)
        u = engine.draw(n_phi, dtype=torch.float64)
        if bounded:
            phi = lo + u * (hi - lo)
        else:
            eps = 0.5 / 2**32  # keep the inverse CDF finite at the ends of (0, 1)
            phi = _prior_icdf(process.phi_prior, u.clamp(eps, 1 - eps)).double()
    if tuple(phi.shape) != (n_phi, d):
        raise ValueError(f"phi design produced shape {tuple(phi.shape)}, expected {(n_phi, d)}")
    return phi.to(bounds.dtype).double().numpy()


def _explicit_phi(process, phi):
    bounds = process.phi_bounds.detach().cpu()
    t = as_tensor("phi", phi, dtype=torch.float64)
    if t.dim() != 2:
        raise ValueError(f"phi must have shape (n_phi, d_phi), got shape {tuple(t.shape)}")
    check_last_dim("phi", t, int(bounds.shape[0]))
    check_finite("phi", t)
    if t.shape[0] < 1:
        raise ValueError("phi must hold at least one row, got shape (0, d_phi)")
    t = t.detach().cpu().to(bounds.dtype)
    check_in_bounds("phi", t, bounds, atol=0.0)
    return t.double().numpy()


# --------------------------------------------------------------------------- provenance
def _git_revision():
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_chunk_size(n_phi, per_phi, shape):
    """Samples per chunk: at most about 1 MiB of images and at least 64 chunks, in whole φ groups.

    Many chunks keep the progress bar lively, balance the workers and bound the work a crash can
    lose; the 1 MiB cap bounds the memory of a chunk in flight.

    Example::

        >>> default_chunk_size(2500, 4, (36, 36)), default_chunk_size(400, 500, (36, 36))
        (160, 500)
    """
    pixels = int(np.prod(shape))
    phis = max(1, min(2**20 // (per_phi * pixels), math.ceil(n_phi / 64)))
    return phis * per_phi


# --------------------------------------------------------------------------- the store
def _create_store(path, process, pm, phi, config, layout, attrs):
    import dask.array as da
    import xarray as xr
    import zarr

    _store.begin_store(path, config, layout)
    n_phi, per_phi, c = config["n_phi"], config["per_phi"], config["chunk_size"]
    n = n_phi * per_phi
    shape = tuple(config["shape"])
    image_dims = ("z", "y", "x")[-len(shape) :]
    small = min(n, 2**16)
    data = {
        "phi": (("sample", "phi_dim"), np.repeat(phi, per_phi, axis=0)),
        "phi_index": (("sample",), np.repeat(np.arange(n_phi, dtype=np.int64), per_phi)),
        "x": (("sample", *image_dims), da.zeros((n, *shape), chunks=(c, *shape), dtype=np.uint8)),
    }
    coords = {"phi_dim": np.array(config["phi_names"], dtype=object)}
    if config["labelled"]:
        d_m = len(config["components"])
        data["m"] = (("sample", "m_dim"), da.full((n, d_m), np.nan, chunks=(c, d_m)))
        for flag in layout["flags"]:
            data[flag] = (("sample", "m_dim"), da.zeros((n, d_m), chunks=(c, d_m), dtype=bool))
        coords["m_dim"] = np.array(config["components"], dtype=object)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    encoding = {"phi": {"chunks": (small, phi.shape[1])}, "phi_index": {"chunks": (small,)}}
    encoding["x"] = {"fill_value": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds.to_zarr(
            str(path), mode="a", compute=False, consolidated=False, zarr_format=3, encoding=encoding
        )
    with warnings.catch_warnings():
        # "Consolidated metadata is currently not part in the Zarr format 3 specification":
        # zarr-python and xarray read it, and plain xarray.open_zarr(path) then needs no fallback.
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(str(path), zarr_format=3)
    _store.finish_store(path)


def _probe_flags(process, pm, phi0, seed):
    """Flag names of the property map, from one throw-away sample (seed stream 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers; many threads on one tiny image only contend
    try:
        phi0 = torch.as_tensor(phi0, dtype=process.phi_bounds.dtype)
        x = process.sample(phi0, 1, derive_seed(seed, PROBE_STREAM))
        m, flags = pm.evaluate(x)
    finally:
        torch.set_num_threads(threads)
    if tuple(m.shape) != (1, pm.dim):
        raise ValueError(
            f"property map {pm.name!r} returned m of shape {tuple(m.shape)} for one image, "
            f"expected (1, {pm.dim})"
        )
    for name, value in flags.items():
        if tuple(value.shape) != (1, pm.dim):
            raise ValueError(
                f"property map {pm.name!r} returned flag {name!r} of shape {tuple(value.shape)}, "
                f"expected (1, {pm.dim})"
            )
    reserved = {"phi", "phi_index", "x", "m", "sample", "phi_dim", "m_dim", "y", "z"}
    clash = sorted(set(flags) & reserved)
    if clash:
        raise ValueError(
            f"property map {pm.name!r} has flags named like dataset variables: {clash}"
        )
    return sorted(flags)


# --------------------------------------------------------------------------- execution
def _local_workers(workers):
    if workers is None:
        return 1  # in-process: works in scripts without a __main__ guard, stdin and notebooks
    return check_int("workers", workers)


def _check_not_in_worker_bootstrap(what):
    """Refuse to run while a worker process re-imports the main module (no ``__main__`` guard).

    Without this the worker would re-run the user's script from the top, writing to the same
    store, before dying on its own pool start; the parent then reports the guard (below).
    """
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError(
            f"{what} was called while a worker process imported the main module: the script "
            'calls it without an `if __name__ == "__main__":` guard'
        )


def pool_failure(what, workers, err):
    """The ``RuntimeError`` for a process pool that could not start or broke."""
    return RuntimeError(
        f"{what}(workers={workers}): the worker processes could not start or died "
        f"({type(err).__name__}: {err}). Each worker imports the main module, so (1) a script "
        'must make this call under `if __name__ == "__main__":`, and (2) code run from standard '
        "input (python - < script.py) or a notebook cannot use workers > 1 (the workers cannot "
        "import it), nor can process or property classes defined there. Put the call under the "
        "guard in a script file and custom classes in an importable module, or use workers=1 "
        "(in-process, the default; the results are identical). A worker killed by the system "
        "(e.g. out of memory) also gives this error; the finished chunks are kept, so running "
        "the same call again resumes"
    )


def _run_serial(tasks, process, pm, emit):
    for task in tasks:
        emit(task, compute_chunk(*task[1:], process=process, properties=pm))


def _run_pool(tasks, process, pm, workers, emit):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        # Imported once in the fork server, so every worker starts warm.
        ctx.set_forkserver_preload(
            ["torch", "psppyro.data._worker", "psppyro.process", "psppyro.properties"]
        )
    from concurrent.futures.process import BrokenProcessPool
    from pickle import PicklingError

    window = 2 * workers
    queue = list(tasks)[::-1]
    try:
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=init_worker, initargs=(process, pm)
        ) as pool:
            running = {}
            try:
                while queue or running:
                    while queue and len(running) < window:
                        task = queue.pop()
                        running[pool.submit(compute_chunk, *task[1:])] = task
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        emit(running.pop(fut), fut.result())
            except BaseException:
                # An error or Ctrl-C: drop queued chunks instead of computing them before exiting.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except (BrokenProcessPool, PicklingError) as err:
        raise pool_failure("generate", workers, err) from err


def _run_dask(tasks, process, pm, client, emit):
    from distributed import as_completed

    proc_f, pm_f = client.scatter([process, pm], broadcast=True)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers
    queue = list(tasks)[::-1]
    running = {}

    def submit():
        task = queue.pop()
        fut = client.submit(
            compute_chunk,
            *task[1:],
            process=proc_f,
            properties=pm_f,
            pure=False,
            key=f"psppyro-chunk-{task[0]}-{time.time_ns()}",
        )
        running[fut.key] = task
        return fut

    pending = as_completed([submit() for _ in range(min(window, len(queue)))])
    for fut in pending:
        emit(running.pop(fut.key), fut.result())
        fut.release()
        if queue:
            pending.add(submit())


# --------------------------------------------------------------------------- generate
def generate(
    process,
    properties,
    *,
    phi=None,
    n_phi=None,
    per_phi=1,
    design="uniform",
    path,
    seed,
    client=None,
    chunk_size=None,
    labelled=True,
    workers=None,
    progress=True,
    preset_name=None,
):
    """Generate (or resume) a triad dataset and return it opened with :func:`open_dataset`.

    Args:
        process: a process object (``sample``, ``phi_bounds``, ``phi_prior``, ``d_phi``,
            ``phi_names``, ``shape``, ``config``) or a process preset name such as ``"pspgen36"``.
        properties: a property-map name, a :class:`~psppyro.properties.PropertyMap`, or ``None``
            (only with ``labelled=False``). With ``labelled=False`` a given map is recorded in the
            provenance but not evaluated.
        phi: explicit φ values, shape (n_phi, d_phi), inside ``process.phi_bounds``.
        n_phi: number of φ values of a named design (must agree with ``phi`` if both are given).
        per_phi: microstructures per φ value.
        design: ``"uniform"`` (prior draws for unbounded families), ``"grid"`` or ``"sobol"``.
        path: folder of the Zarr store. It is built in ``<path>.partial`` and renamed to ``path``
            when complete; an unfinished ``<path>.partial`` of the same arguments is resumed.
        seed: non-negative integer run seed.
        client: a ``distributed.Client``; chunks then run on its cluster.
        chunk_size: samples per chunk (a multiple of ``per_phi``); default
            :func:`default_chunk_size`. It fixes the store layout, so a resume must use the same.
        labelled: evaluate the properties (``m`` and flags); ``False`` stores φ and x only.
        workers: local worker processes; ``None`` (default) or 1 computes in the calling
            process. ``workers > 1`` needs the ``if __name__ == "__main__":`` guard in scripts
            (module docstring). Ignored when ``client`` is given.
        progress: show a progress bar with ETA (``tqdm``).
        preset_name: name of the dataset preset, recorded in ``attrs["preset"]``.

    Returns:
        the lazily opened ``xarray.Dataset``.

    Raises:
        ValueError: for bad arguments, a foreign or corrupted store at ``path``, or a store or
            unfinished ``<path>.partial`` whose configuration differs from the requested one (the
            message lists the differences).
        TypeError: for a ``process`` or ``properties`` of the wrong type.
        RuntimeError: if the worker pool of ``workers > 1`` cannot start (the message explains
            the ``__main__`` guard).

    Example::

        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ds = generate("rixner64", "rixner_o2", n_phi=2, per_phi=2, seed=0, workers=1,
        ...                   path=os.path.join(d, "t.zarr"), progress=False)
        ...     print(ds["x"].shape, ds["m"].shape)
        (4, 64, 64) (4, 2)
    """
    _check_not_in_worker_bootstrap("psppyro.data.generate")
    process = _resolve_process(process)
    pm = _resolve_properties(properties)
    if not isinstance(labelled, bool):
        raise TypeError(f"labelled must be True or False, got {labelled!r}")
    if labelled and pm is None:
        raise ValueError(
            "properties is None but labelled=True; give a property map or labelled=False"
        )
    shape = tuple(int(s) for s in process.shape)
    if pm is not None and pm.ndim != len(shape):
        raise ValueError(
            f"property map {pm.name!r} takes {pm.ndim}-D images but the process makes images of "
            f"shape {shape}"
        )
    derive_seed(seed)  # validates the seed
    per_phi = check_int("per_phi", per_phi)
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    if phi is not None:
        phi_values = _explicit_phi(process, phi)
        if n_phi is not None and check_int("n_phi", n_phi) != phi_values.shape[0]:
            raise ValueError(f"n_phi={n_phi} disagrees with phi of {phi_values.shape[0]} rows")
        design_name = "explicit"
    else:
        if n_phi is None:
            raise ValueError("give either phi (explicit values) or n_phi (with a design)")
        phi_values = design_phi(process, design, n_phi, seed)
        design_name = design
    n_phi = phi_values.shape[0]
    if chunk_size is None:
        chunk_size = default_chunk_size(n_phi, per_phi, shape)
    chunk_size = check_int("chunk_size", chunk_size)
    if chunk_size % per_phi:
        raise ValueError(
            f"chunk_size must be a multiple of per_phi={per_phi} (whole phi groups), "
            f"got {chunk_size}"
        )
    phi_names = [str(s) for s in process.phi_names]
    config = {
        "process": process.config(),
        "properties": None if pm is None else pm.config(),
        "labelled": labelled,
        "seed": int(seed),
        "design": design_name,
        "n_phi": n_phi,
        "per_phi": per_phi,
        "chunk_size": chunk_size,
        "shape": list(shape),
        "phi_names": phi_names,
        "components": [] if pm is None else [str(c) for c in pm.components],
        "phi_sha256": hashlib.sha256(np.ascontiguousarray(phi_values).tobytes()).hexdigest(),
    }
    config = json.loads(json.dumps(config))  # exactly what comes back from disk

    if client is None:
        workers = _local_workers(workers)
    final = Path(path)
    partial = _store.partial_path(final)
    state = _store.classify(final)
    if state == "complete":
        _refuse_other_config(final, config, "the finished dataset store")
        return _store.open_dataset(final)
    if state != "new":
        raise ValueError(
            f"dataset store {str(final)!r} is unfinished but not in a {partial.name!r} build "
            f"folder (state {state!r}; written in place by an older psppyro, or moved there). "
            "Delete it and run generate(...) again"
        )
    pstate = _store.classify(partial)
    if pstate in ("incomplete", "complete"):
        _refuse_other_config(partial, config, "the unfinished dataset store")
        info = _store.read_format(partial)
        if info["format"] != _store.STORE_FORMAT:
            raise ValueError(
                f"{str(partial)!r} was written by an older psppyro ({info['format']}); delete it "
                "and run generate(...) again"
            )
        spec = _store.store_spec(info)
        group = _store.check_arrays(partial, spec, mode="r+")
        done = set(_store.verify_dataset(partial))
    else:
        flags = _probe_flags(process, pm, phi_values[0], seed) if labelled else []
        layout = {"flags": flags}
        attrs = {
            "process": json.dumps(config["process"]),
            "properties": json.dumps(config["properties"]),
            "seed": int(seed),
            "design": design_name,
            "n_phi": n_phi,
            "per_phi": per_phi,
            "chunk_size": chunk_size,
            "labelled": labelled,
            "psppyro_version": _version(),
            "git_revision": _git_revision(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store_format": _store.STORE_FORMAT,
            "generation_config": json.dumps(config),
        }
        if preset_name is not None:
            attrs["preset"] = str(preset_name)
        _create_store(partial, process, pm, phi_values, config, layout, attrs)
        spec = {**config, **layout}
        group = _store.check_arrays(partial, spec, mode="r+")
        done = set()

    n = n_phi * per_phi
    n_chunks = -(-n // chunk_size)
    phis_per_chunk = chunk_size // per_phi
    tasks = []
    for k in range(n_chunks):
        if k in done:
            continue
        i0 = k * phis_per_chunk
        block = phi_values[i0 : i0 + phis_per_chunk]
        tasks.append((k, block, i0, per_phi, int(seed), labelled))

    from tqdm.auto import tqdm

    done_samples = sum(min(chunk_size, n - k * chunk_size) for k in done)
    bar = tqdm(
        total=n,
        initial=done_samples,
        unit="sample",
        disable=not progress,
        desc=f"generate {Path(path).name}",
        smoothing=0.1,
    )

    zarrays = {}

    def emit(task, out):
        k = task[0]
        start, stop = k * chunk_size, min((k + 1) * chunk_size, n)
        arrays = {"x": out["x"]}
        if labelled:
            arrays["m"] = out["m"]
            if sorted(out["flags"]) != spec["flags"]:
                raise ValueError(
                    f"property map returned flags {sorted(out['flags'])}, the store has "
                    f"{spec['flags']}"
                )
            arrays.update(out["flags"])
        files = {}
        for name, value in arrays.items():
            if name not in zarrays:
                zarrays[name] = group[name]
            zarrays[name][start:stop] = value
            rel = _store.chunk_file(zarrays[name], name, k)
            files[rel] = _store.fingerprint(partial / rel, sync=True)
        marker = {"start": start, "stop": stop, "sha256": _store.chunk_hash(arrays), "files": files}
        _store.write_marker(partial, k, marker)
        bar.update(stop - start)

    try:
        if client is not None:
            _run_dask(tasks, process, pm, client, emit)
        else:
            workers = min(workers, max(1, len(tasks)))
            if workers == 1:
                _run_serial(tasks, process, pm, emit)
            else:
                _run_pool(tasks, process, pm, workers, emit)
    finally:
        bar.close()
    _store.complete_store(partial, final)
    return _store.open_dataset(final)


def _refuse_other_config(folder, config, what):
    diff = _store.config_differences(_store.read_format(folder)["config"], config)
    if diff:
        raise ValueError(
            f"{what} {str(folder)!r} was generated with other arguments; refusing to "
            "mix them (delete it to start over, or call generate with its arguments). "
            "Differences:\n" + "\n".join(diff)
        )


def _version():
    from .. import __version__

    return __version__
