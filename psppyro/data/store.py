"""Triad datasets on disk: xarray on Zarr, built beside the target path, checked whenever opened.

A dataset of ``n_phi`` φ values with ``per_phi`` microstructures each holds ``n = n_phi · per_phi``
samples. On disk it is a Zarr v3 group with consolidated metadata (plain ``xarray.open_zarr(path)``
reads it) with the schema

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

**Building.** :func:`~psppyro.data.generate` never writes to ``path`` itself: it builds the store
in the sibling folder ``<path>.partial`` and renames that folder to ``path`` (one atomic
``os.rename``) once every chunk is written. A folder at ``path`` is therefore always a finished
store, and a failed or killed run leaves only ``<path>.partial``, which names itself unfinished and
records the generation arguments, so that only a run with the same arguments resumes it. Beside
the data each store keeps a folder ``_psppyro/``:

- ``_psppyro/`` is an empty Zarr subgroup (so Zarr tools accept it);
- ``_psppyro/format.json`` is there from the start (the folder is claimed by renaming a
  temporary folder that already holds it): the store format and the generation configuration. A
  folder without it is not ours and is never modified;
- ``_psppyro/initialized.json``: the Zarr metadata, ``phi`` and ``phi_index`` are complete; it
  records a fingerprint of each of those files;
- ``_psppyro/chunks/<k>.json`` marks chunk ``k`` (samples ``k·c … (k+1)·c − 1``) complete. It is
  written atomically (temporary file + ``os.replace``) *after* the chunk's data, and holds the
  SHA-256 of the chunk's decoded arrays and a fingerprint of each of its chunk files;
- ``_psppyro/complete.json``: every chunk is written (all the chunk records in one file); written
  just before the rename.

A *fingerprint* is the file's size and the CRC-32 of its bytes (of its first and last 64 KiB for
files above 128 KiB), or ``null`` for a chunk Zarr did not write because it holds only the fill
value. A run killed at any moment leaves every chunk either marked (its data fully written) or
unmarked (recomputed on resume, overwriting whatever partial bytes it left). Since every sample
sits at a fixed position and is a pure function of (seed, φ index), the resumed dataset is
identical to an uninterrupted one, with every sample present exactly once.

**Checking.** :func:`open_dataset` compares the fingerprint of every recorded file with the file
on disk (a ``stat`` and a read of at most 128 KiB per file: milliseconds for a 10 000-triad store),
which detects a deleted, truncated, overwritten or swapped chunk file before anything is read. While
the data are read, each chunk file's size is checked again and decoding errors are reported as
``chunk m/3 of train.zarr is corrupt: ...``. :func:`verify_dataset` (``psppyro verify PATH``)
decodes every chunk and compares it with its SHA-256, and checks φ against the generation
configuration. Problems raise :class:`CorruptStoreError` (a ``ValueError``) naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "STORE_FORMAT",
    "CorruptStoreError",
    "describe_store",
    "open_dataset",
    "partial_path",
    "verify_dataset",
]

#: Name and version of the on-disk layout, recorded in ``_psppyro/format.json``.
STORE_FORMAT = "psppyro-triads/2"
#: Format 1 (written in place, no file fingerprints) is still read and verified.
_FORMAT_1 = "psppyro-triads/1"
_READABLE = (STORE_FORMAT, _FORMAT_1)

_META = "_psppyro"
_SAMPLE = 64 * 1024  # fingerprint: whole file up to 2 * _SAMPLE bytes, else first and last _SAMPLE
_PARTIAL = ".partial"


class CorruptStoreError(ValueError):
    """A dataset store whose files differ from what was written, or that cannot be decoded.

    Example::

        >>> issubclass(CorruptStoreError, ValueError)
        True
    """


def _meta(path):
    return Path(path) / _META


def partial_path(path: str | os.PathLike) -> Path:
    """The folder in which :func:`~psppyro.data.generate` builds the store for ``path``.

    Args:
        path: the final store path.

    Returns:
        ``Path`` of the sibling ``<path>.partial``.

    Example::

        >>> partial_path("out/train.zarr").name
        'train.zarr.partial'
    """
    p = Path(path)
    return p.with_name(p.name + _PARTIAL)


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


def fingerprint(file, sync=False):
    """``[size, crc32]`` of a file (CRC of its first and last 64 KiB when larger than 128 KiB),
    or ``None`` if it does not exist; ``sync=True`` also flushes it to disk first (so that a
    completion marker written afterwards never outlives its data in a power loss)."""
    try:
        with open(file, "rb") as fh:
            if sync:
                os.fsync(fh.fileno())
            size = os.fstat(fh.fileno()).st_size
            if size <= 2 * _SAMPLE:
                crc = zlib.crc32(fh.read())
            else:
                crc = zlib.crc32(fh.read(_SAMPLE))
                fh.seek(size - _SAMPLE)
                crc = zlib.crc32(fh.read(_SAMPLE), crc)
    except FileNotFoundError:
        return None
    return [size, crc]


def chunk_file(array, name, k):
    """Path (relative to the store) of the file of sample-chunk ``k`` of the Zarr array ``name``."""
    coords = (k,) + (0,) * (len(array.shape) - 1)
    return f"{name}/{array.metadata.chunk_key_encoding.encode_chunk_key(coords)}"


# --------------------------------------------------------------------------- classification
def _read_json(path, file, what):
    try:
        return json.loads(Path(file).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CorruptStoreError(
            f"dataset store {str(path)!r} is corrupted: cannot read {what} {file}: {err}"
        ) from err


def read_format(path):
    """The ``format.json`` content of a store: ``{"format": ..., "config": {...}, ...}``."""
    fmt = _meta(path) / "format.json"
    info = _read_json(path, fmt, "its format file")
    if not isinstance(info, dict) or info.get("format") not in _READABLE or "config" not in info:
        raise CorruptStoreError(
            f"dataset store {str(path)!r} has an unknown format in {fmt}: "
            f"{str(info)[:200]!r}; this version reads {list(_READABLE)}"
        )
    return info


def classify(path):
    """State of the folder ``path``.

    Returns:
        ``"new"`` (absent, or an empty folder), ``"uninitialized"`` (ours, metadata incomplete),
        ``"incomplete"`` (ours, some chunks missing) or ``"complete"``.

    Raises:
        ValueError: if ``path`` is a file or a non-empty folder that is not a psppyro store.
    """
    p = Path(path)
    if not p.exists():
        return "new"
    if not p.is_dir():
        raise ValueError(f"path {str(p)!r} exists and is a file, not a dataset store (a folder)")
    if not (_meta(p) / "format.json").exists():
        if any(p.iterdir()):
            raise ValueError(
                f"path {str(p)!r} is a non-empty folder that is not a psppyro dataset store "
                f"(no {_META}/format.json): a foreign Zarr store or other data. Choose a new path; "
                "psppyro never writes into folders it did not create"
            )
        return "new"
    info = read_format(p)
    if info["format"] == _FORMAT_1:
        if not (_meta(p) / "initialized").exists():
            return "uninitialized"
        return "complete" if len(read_markers(p)) == n_chunks(store_spec(info)) else "incomplete"
    if not (_meta(p) / "initialized.json").exists():
        return "uninitialized"
    return "complete" if (_meta(p) / "complete.json").exists() else "incomplete"


def store_spec(info):
    """Configuration and layout of a store merged into one dict (what the readers need)."""
    return {**info["config"], **info.get("layout", {})}


def n_chunks(config):
    """Number of chunks of a store configuration."""
    return -(-config["n_phi"] * config["per_phi"] // config["chunk_size"])


def config_differences(stored, requested):
    """Lines ``key: stored=… requested=…`` for the keys where two configurations differ."""
    lines = []
    for key in sorted(set(stored) | set(requested)):
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if a != b:
            lines.append(f"  {key}: stored={json.dumps(a)[:300]} requested={json.dumps(b)[:300]}")
    return lines


# --------------------------------------------------------------------------- writing
def begin_store(partial, config, layout):
    """Claim the folder ``partial``: a temporary sibling with ``format.json`` renamed into place.

    An earlier folder that never got its metadata (it holds no finished sample) is removed first.
    ``config`` is what a resume must match; ``layout`` holds what follows from it (flag names).
    """
    p = Path(partial)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists():
        if (_meta(p) / "format.json").exists():
            shutil.rmtree(p)
        else:
            p.rmdir()  # an empty folder (classify refuses anything else)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.claim-", dir=p.parent))
    try:
        (_meta(tmp) / "chunks").mkdir(parents=True)
        # An empty Zarr group, so that Zarr and xarray see the folder as a (foreign to them)
        # subgroup instead of warning about an unknown object in the hierarchy.
        _atomic_write(
            _meta(tmp) / "zarr.json",
            json.dumps(
                {"zarr_format": 3, "node_type": "group", "attributes": {"psppyro": "progress"}}
            ),
        )
        _atomic_write(
            _meta(tmp) / "format.json",
            json.dumps(
                {
                    "format": STORE_FORMAT,
                    "note": "unfinished while this folder is named *.partial: resume it with "
                    "generate(...) and exactly these arguments (config)",
                    "config": config,
                    "layout": layout,
                }
            ),
        )
        os.rename(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _walk_files(root):
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts[:1] == (_META,):
            dirnames[:] = []
            continue
        out.extend((rel / f).as_posix() for f in filenames)
    return sorted(out)


def finish_store(path):
    """Mark the metadata, ``phi`` and ``phi_index`` complete, recording their fingerprints."""
    files = {rel: fingerprint(Path(path) / rel, sync=True) for rel in _walk_files(path)}
    _atomic_write(_meta(path) / "initialized.json", json.dumps({"files": files}))


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
            raise CorruptStoreError(
                f"dataset store {str(path)!r} is corrupted: bad completion marker {f}: {err}"
            ) from err
    return out


def _sync_dir(folder):
    """Make a rename in ``folder`` durable (where the platform allows opening folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def complete_store(partial, final):
    """Record all chunks in ``complete.json`` and rename ``partial`` to ``final`` (atomic)."""
    config = store_spec(read_format(partial))
    markers = read_markers(partial)
    missing = sorted(set(range(n_chunks(config))) - set(markers))
    if missing:
        raise RuntimeError(f"internal error: chunks {missing[:10]} of {partial} are not written")
    _atomic_write(
        _meta(partial) / "complete.json",
        json.dumps({"n_chunks": len(markers), "chunks": {str(k): markers[k] for k in markers}}),
    )
    try:
        os.rename(partial, final)
        _sync_dir(Path(final).parent)
    except OSError as err:
        raise ValueError(
            f"the dataset is complete in {str(partial)!r} but cannot be renamed to "
            f"{str(final)!r} ({err}); a folder appeared there meanwhile. Move one of them away "
            "and run generate(...) again (it only renames)"
        ) from err


# --------------------------------------------------------------------------- checking
def _open_group(path, mode="r"):
    import zarr

    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as err:  # zarr raises several types for unreadable metadata
        raise CorruptStoreError(
            f"dataset store {str(path)!r} is corrupted: its Zarr metadata cannot be read "
            f"({type(err).__name__}: {err})"
        ) from err


def check_arrays(path, config, mode="r"):
    """Open the Zarr group and check that every array has the shape the configuration implies.

    Returns:
        the ``zarr.Group`` (writable with ``mode="r+"``).
    """
    group = _open_group(path, mode=mode)
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
        raise CorruptStoreError(f"dataset store {str(path)!r} is corrupted: {err}") from err
    for name, shape in expected.items():
        if name not in names:
            raise CorruptStoreError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} is missing "
                f"(found {sorted(names)})"
            )
        try:
            got = tuple(group[name].shape)
        except Exception as err:
            raise CorruptStoreError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} is unreadable: {err}"
            ) from err
        if got != shape:
            raise CorruptStoreError(
                f"dataset store {str(path)!r} is corrupted: variable {name!r} has shape {got}, "
                f"expected {shape}"
            )
    return group


