"""Triad datasets on disk: xarray on Zarr, written chunk by chunk, resumable after any crash.

A dataset of ``n_phi`` φ values with ``per_phi`` microstructures each holds ``n = n_phi · per_phi``
samples. On disk it is a Zarr v3 group (read with ``xarray.open_zarr``) with the schema

====================  ===========================  ==========================================
variable              dims                         meaning
====================  ===========================  ==========================================
``phi``               (sample, phi_dim) float64    process parameters of each sample
``phi_index``         (sample,) int64              index of the φ value (shared by its
                                                   ``per_phi`` microstructures)
``x``                 (sample, y, x) uint8         binary microstructure (3-D: sample, z, y, x)
``m``                 (sample, m_dim) float64      properties (absent for unlabelled sets)
one per flag          (sample, m_dim) bool         e.g. ``percolates``
====================  ===========================  ==========================================

with coordinates ``phi_dim`` (the process's ``phi_names``) and ``m_dim`` (the property components),
and provenance in the attributes (``process``, ``properties``: JSON; ``seed``, ``design``,
``n_phi``, ``per_phi``, ``chunk_size``, ``labelled``, ``psppyro_version``, ``git_revision``,
``created``, ``preset`` and ``generation_config``). Because the microstructure variable and the
horizontal image dimension are both called ``x``, xarray lists ``x`` among the coordinates; read it
as ``ds["x"]``.

Crash safety. Beside the data the store keeps a folder ``_psppyro/``:

- ``_psppyro/`` is an empty Zarr subgroup (so Zarr tools accept it);
- ``_psppyro/format.json`` is written *first* and names the store format and the generation
  configuration; a folder without it is not ours and is never modified;
- ``_psppyro/initialized`` is written once the Zarr metadata, ``phi`` and ``phi_index`` are
  complete;
- ``_psppyro/chunks/<k>.json`` marks chunk ``k`` (samples ``k·c … (k+1)·c − 1``) complete. It is
  written atomically (temporary file + ``os.replace``) *after* the chunk's data, and holds the
  SHA-256 of the chunk's bytes.

A run killed at any moment therefore leaves every chunk either marked (its data fully written) or
unmarked (recomputed on resume, overwriting whatever partial bytes it left). Since every sample sits
at a fixed position and is a pure function of (seed, φ index), the resumed dataset is identical to
an uninterrupted one, with every sample present exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

__all__ = ["STORE_FORMAT", "open_dataset", "verify_dataset"]

#: Name and version of the on-disk layout, recorded in ``_psppyro/format.json``.
STORE_FORMAT = "psppyro-triads/1"

_META = "_psppyro"


def _meta(path):
    return Path(path) / _META


def _atomic_write(file, text):
    file = Path(file)
    tmp = file.with_name(file.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)


def chunk_hash(arrays):
    """SHA-256 (hex) of a chunk: the bytes of each named array in sorted-name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def store_state(path):
    """Classify ``path``: ``"new"``, ``"partial"`` (ours, metadata incomplete) or ``"ours"``.

    Raises:
        ValueError: if ``path`` is a file or a non-empty folder that is not a psppyro store.
    """
    p = Path(path)
    if not p.exists():
        return "new"
    if not p.is_dir():
        raise ValueError(f"path {str(p)!r} exists and is a file, not a dataset store (a folder)")
    fmt = _meta(p) / "format.json"
    if not fmt.exists():
        if any(p.iterdir()):
            raise ValueError(
                f"path {str(p)!r} is a non-empty folder that is not a psppyro dataset store "
                f"(no {_META}/format.json): a foreign Zarr store or other data. Choose a new path; "
                "psppyro never writes into folders it did not create"
            )
        return "new"
    read_format(p)  # raises on a garbled format file
    return "ours" if (_meta(p) / "initialized").exists() else "partial"


