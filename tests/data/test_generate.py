"""Generation, storage, resume and provenance of triad datasets (issue 4)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from psppyro._random import derive_seed
from psppyro.data import (
    CorruptStoreError,
    design_phi,
    generate,
    open_dataset,
    partial_path,
    verify_dataset,
)

from ._standins import FRACTIONS, NoiseThresholdProcess, UnboundedProcess

ROOT = Path(__file__).resolve().parents[2]
VARS = ("phi", "phi_index", "x", "m", "percolates")


def _gen(path, process=None, **kw):
    args = dict(n_phi=6, per_phi=2, seed=3, workers=1, progress=False)
    args.update(kw)
    return generate(process or NoiseThresholdProcess(12), FRACTIONS, path=str(path), **args)


def _assert_same(a, b, names=VARS):
    for v in names:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_schema_and_provenance(tmp_path):
    proc = NoiseThresholdProcess(12)
    ds = _gen(tmp_path / "a.zarr", proc, chunk_size=4)
    assert dict(ds.sizes) == {"sample": 12, "phi_dim": 2, "y": 12, "x": 12, "m_dim": 2}
    assert ds["x"].dims == ("sample", "y", "x") and ds["x"].dtype == np.uint8
    assert ds["phi"].dtype == np.float64 and ds["phi_index"].dtype == np.int64
    assert ds["m"].dims == ("sample", "m_dim") and ds["percolates"].dtype == bool
    assert list(ds["phi_dim"].values) == ["void_fraction", "length"]
    assert list(ds["m_dim"].values) == ["void_fraction", "top_row_fraction"]
    np.testing.assert_array_equal(ds["phi_index"].values, np.repeat(np.arange(6), 2))
    assert set(np.unique(ds["x"].values)) <= {0, 1}
    for key in ("seed", "design", "n_phi", "per_phi", "psppyro_version", "git_revision", "created"):
        assert key in ds.attrs
    assert ds.attrs["seed"] == 3 and ds.attrs["n_phi"] == 6 and ds.attrs["design"] == "uniform"
    assert json.loads(ds.attrs["properties"])["name"] == "standin_fractions"
    # Provenance round trip: the process rebuilt from the attrs reproduces sample 5 (phi 2, r = 1).
    rebuilt = NoiseThresholdProcess.from_config(json.loads(ds.attrs["process"]))
    phi2 = torch.tensor(ds["phi"].values[4], dtype=torch.float32)
    x = rebuilt.sample(phi2, 2, seed=derive_seed(ds.attrs["seed"], 0, 2))
    np.testing.assert_array_equal(x.numpy().astype(np.uint8), ds["x"].values[4:6])
    m, flags = FRACTIONS.evaluate(x)
    np.testing.assert_array_equal(m.numpy(), ds["m"].values[4:6])
    np.testing.assert_array_equal(flags["percolates"].numpy(), ds["percolates"].values[4:6])


def test_identical_for_chunk_sizes_and_workers(tmp_path):
    ref = _gen(tmp_path / "serial.zarr", chunk_size=2)
    other = _gen(tmp_path / "chunk6.zarr", chunk_size=6)
    _assert_same(ref, other)
    pool = _gen(tmp_path / "pool.zarr", chunk_size=4, workers=2)
    _assert_same(ref, pool)
    assert pool["x"].encoding["chunks"][0] == 4


def test_dask_local_cluster_identical(tmp_path):
    distributed = pytest.importorskip("distributed")
    ref = _gen(tmp_path / "serial.zarr", chunk_size=2)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ds = _gen(tmp_path / "dask.zarr", chunk_size=4, client=client)
    _assert_same(ref, ds)


_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.data._standins import FRACTIONS, NoiseThresholdProcess
from psppyro.data import generate
generate(NoiseThresholdProcess(12, delay={delay}), FRACTIONS, n_phi=24, per_phi=2, seed=5,
         path={path!r}, chunk_size=2, workers=1, progress=False)
"""


def _markers(path):
    """Completed chunks of the unfinished build folder of ``path``."""
    folder = partial_path(path) / "_psppyro" / "chunks"
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