def data_names(config):
    """The per-chunk variables: ``x``, and ``m`` plus the flags if labelled."""
    return ["x"] + (["m", *config["flags"]] if config["labelled"] else [])


def _file_problem(root, rel, fp):
    """Why the file ``rel`` differs from its fingerprint ``fp`` (``None`` if it does not)."""
    got = fingerprint(Path(root) / rel)
    if got == fp:
        return None
    if fp is None:
        return (
            f"file {rel} exists ({got[0]} bytes) but none was written (the chunk held only the "
            "fill value): it was put there afterwards"
        )
    if got is None:
        return f"file {rel} is missing (deleted; {fp[0]} bytes were written)"
    if got[0] != fp[0]:
        return f"file {rel} has {got[0]} bytes but {fp[0]} were written (truncated or replaced)"
    return (
        f"file {rel} holds other bytes than were written (fingerprint mismatch: swapped with "
        "another file or overwritten)"
    )


_REMEDY = "the store must be regenerated (delete it and run generate(...) again)"


def _records(path, info, state):
    """``(static, chunks)``: ``{rel: fingerprint}`` of the creation files, and ``{k: marker}``."""
    if info["format"] == _FORMAT_1:
        return {}, read_markers(path)
    static = _read_json(path, _meta(path) / "initialized.json", "its creation record").get(
        "files", {}
    )
    if state == "complete":
        done = _read_json(path, _meta(path) / "complete.json", "its completion record")
        chunks = {int(k): v for k, v in done.get("chunks", {}).items()}
        if len(chunks) != done.get("n_chunks", -1):
            raise CorruptStoreError(f"dataset store {str(path)!r} is corrupted: complete.json")
    else:
        chunks = read_markers(path)
    return static, chunks