def read_format(path):
    """The ``format.json`` content of a store: ``{"format": ..., "config": {...}}``."""
    fmt = _meta(path) / "format.json"
    try:
        info = json.loads(fmt.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"dataset store {str(path)!r} is corrupted: cannot read {fmt}: {err}"
        ) from err
    if not isinstance(info, dict) or info.get("format") != STORE_FORMAT or "config" not in info:
        raise ValueError(
            f"dataset store {str(path)!r} has an unknown format in {fmt}: "
            f"{str(info)[:200]!r}; this version reads {STORE_FORMAT!r}"
        )
    return info


def store_spec(info):
    """Configuration and layout of a store merged into one dict (what the readers need)."""
    return {**info["config"], **info.get("layout", {})}


def begin_store(path, config, layout):
    """Create the folder and claim it (``format.json``), removing an earlier partial creation.

    ``config`` is what a resume must match; ``layout`` holds what follows from it (flag names).
    """
    p = Path(path)
    if p.exists() and (_meta(p) / "format.json").exists():
        shutil.rmtree(p)  # ours and never initialized: holds no finished sample
    (_meta(p) / "chunks").mkdir(parents=True, exist_ok=True)
    # An empty Zarr group, so that Zarr and xarray see the folder as a (foreign to them) subgroup
    # instead of warning about an unknown object in the hierarchy.
    _atomic_write(
        _meta(p) / "zarr.json",
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"psppyro": "progress"}}),
    )
    _atomic_write(
        _meta(p) / "format.json",
        json.dumps({"format": STORE_FORMAT, "config": config, "layout": layout}),
    )


def finish_store(path):
    """Mark the metadata, ``phi`` and ``phi_index`` complete."""
    _atomic_write(_meta(path) / "initialized", "ok\n")


def write_marker(path, k, info):
    """Mark chunk ``k`` complete (after its data has been written)."""
    _atomic_write(_meta(path) / "chunks" / f"{k:08d}.json", json.dumps(info))


def read_markers(path):
    """``{k: marker}`` for the completed chunks (left-over temporary files are ignored)."""
    folder = _meta(path) / "chunks"
    out = {}
    if not folder.exists():
        return out
    for f in folder.iterdir():
        if f.suffix != ".json":
            continue
        try:
            k = int(f.stem)
            out[k] = json.loads(f.read_text())
        except (ValueError, json.JSONDecodeError, OSError) as err:
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: bad completion marker {f}: {err}"
            ) from err
    return out


def config_differences(stored, requested):
    """Lines ``key: stored=… requested=…`` for the keys where two configurations differ."""
    lines = []
    for key in sorted(set(stored) | set(requested)):
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if a != b:
            lines.append(f"  {key}: stored={json.dumps(a)[:300]} requested={json.dumps(b)[:300]}")
    return lines


def _open_group(path, mode="r"):
    import zarr

    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as err:  # zarr raises several types for unreadable metadata
        raise ValueError(
            f"dataset store {str(path)!r} is corrupted: its Zarr metadata cannot be read "
            f"({type(err).__name__}: {err})"
        ) from err


def check_arrays(path, config):
    """Open the Zarr group and check that every array has the shape the configuration implies.

    Returns:
        the writable ``zarr.Group``.
    """
    group = _open_group(path, mode="r+")
    n = config["n_phi"] * config["per_phi"]
    expected = {
        "phi": (n, len(config["phi_names"])),
        "phi_index": (n,),
        "x": (n, *config["shape"]),
    }
    if config["labelled"]:
        expected["m"] = (n, len(config["components"]))
        for flag in config["flags"]:
            expected[flag] = (n, len(config["components"]))
    try:
        names = set(group.array_keys())
    except Exception as err:
        raise ValueError(f"dataset store {str(path)!r} is corrupted: {err}") from err
    for name, shape in expected.items():
        if name not in names:
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} is missing "
                f"(found {sorted(names)})"
            )
        try:
            got = tuple(group[name].shape)
        except Exception as err:
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} is unreadable: {err}"
            ) from err
        if got != shape:
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} has shape {got}, "
                f"expected {shape}"
            )
    return group