def test_resume_after_sigkill(tmp_path):
    killed = tmp_path / "killed.zarr"
    code = _CHILD.format(root=str(ROOT), delay=0.05, path=str(killed))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while _markers(killed) < 3 and child.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, "generation finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    n_done = _markers(killed)
    assert 3 <= n_done < 24
    assert not killed.exists()  # only the build folder <path>.partial
    with pytest.raises(ValueError, match=rf"did not finish.*killed.zarr.partial.*{n_done} of 24"):
        open_dataset(killed)
    partial = open_dataset(killed, allow_incomplete=True)
    assert partial.attrs["chunks_done"] == n_done
    with pytest.raises(ValueError, match="did not finish"):
        verify_dataset(killed)
    assert verify_dataset(partial_path(killed)) == list(range(n_done))  # serial: in order
    proc = NoiseThresholdProcess(12, delay=0.05)
    resumed = generate(
        proc,
        FRACTIONS,
        n_phi=24,
        per_phi=2,
        seed=5,
        path=str(killed),
        chunk_size=2,
        workers=1,
        progress=False,
    )
    assert verify_dataset(killed) == list(range(24))
    fresh = generate(
        NoiseThresholdProcess(12),
        FRACTIONS,
        n_phi=24,
        per_phi=2,
        seed=5,
        path=str(tmp_path / "fresh.zarr"),
        chunk_size=4,
        workers=1,
        progress=False,
    )
    _assert_same(resumed, fresh)


def test_resume_with_other_config_refused(tmp_path):
    path = tmp_path / "a.zarr"
    first = _gen(path, chunk_size=4)
    again = _gen(path, chunk_size=4)  # same configuration: nothing to do, same data
    _assert_same(first, again)
    with pytest.raises(
        ValueError, match=r"(?s)finished dataset store.*other arguments.*seed: stored=3 requested=4"
    ):
        _gen(path, chunk_size=4, seed=4)
    with pytest.raises(ValueError, match=r"(?s)chunk_size: stored=4 requested=2.*per_phi"):
        _gen(path, chunk_size=2, per_phi=1)
    with pytest.raises(ValueError, match=r"process: stored=.*\"size\": 12.*\"size\": 10"):
        _gen(path, NoiseThresholdProcess(10), chunk_size=4)


def test_unfinished_store_with_other_arguments_refused(tmp_path):
    path = tmp_path / "f.zarr"
    explicit = [[0.4, 1.0], [0.5, 1.0], [0.65, 1.0], [0.45, 1.0]]
    args = dict(phi=explicit, seed=0, chunk_size=1, path=str(path), workers=1, progress=False)
    with pytest.raises(RuntimeError, match="solver failed"):
        generate(_FailsAbove(12), FRACTIONS, **args)
    fmt = json.loads((partial_path(path) / "_psppyro" / "format.json").read_text())
    assert fmt["config"]["seed"] == 0 and "unfinished" in fmt["note"]  # marked, with its arguments
    with pytest.raises(
        ValueError,
        match=r"(?s)unfinished dataset store.*f.zarr.partial.*seed: stored=0 requested=1",
    ):
        generate(NoiseThresholdProcess(12), FRACTIONS, **{**args, "seed": 1})
    assert verify_dataset(partial_path(path)) == [0, 1]  # untouched by the refused run
    # The same arguments with a working process resume it: the two finished chunks are kept.
    ds = generate(NoiseThresholdProcess(12), FRACTIONS, **args)
    assert not partial_path(path).exists() and verify_dataset(path) == [0, 1, 2, 3]
    ref = generate(NoiseThresholdProcess(12), FRACTIONS, **{**args, "path": str(tmp_path / "r")})
    _assert_same(ds, ref)


def test_partial_creation_is_restarted(tmp_path):
    path = tmp_path / "a.zarr"
    ref = _gen(tmp_path / "ref.zarr", chunk_size=4)
    _gen(path, chunk_size=4)
    # As if killed while writing the metadata: the build folder without its creation record.
    path.rename(partial_path(path))
    meta = partial_path(path) / "_psppyro"
    (meta / "initialized.json").unlink()
    (meta / "complete.json").unlink()
    (partial_path(path) / "x" / "zarr.json").unlink()
    with pytest.raises(ValueError, match="stopped while creating the Zarr metadata"):
        open_dataset(partial_path(path), allow_incomplete=True)
    _assert_same(ref, _gen(path, chunk_size=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "ref.zarr"]  # no leftovers


def test_foreign_and_corrupted_stores(tmp_path):
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"a": ("t", np.arange(3))}).to_zarr(foreign, zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="foreign.zarr' is a non-empty folder that is not a"):
        _gen(foreign)
    with pytest.raises(ValueError, match="not a psppyro dataset store"):
        open_dataset(foreign)
    with pytest.raises(ValueError, match="no psppyro dataset store at .*missing.zarr.*not exist"):
        open_dataset(tmp_path / "missing.zarr")
    afile = tmp_path / "file.zarr"
    afile.write_text("hello")
    with pytest.raises(ValueError, match="file.zarr' exists and is a file"):
        _gen(afile)

    path = tmp_path / "a.zarr"
    _gen(path, chunk_size=4)
    (path / "m" / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match=r"a.zarr' is corrupt: file m/zarr.json has"):
        open_dataset(path)
    (path / "_psppyro" / "format.json").write_text("garbage")
    with pytest.raises(ValueError, match="corrupted: cannot read"):
        open_dataset(path)