def check_files(path, static, chunks):
    """The cheap check: every recorded file matches its fingerprint.

    Raises:
        CorruptStoreError: naming the chunk (``chunk x/3 of PATH is corrupt: ...``) or file.
    """
    for rel, fp in static.items():
        problem = _file_problem(path, rel, fp)
        if problem:
            raise CorruptStoreError(f"dataset store {str(path)!r} is corrupt: {problem}; {_REMEDY}")
    for k in sorted(chunks):
        for rel, fp in chunks[k].get("files", {}).items():
            problem = _file_problem(path, rel, fp)
            if problem:
                raise CorruptStoreError(
                    f"chunk {rel.split('/')[0]}/{k} of {str(path)!r} is corrupt: {problem}; "
                    f"{_REMEDY}"
                )


def _locate(path, allow_incomplete):
    """``(folder, state, info)`` of the store to read for ``path``, with clear errors."""
    p = Path(path)
    state = classify(p)
    if state == "new":
        part = partial_path(p)
        ours = part.is_dir() and (_meta(part) / "format.json").exists()
        if not p.name.endswith(_PARTIAL) and ours:
            pstate = classify(part)
            if allow_incomplete and pstate != "uninitialized":
                return _locate(part, True)
            detail = ""
            if pstate != "uninitialized":
                cfg = store_spec(read_format(part))
                detail = f" ({len(read_markers(part))} of {n_chunks(cfg)} chunks written)"
            raise ValueError(
                f"no dataset at {str(p)!r}: its generation did not finish; the unfinished store "
                f"is {str(part)!r}{detail}. Resume it by calling generate(...) with the same "
                "arguments (or open it with allow_incomplete=True)"
            )
        what = "is an empty folder" if p.exists() else "does not exist"
        raise ValueError(f"no psppyro dataset store at {str(p)!r}: the path {what}")
    info = read_format(p)
    if state == "uninitialized":
        raise ValueError(
            f"dataset store {str(p)!r} is unfinished: its generation stopped while creating the "
            "Zarr metadata, so it holds no sample. Run generate(...) again"
        )
    if state == "incomplete" and not allow_incomplete:
        cfg = store_spec(info)
        if len(read_markers(p)) == n_chunks(cfg) and not p.name.endswith(_PARTIAL):
            raise CorruptStoreError(
                f"dataset store {str(p)!r} is corrupt: its completion record "
                f"{_META}/complete.json is missing; {_REMEDY}"
            )
        raise ValueError(
            f"dataset at {str(p)!r} is incomplete: {len(read_markers(p))} of {n_chunks(cfg)} "
            "chunks were generated. Resume it by calling generate(...) with the same arguments "
            "(or open it with allow_incomplete=True)"
        )
    return p, state, info