def read_chunk(group, config, k):
    """The arrays of chunk ``k`` as written (``x``, and ``m`` plus flags if labelled)."""
    c, n = config["chunk_size"], config["n_phi"] * config["per_phi"]
    sl = slice(k * c, min((k + 1) * c, n))
    names = ["x"] + (["m", *config["flags"]] if config["labelled"] else [])
    return {name: group[name][sl] for name in names}


def _checked_store(path):
    """The store's configuration and its array group, after checking that it is ours."""
    if store_state(path) != "ours":
        raise ValueError(
            f"no psppyro dataset store at {str(path)!r} (missing or never initialized)"
        )
    config = store_spec(read_format(path))
    return config, check_arrays(path, config)


def verify_dataset(path):
    """Re-read every completed chunk and compare it with the hash in its completion marker.

    Args:
        path: the store.

    Returns:
        the sorted list of completed chunk numbers.

    Raises:
        ValueError: naming the first chunk whose bytes differ from what was written, or any
            structural corruption.

    Example::

        >>> import tempfile, os
        >>> verify_dataset(os.path.join(tempfile.mkdtemp(), "none.zarr"))
        Traceback (most recent call last):
        ...
        ValueError: no psppyro dataset store at ...
    """
    config, group = _checked_store(path)
    markers = read_markers(path)
    for k in sorted(markers):
        try:
            digest = chunk_hash(read_chunk(group, config, k))
        except Exception as err:
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: chunk {k} cannot be read ({err})"
            ) from err
        if digest != markers[k].get("sha256"):
            raise ValueError(
                f"dataset store {str(path)!r} is corrupted: chunk {k} (samples "
                f"{markers[k].get('start')}..{markers[k].get('stop')}) differs from what was "
                "written (SHA-256 mismatch). Regenerate it: delete the marker "
                f"{_META}/chunks/{k:08d}.json and call generate(...) again with the same arguments"
            )
    return sorted(markers)


def open_dataset(path, *, allow_incomplete=False, verify=False):
    """Open a triad dataset lazily (Dask-backed ``xarray.Dataset``) after checking its schema.

    Args:
        path: the store written by :func:`~psppyro.data.generate`.
        allow_incomplete: open a dataset whose generation has not finished (unfinished chunks read
            as ``x = 0`` and ``m = NaN``); otherwise that is an error.
        verify: also re-read every chunk and check it against the SHA-256 recorded when it was
            written (reads the whole dataset).

    Returns:
        ``xarray.Dataset`` with the schema of the module docstring.

    Raises:
        ValueError: if ``path`` is not a psppyro store, is corrupted, or is incomplete.

    Example::

        >>> import os, tempfile
        >>> open_dataset(os.path.join(tempfile.mkdtemp(), "missing.zarr"))
        Traceback (most recent call last):
        ...
        ValueError: no psppyro dataset store at ...
    """
    import xarray as xr

    config, _ = _checked_store(path)
    done = verify_dataset(path) if verify else sorted(read_markers(path))
    n_chunks = -(-config["n_phi"] * config["per_phi"] // config["chunk_size"])
    if len(done) != n_chunks and not allow_incomplete:
        raise ValueError(
            f"dataset at {str(path)!r} is incomplete: {len(done)} of {n_chunks} chunks were "
            "generated. Resume it by calling generate(...) with the same arguments (or open it "
            "with allow_incomplete=True)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = xr.open_zarr(str(path), consolidated=False, zarr_format=3)
    except Exception as err:
        raise ValueError(f"dataset store {str(path)!r} is corrupted: {err}") from err
    ds.attrs["chunks_done"] = len(done)
    ds.attrs["n_chunks"] = n_chunks
    return ds