def test_unlabelled(tmp_path):
    ds = generate(
        NoiseThresholdProcess(12),
        None,
        n_phi=4,
        per_phi=2,
        seed=1,
        labelled=False,
        path=str(tmp_path / "u.zarr"),
        workers=1,
        progress=False,
    )
    assert "m" not in ds and "percolates" not in ds
    assert json.loads(ds.attrs["properties"]) is None
    labelled = _gen(tmp_path / "l.zarr", n_phi=4, per_phi=2, seed=1)
    _assert_same(ds, labelled, ("phi", "x"))
    with pytest.raises(ValueError, match="labelled=True"):
        generate(NoiseThresholdProcess(12), None, n_phi=4, path=str(tmp_path / "v.zarr"), seed=0)


def test_explicit_phi_and_bad_arguments(tmp_path):
    proc = NoiseThresholdProcess(12)
    phi = [[0.4, 1.0], [0.6, 2.0]]
    ds = generate(
        proc,
        FRACTIONS,
        phi=phi,
        per_phi=3,
        seed=0,
        path=str(tmp_path / "e.zarr"),
        workers=1,
        progress=False,
    )
    assert ds.attrs["design"] == "explicit"
    np.testing.assert_allclose(ds["phi"].values[::3], phi, rtol=1e-7)
    with pytest.raises(ValueError, match="outside its bounds"):
        generate(proc, FRACTIONS, phi=[[0.9, 1.0]], seed=0, path=str(tmp_path / "b.zarr"))
    with pytest.raises(ValueError, match="multiple of per_phi=3"):
        _gen(tmp_path / "c.zarr", per_phi=3, chunk_size=4)
    with pytest.raises(ValueError, match="perfect 2-th power"):
        _gen(tmp_path / "d.zarr", design="grid", n_phi=10)
    with pytest.raises(ValueError, match="design must be one of"):
        _gen(tmp_path / "d.zarr", design="lhs")
    with pytest.raises(ValueError, match="seed"):
        _gen(tmp_path / "d.zarr", seed=-1)
    from psppyro.properties import PropertyMap

    bad = PropertyMap("bad", ("a",), 2, lambda x: (x.mean(-1).double(), {}))  # (..., 12), not 1
    with pytest.raises(ValueError, match=r"returned m of shape \(1, 12\) .* expected \(1, 1\)"):
        generate(proc, bad, n_phi=2, seed=0, path=str(tmp_path / "d.zarr"))
    with pytest.raises(TypeError, match="lacks"):
        generate(object(), FRACTIONS, n_phi=2, seed=0, path=str(tmp_path / "d.zarr"))
    assert not (tmp_path / "d.zarr").exists()


def test_designs():
    proc = NoiseThresholdProcess(12)
    grid = design_phi(proc, "grid", 16, seed=0)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(np.unique(grid[:, 0]), np.linspace(0.3, 0.7, 4), rtol=1e-6)
    np.testing.assert_allclose(grid[:4, 1], np.linspace(0.5, 3.0, 4), rtol=1e-6)
    for design in ("uniform", "sobol"):
        phi = design_phi(proc, design, 256, seed=0)
        assert (phi >= [0.3, 0.5]).all() and (phi <= [0.7, 3.0]).all()
        np.testing.assert_array_equal(phi, design_phi(proc, design, 256, seed=0))
        assert not np.array_equal(phi, design_phi(proc, design, 256, seed=1))
        # Mean of U(0.3, 0.7): 0.5; sd of the mean of 256 draws = 0.4/sqrt(12*256) = 0.0072;
        # 5 sd = 0.036 (Sobol is far closer).
        assert abs(phi[:, 0].mean() - 0.5) < 0.036
    # Unbounded family: uniform/sobol draw from the N(0, I) prior.
    unb = UnboundedProcess()
    for design in ("uniform", "sobol"):
        phi = design_phi(unb, design, 400, seed=0)
        # sd of the mean of 400 N(0,1) draws = 0.05 -> 5 sd = 0.25; sample sd within 5 sd of 1
        # (sd of the sample sd ~ 1/sqrt(2*400) = 0.035).
        assert np.abs(phi.mean(0)).max() < 0.25
        assert np.abs(phi.std(0) - 1).max() < 0.18
    with pytest.raises(ValueError, match="finite phi_bounds"):
        design_phi(unb, "grid", 8, seed=0)