def _checked(path, allow_incomplete):
    folder, state, info = _locate(path, allow_incomplete)
    config = store_spec(info)
    static, chunks = _records(folder, info, state)
    check_files(folder, static, chunks)
    group = check_arrays(folder, config)
    return folder, state, info, config, static, chunks, group


def _check_phi(path, group, config):
    n_phi, per_phi = config["n_phi"], config["per_phi"]
    try:
        phi = np.asarray(group["phi"][:], dtype=np.float64)
        index = np.asarray(group["phi_index"][:])
    except Exception as err:
        raise CorruptStoreError(
            f"variable phi of {str(path)!r} is corrupt: cannot be decoded "
            f"({type(err).__name__}: {err})"
        ) from err
    if not np.array_equal(index, np.repeat(np.arange(n_phi), per_phi)):
        raise CorruptStoreError(f"variable phi_index of {str(path)!r} is corrupt: wrong values")
    groups = phi.reshape(n_phi, per_phi, -1)
    digest = hashlib.sha256(np.ascontiguousarray(groups[:, 0]).tobytes()).hexdigest()
    if not (groups == groups[:, :1]).all() or digest != config.get("phi_sha256"):
        raise CorruptStoreError(
            f"variable phi of {str(path)!r} is corrupt: its values differ from the generation "
            "configuration (SHA-256 mismatch)"
        )


