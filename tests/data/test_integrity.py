"""Corrupt stored data is detected, never read as NaN or wrong values (issue 10).

Each test damages a real store the way a disk, a copy or a person can (a deleted, swapped or
truncated chunk file, an unfinished generation, a foreign or missing path) and checks that
``open_dataset`` (what ``psppyro train`` uses), the reads after it and ``psppyro verify`` report
it with the path and the chunk.
"""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from psppyro.cli import main
from psppyro.data import (
    CorruptStoreError,
    describe_store,
    generate,
    open_dataset,
    partial_path,
    to_torch,
    verify_dataset,
)
from psppyro.data.store import fingerprint

from ._standins import FRACTIONS, NoiseThresholdProcess


def _make(path, seed=3):
    """6 phi x 2 samples in 3 chunks of 4; with seed 3 the flag chunks 0 and 1 have equal sizes."""
    return generate(
        NoiseThresholdProcess(12),
        FRACTIONS,
        n_phi=6,
        per_phi=2,
        seed=seed,
        chunk_size=4,
        path=str(path),
        progress=False,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("integrity") / "train.zarr"
    ds = _make(path)
    return path, {v: ds[v].values.copy() for v in ("phi", "x", "m", "percolates")}


@pytest.fixture
def store(pristine, tmp_path):
    path = tmp_path / "train.zarr"
    shutil.copytree(pristine[0], path)  # a copy is a valid store: nothing depends on inodes
    return path


def _verify_cli(path, capsys):
    status = main(["verify", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_intact_store_opens_and_verifies(store, pristine, capsys):
    ds = open_dataset(store, verify=True)
    for name, values in pristine[1].items():
        np.testing.assert_array_equal(ds[name].values, values)
    batches = list(to_torch(ds, ("x", "m"), batch_size=5))  # guarded lazy reads
    np.testing.assert_array_equal(np.concatenate([b["m"].numpy() for b in batches]), ds["m"].values)
    assert verify_dataset(store) == [0, 1, 2]
    info = describe_store(store)
    assert info["complete"] and info["n_samples"] == 12 and info["n_chunks"] == 3
    status, out, err = _verify_cli(store, capsys)
    assert status == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith(f"ok: {store}: 12 samples in 3 chunks")


def test_plain_xarray_open_zarr_without_warnings(store, pristine):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(store)  # consolidated metadata: no fallback warning
        np.testing.assert_array_equal(ds["m"].values, pristine[1]["m"])
        assert ds.attrs["store_format"] == "psppyro-triads/2"


def test_deleted_chunk(store, pristine, capsys):
    ds = open_dataset(store)  # opened before the damage: the read checks again
    os.remove(store / "m" / "c" / "1" / "0")
    # Plain Zarr would read the deleted chunk as its fill value, NaN:
    assert np.isnan(zarr.open_group(str(store), mode="r")["m"][4:8]).all()
    msg = r"chunk m/1 of '.*train.zarr' is corrupt: file m/c/1/0 is missing \(deleted; \d+ bytes"
    with pytest.raises(CorruptStoreError, match=msg):
        _ = ds["m"].values
    with pytest.raises(CorruptStoreError, match=msg):
        to_torch(ds, ("m",))
    np.testing.assert_array_equal(ds["m"][:4].values, pristine[1]["m"][:4])  # chunk 0 is fine
    with pytest.raises(CorruptStoreError, match=msg):
        open_dataset(store)
    with pytest.raises(CorruptStoreError, match=msg):
        verify_dataset(store)
    status, out, err = _verify_cli(store, capsys)
    assert status == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("psppyro verify: chunk m/1 of") and "is missing" in err
    # psppyro train refuses the store before training (it read NaN rows before).
    status = main(["train", "pspgen", "--data", str(store), "--out", str(store.parent / "m.pt")])
    _, err = capsys.readouterr()
    assert status == 2 and "chunk m/1 of" in err and "is missing" in err
    assert not (store.parent / "m.pt").exists()


def test_swapped_chunk_of_equal_size(store, pristine, capsys):
    a, b = store / "percolates" / "c" / "0" / "0", store / "percolates" / "c" / "1" / "0"
    ba, bb = a.read_bytes(), b.read_bytes()
    assert len(ba) == len(bb) and ba != bb  # only the content fingerprint can tell them apart
    a.write_bytes(bb)
    b.write_bytes(ba)
    # Plain Zarr reads chunk 1's flags at chunk 0's place (wrong data, no error):
    wrong = zarr.open_group(str(store), mode="r")["percolates"][0:4]
    assert not np.array_equal(wrong, pristine[1]["percolates"][0:4])
    msg = r"chunk percolates/0 of '.*train.zarr' is corrupt: file percolates/c/0/0 holds other"
    with pytest.raises(CorruptStoreError, match=msg):
        open_dataset(store)
    status, _, err = _verify_cli(store, capsys)
    assert status == 1 and "fingerprint mismatch" in err


def test_swapped_chunks_of_other_size(store):
    a, b = store / "x" / "c" / "1" / "0" / "0", store / "x" / "c" / "2" / "0" / "0"
    ba, bb = a.read_bytes(), b.read_bytes()
    a.write_bytes(bb)
    b.write_bytes(ba)
    with pytest.raises(CorruptStoreError, match=r"chunk x/1 of .* file x/c/1/0/0 has \d+ bytes"):
        open_dataset(store)


def test_truncated_chunk_and_codec_errors(store):
    ds = open_dataset(store)
    f = store / "x" / "c" / "2" / "0" / "0"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptStoreError, match=r"chunk x/2 of .* has \d+ bytes but \d+ were"):
        _ = ds["x"].values
    with pytest.raises(CorruptStoreError, match=r"truncated or replaced"):
        open_dataset(store)
    # Garbage of the right size passes the size check of a read, then fails to decode: the
    # codec error is reported with the chunk and the path.
    f.write_bytes(bytes(len(data)))
    with pytest.raises(CorruptStoreError, match=r"chunk x/2 of '.*' is corrupt: it cannot be dec"):
        _ = ds["x"][8:].values
    with pytest.raises(CorruptStoreError, match="fingerprint mismatch"):
        open_dataset(store)


def _rerecord(path):
    """Rewrite the fingerprints in complete.json to match the files (a fingerprint collision)."""
    file = path / "_psppyro" / "complete.json"
    done = json.loads(file.read_text())
    for marker in done["chunks"].values():
        marker["files"] = {rel: fingerprint(path / rel) for rel in marker["files"]}
    file.write_text(json.dumps(done))


def test_full_verify_catches_what_fingerprints_miss(store, capsys):
    g = zarr.open_group(str(store), mode="r+")
    g["m"][4:6] = g["m"][4:6] + 1.0
    _rerecord(store)
    open_dataset(store)  # the cheap check is fooled by the re-recorded fingerprints ...
    with pytest.raises(CorruptStoreError, match=r"chunk 1 \(samples 4..8\) of .*SHA-256 mismatch"):
        verify_dataset(store)  # ... the full check is not
    with pytest.raises(CorruptStoreError, match="SHA-256 mismatch"):
        open_dataset(store, verify=True)
    status, _, err = _verify_cli(store, capsys)
    assert status == 1 and "SHA-256 mismatch" in err


def test_phi_is_checked_against_the_generation_arguments(store):
    g = zarr.open_group(str(store), mode="r+")
    g["phi"][0, 0] = 0.5
    file = store / "_psppyro" / "initialized.json"
    rec = json.loads(file.read_text())
    rec["files"]["phi/c/0/0"] = fingerprint(store / "phi" / "c" / "0" / "0")
    file.write_text(json.dumps(rec))
    with pytest.raises(CorruptStoreError, match="variable phi of .* differ from the generation"):
        verify_dataset(store)


def test_unfinished_generation(store, pristine, capsys):
    target = store.parent / "other.zarr"
    store.rename(partial_path(target))  # as left by a run killed before its last step
    (partial_path(target) / "_psppyro" / "complete.json").unlink()
    (partial_path(target) / "_psppyro" / "chunks" / "00000002.json").unlink()
    with pytest.raises(ValueError, match=r"no dataset at '.*other.zarr': its generation did not"):
        open_dataset(target)
    status, _, err = _verify_cli(target, capsys)
    assert status == 1 and "other.zarr.partial" in err and "2 of 3 chunks" in err
    status, _, err = _verify_cli(partial_path(target), capsys)
    assert status == 1 and err.startswith("psppyro verify: incomplete:") and "2 of 3" in err
    assert verify_dataset(partial_path(target)) == [0, 1]
    ds = open_dataset(target, allow_incomplete=True)
    assert ds.attrs["chunks_done"] == 2
    # Chunk 2's data were written but not marked (killed in between): they read as the fill
    # values, like a chunk never computed, so a partial dataset holds only finished samples.
    assert np.isnan(ds["m"][8:].values).all() and not ds["x"][8:].values.any()
    assert not ds["percolates"][8:].values.any() and np.isfinite(ds["m"][:8].values).all()
    np.testing.assert_array_equal(ds["m"][:8].values, pristine[1]["m"][:8])


def test_foreign_and_missing_paths(tmp_path, capsys):
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"a": ("t", np.arange(3))}).to_zarr(foreign, zarr_format=3, consolidated=False)
    missing = tmp_path / "missing.zarr"
    for path, msg in [
        (foreign, r"'.*foreign.zarr' is a non-empty folder that is not a psppyro dataset store"),
        (missing, r"no psppyro dataset store at '.*missing.zarr': the path does not exist"),
    ]:
        with pytest.raises(ValueError, match=msg):
            open_dataset(path)
        with pytest.raises(ValueError, match=msg):
            verify_dataset(path)
        status, out, err = _verify_cli(path, capsys)
        assert status == 1 and out == "" and err.count("\n") == 1 and str(path) in err
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"'.*empty.zarr': the path is an empty folder"):
        open_dataset(empty)
    _make(empty)  # an empty folder may be the target: the finished store replaces it
    assert verify_dataset(empty) == [0, 1, 2] and sorted(os.listdir(tmp_path)) == [
        "empty.zarr",
        "foreign.zarr",
    ]


def test_format_1_stores_are_still_read(store, pristine):
    """A store of the earlier layout (written in place, no fingerprints) opens and verifies."""
    meta = store / "_psppyro"
    fmt = json.loads((meta / "format.json").read_text())
    fmt["format"] = "psppyro-triads/1"
    (meta / "format.json").write_text(json.dumps(fmt))
    for name in ("initialized.json", "complete.json"):
        (meta / name).unlink()
    (meta / "initialized").write_text("ok\n")
    root = json.loads((store / "zarr.json").read_text())
    root.pop("consolidated_metadata", None)
    (store / "zarr.json").write_text(json.dumps(root))
    ds = open_dataset(store, verify=True)
    np.testing.assert_array_equal(ds["x"].values, pristine[1]["x"])
    (meta / "chunks" / "00000001.json").unlink()
    with pytest.raises(ValueError, match="is incomplete: 2 of 3 chunks"):
        open_dataset(store)