def test_unbounded_process_generates(tmp_path):
    unb = UnboundedProcess()
    ds = generate(
        unb,
        FRACTIONS,
        n_phi=3,
        per_phi=2,
        seed=0,
        path=str(tmp_path / "u.zarr"),
        workers=1,
        progress=False,
    )
    assert ds["x"].shape == (6, 8, 8) and np.isfinite(ds["phi"].values).all()


_POOL_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.data._standins import FRACTIONS, NoiseThresholdProcess
from psppyro.data import generate
if __name__ == "__main__":
    generate(NoiseThresholdProcess(12, delay=0.1), FRACTIONS, n_phi=40, per_phi=2, seed=8,
             path={path!r}, chunk_size=2, workers=2, progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill_of_a_pool_run(tmp_path):
    killed = tmp_path / "killed.zarr"
    script = tmp_path / "child.py"
    script.write_text(_POOL_CHILD.format(root=str(ROOT), path=str(killed)))
    # Own session, so the child, its forkserver and its workers can be killed together by group id.
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while _markers(killed) < 5 and child.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert child.poll() is None, "generation finished before it could be killed"
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert 5 <= _markers(killed) < 40
    resumed = generate(
        NoiseThresholdProcess(12, delay=0.1),
        FRACTIONS,
        n_phi=40,
        per_phi=2,
        seed=8,
        path=str(killed),
        chunk_size=2,
        workers=2,
        progress=False,
    )
    fresh = generate(
        NoiseThresholdProcess(12),
        FRACTIONS,
        n_phi=40,
        per_phi=2,
        seed=8,
        path=str(tmp_path / "fresh.zarr"),
        chunk_size=16,
        workers=1,
        progress=False,
    )
    _assert_same(resumed, fresh)
    assert verify_dataset(killed) == list(range(40))


def test_three_dimensional_and_flagless(tmp_path):
    from ._standins import VOID_3D, CubeProcess

    ds = generate(
        CubeProcess(6),
        VOID_3D,
        n_phi=3,
        per_phi=2,
        design="grid",
        seed=2,
        path=str(tmp_path / "c.zarr"),
        workers=1,
        progress=False,
    )
    assert ds["x"].dims == ("sample", "z", "y", "x") and ds["x"].shape == (6, 6, 6, 6)
    np.testing.assert_array_equal(ds["phi"].values[::2, 0], [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(ds["m"].values[:, 0], ds["x"].values.mean((1, 2, 3)))
    assert [v for v in ds.data_vars if ds[v].dtype == bool] == []
    with pytest.raises(ValueError, match="takes 3-D images"):
        generate(NoiseThresholdProcess(12), VOID_3D, n_phi=2, seed=0, path=str(tmp_path / "d"))


class _FailsAbove(NoiseThresholdProcess):
    def sample(self, phi, num_samples, seed):
        if float(phi[0]) > 0.6:
            raise RuntimeError("solver failed")
        return super().sample(phi, num_samples, seed)


def test_worker_error_propagates_and_leaves_a_resumable_store(tmp_path):
    path = tmp_path / "f.zarr"
    explicit = [[0.4, 1.0], [0.5, 1.0], [0.65, 1.0], [0.45, 1.0]]
    with pytest.raises(RuntimeError, match="solver failed"):
        generate(
            _FailsAbove(12),
            FRACTIONS,
            phi=explicit,
            seed=0,
            chunk_size=1,
            path=str(path),
            workers=1,
            progress=False,
        )
    assert not path.exists()
    assert verify_dataset(partial_path(path)) == [0, 1]
    with pytest.raises(ValueError, match=r"did not finish.*f.zarr.partial.*2 of 4 chunks"):
        open_dataset(path)
    with pytest.raises(ValueError, match=r"f.zarr.partial' is incomplete: 2 of 4 chunks"):
        open_dataset(partial_path(path))