def verify_dataset(path: str | os.PathLike) -> list[int]:
    """Full check of a store: fingerprints, and every chunk decoded and compared with its SHA-256.

    Also checks ``phi`` and ``phi_index`` against the generation configuration. This reads the
    whole dataset; :func:`open_dataset` does the cheap part (fingerprints) on every open.

    Args:
        path: the store (a finished one, or an unfinished ``<path>.partial``: then only its
            completed chunks are checked).

    Returns:
        the sorted list of completed chunk numbers.

    Raises:
        CorruptStoreError: naming the first chunk that differs from what was written or cannot
            be decoded (``chunk x/3 of PATH is corrupt: ...``).
        ValueError: if ``path`` is not a psppyro store or its generation did not finish (the
            message names ``<path>.partial``).

    Example::

        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     verify_dataset(os.path.join(d, "none.zarr"))
        Traceback (most recent call last):
        ...
        ValueError: no psppyro dataset store at '...': the path does not exist
    """
    # An unfinished folder is checked as far as it goes; a missing path is an error that names
    # its unfinished <path>.partial (if any) instead of silently checking that.
    allow = classify(path) != "new"
    folder, _, _, config, _, chunks, group = _checked(path, allow_incomplete=allow)
    _check_phi(folder, group, config)
    c, n = config["chunk_size"], config["n_phi"] * config["per_phi"]
    for k in sorted(chunks):
        arrays = {}
        for name in data_names(config):
            try:
                arrays[name] = group[name][k * c : min((k + 1) * c, n)]
            except Exception as err:
                raise CorruptStoreError(
                    f"chunk {name}/{k} of {str(folder)!r} is corrupt: it cannot be decoded "
                    f"({type(err).__name__}: {err}); {_REMEDY}"
                ) from err
        if chunk_hash(arrays) != chunks[k].get("sha256"):
            raise CorruptStoreError(
                f"chunk {k} (samples {chunks[k].get('start')}..{chunks[k].get('stop')}) of "
                f"{str(folder)!r} is corrupt: it differs from what was written (SHA-256 "
                f"mismatch); {_REMEDY}"
            )
    return sorted(chunks)


def describe_store(path: str | os.PathLike) -> dict:
    """What a store holds, from its records (no data read; nothing checked beyond the format).

    Args:
        path: a store, or an unfinished ``<path>.partial``.

    Returns:
        dict with ``path``, ``format``, ``complete`` (bool), ``n_samples``, ``n_chunks``,
        ``chunks_done`` and ``variables`` (the per-sample data variables).

    Raises:
        ValueError: if ``path`` is not a psppyro store.

    Example::

        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     describe_store(os.path.join(d, "none.zarr"))
        Traceback (most recent call last):
        ...
        ValueError: no psppyro dataset store at '...': the path does not exist
    """
    folder, state, info = _locate(path, allow_incomplete=True)
    config = store_spec(info)
    return {
        "path": str(folder),
        "format": info["format"],
        "complete": state == "complete",
        "n_samples": config["n_phi"] * config["per_phi"],
        "n_chunks": n_chunks(config),
        "chunks_done": len(_records(folder, info, state)[1]),
        "variables": ["phi", "phi_index", *data_names(config)],
    }


# --------------------------------------------------------------------------- reading
class _GuardedArray:
    """Read access to one Zarr array that re-checks each chunk file and names corrupt chunks.

    Used as the source of the Dask arrays of :func:`open_dataset`: a chunk file whose size
    differs from the record (deleted, truncated since the open) or that fails to decode raises
    :class:`CorruptStoreError` ``chunk m/3 of PATH is corrupt: ...`` instead of reading as the
    fill value (NaN, 0) or as a bare codec error.
    """

    def __init__(self, root, name, expected, unfinished=(), array=None):
        self.root, self.name, self.expected = str(root), name, expected
        self.unfinished = frozenset(unfinished)  # chunks without a marker: read as fill values
        self._arr = array  # reopened lazily after unpickling
        arr = self._array()
        self.shape, self.dtype, self.ndim = tuple(arr.shape), np.dtype(arr.dtype), arr.ndim
        self.rows = int(arr.chunks[0])
        self.fill = arr.fill_value

    def _array(self):
        if self._arr is None:
            import zarr

            self._arr = zarr.open_array(os.path.join(self.root, self.name), mode="r", zarr_format=3)
        return self._arr

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_arr"} | {"_arr": None}

    def __dask_tokenize__(self):
        return (
            "psppyro-guarded",
            self.root,
            self.name,
            sorted(self.expected.items()),
            sorted(self.unfinished),
        )

    def _chunks(self, key):
        rows = key[0] if key else slice(None)
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(self.shape[0])
            return range(start // self.rows, -(-stop // self.rows)) if stop > start else range(0)
        if isinstance(rows, (int, np.integer)):
            k = int(rows) % self.shape[0] // self.rows
            return range(k, k + 1)
        return range(-(-self.shape[0] // self.rows))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        arr = self._array()
        ks = self._chunks(key)
        for k in ks:
            rel = chunk_file(arr, self.name, k)
            if rel not in self.expected:
                continue
            fp = self.expected[rel]
            try:
                size = os.stat(os.path.join(self.root, rel)).st_size
            except FileNotFoundError:
                size = None
            if size != (None if fp is None else fp[0]):
                raise CorruptStoreError(
                    f"chunk {self.name}/{k} of {self.root!r} is corrupt: "
                    f"{_file_problem(self.root, rel, fp)}; {_REMEDY}"
                )
        try:
            out = np.asarray(arr[key])
        except Exception as err:
            which = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}-{ks[-1]}" if len(ks) else "?"
            raise CorruptStoreError(
                f"chunk {self.name}/{which} of {self.root!r} is corrupt: it cannot be decoded "
                f"({type(err).__name__}: {err}); {_REMEDY}"
            ) from err
        if self.unfinished and not self.unfinished.isdisjoint(ks):
            rows = key[0] if key else slice(None)
            if isinstance(rows, slice):
                positions = np.arange(*rows.indices(self.shape[0]))
                out[np.isin(positions // self.rows, list(self.unfinished))] = self.fill
            elif int(rows) // self.rows in self.unfinished:
                out[...] = self.fill
        return out


def _guard(ds, folder, group, config, static, chunks):
    import dask.array as da
    from dask.base import tokenize

    expected = dict(static)
    for marker in chunks.values():
        expected.update(marker.get("files", {}))
    names = set(group.array_keys())
    unfinished = set(range(n_chunks(config))) - set(chunks)
    per_chunk = set(data_names(config))
    ds = ds.copy(deep=False)  # new Variable objects: their data can be replaced in place
    for name in list(ds.variables):
        var = ds.variables[name]
        if name not in names or "sample" not in var.dims or not hasattr(var.data, "dask"):
            continue
        src = _GuardedArray(
            folder, name, expected, unfinished if name in per_chunk else (), group[name]
        )
        if src.dtype != var.dtype or src.shape != var.shape:
            continue  # decoded by xarray: keep its reader
        data = da.from_array(
            src,
            chunks=var.data.chunks,
            name=f"psppyro-{name}-{tokenize(src)}",
            meta=np.empty((0,) * src.ndim, dtype=src.dtype),
            fancy=False,
            lock=False,
        )
        var.data = data  # same shape, dims, attrs and encoding; no re-alignment
    return ds


def open_dataset(path: str | os.PathLike, *, allow_incomplete: bool = False, verify: bool = False):
    """Open a triad dataset lazily (Dask-backed ``xarray.Dataset``) after checking it.

    Every open compares each recorded chunk file with its fingerprint (size and CRC-32; module
    docstring), so a deleted, truncated or swapped chunk is an error here, never NaN or wrong
    values later; reads re-check the size and name the chunk of any decoding error.

    Args:
        path: the store written by :func:`~psppyro.data.generate`.
        allow_incomplete: open a dataset whose generation has not finished (``path`` or its
            ``<path>.partial``); the unfinished chunks read as ``x = 0``, ``m = NaN`` and
            flags ``False``, whatever a killed write left there. Otherwise that is an error.
        verify: also decode every chunk and check it against the SHA-256 recorded when it was
            written (reads the whole dataset; :func:`verify_dataset`).

    Returns:
        ``xarray.Dataset`` with the schema of the module docstring; ``attrs["chunks_done"]`` and
        ``attrs["n_chunks"]`` tell how much of it is written.

    Raises:
        CorruptStoreError: for files that differ from what was written.
        ValueError: if ``path`` does not exist, is not a psppyro store, or is unfinished.

    Example::

        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     open_dataset(os.path.join(d, "missing.zarr"))
        Traceback (most recent call last):
        ...
        ValueError: no psppyro dataset store at '...': the path does not exist
    """
    import xarray as xr

    if not isinstance(allow_incomplete, bool) or not isinstance(verify, bool):
        raise TypeError(
            f"allow_incomplete and verify must be True or False, got {allow_incomplete!r}, "
            f"{verify!r}"
        )
    folder, state, info, config, static, chunks, group = _checked(path, allow_incomplete)
    if verify:
        verify_dataset(folder)
    consolidated = info["format"] != _FORMAT_1
    try:
        with warnings.catch_warnings():
            if not consolidated:
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(str(folder), consolidated=consolidated, zarr_format=3)
    except Exception as err:
        raise CorruptStoreError(f"dataset store {str(folder)!r} is corrupted: {err}") from err
    ds = _guard(ds, folder, group, config, static, chunks)
    ds.attrs["chunks_done"] = len(chunks)
    ds.attrs["n_chunks"] = n_chunks(config)
    return ds
