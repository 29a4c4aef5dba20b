"""Triad datasets from the real process presets and property maps (issue 4)."""

import json

import numpy as np
import pytest
import torch

import psppyro as pp
from psppyro._random import derive_seed
from psppyro.cli import main
from psppyro.data import dataset_preset, generate, open_dataset


def test_pspgen36_provenance_round_trip(tmp_path):
    ds = generate(
        "pspgen36",
        "log_permeability",
        n_phi=2,
        per_phi=2,
        seed=7,
        path=str(tmp_path / "p.zarr"),
        workers=1,
        progress=False,
    )
    cfg = json.loads(ds.attrs["process"])
    proc = pp.process.from_config(cfg)
    assert proc.config() == cfg
    pm = pp.properties.property_map(json.loads(ds.attrs["properties"])["name"])
    phi1 = torch.as_tensor(ds["phi"].values[2], dtype=proc.phi_bounds.dtype)
    x = proc.sample(phi1, 2, seed=derive_seed(7, 0, 1))
    np.testing.assert_array_equal(x.numpy().astype(np.uint8), ds["x"].values[2:4])
    m, flags = pm.evaluate(x)
    np.testing.assert_array_equal(m.double().numpy(), ds["m"].values[2:4])
    np.testing.assert_array_equal(flags["percolates"].numpy(), ds["percolates"].values[2:4])
    assert list(ds["phi_dim"].values) == list(proc.phi_names)
    assert list(ds["m_dim"].values) == ["ln_k_xx", "ln_k_yy"]
    unlabelled = generate(
        "pspgen36",
        None,
        labelled=False,
        n_phi=2,
        per_phi=2,
        seed=7,
        path=str(tmp_path / "u.zarr"),
        workers=1,
        progress=False,
    )
    np.testing.assert_array_equal(unlabelled["x"].values, ds["x"].values)
    assert "m" not in unlabelled and "percolates" not in unlabelled


def test_rixner_prior_design_and_labels(tmp_path):
    ds = generate(
        "rixner64",
        "rixner_o2",
        n_phi=3,
        seed=1,
        path=str(tmp_path / "r.zarr"),
        workers=1,
        progress=False,
    )
    assert ds["x"].shape == (3, 64, 64) and ds["phi"].shape == (3, 100)
    assert list(ds["m_dim"].values) == ["K_11", "K_22"]
    m = ds["m"].values
    # Conductivity with phases (1, 50) lies between the Wiener bounds of its volume fraction.
    vf = ds["x"].values.reshape(3, -1).mean(1)[:, None]
    assert (m > 1 / (vf / 50 + (1 - vf)) - 1e-6).all() and (m < vf * 50 + (1 - vf) + 1e-6).all()
    assert json.loads(ds.attrs["properties"])["name"] == "rixner_o2"
    # No state carried between chunks in the real solvers: another chunking gives the same bytes.
    again = generate(
        "rixner64",
        "rixner_o2",
        n_phi=3,
        seed=1,
        path=str(tmp_path / "r2.zarr"),
        workers=1,
        progress=False,
        chunk_size=2,
    )
    np.testing.assert_array_equal(again["m"].values, m)
    np.testing.assert_array_equal(again["x"].values, ds["x"].values)


def test_cli_generate_summary(tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    assert (
        main(
            [
                "generate",
                "rixner-o2-initial",
                "--out",
                str(out),
                "--scale",
                "0.0005",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "samples: 2" in text and "samples/s" in text
    ds = open_dataset(out)
    assert ds.attrs["preset"] == "rixner-o2-initial"
    assert ds.attrs["seed"] == dataset_preset("rixner-o2-initial").seed
    assert main(["generate", "no-such-preset", "--out", str(tmp_path / "n.zarr")]) == 2


@pytest.mark.slow
def test_pspgen_case1_preset_workers_identical(tmp_path, capsys):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    args = ["pspgen-case1-train", "--scale", "0.002"]
    assert main(["generate", *args, "--out", str(one), "--workers", "1", "--chunk-size", "8"]) == 0
    assert main(["generate", *args, "--out", str(two), "--workers", "2", "--chunk-size", "4"]) == 0
    assert "percolation fraction" in capsys.readouterr().out
    a, b = open_dataset(one, verify=True), open_dataset(two, verify=True)
    for v in ("phi", "x", "m", "percolates"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    assert a.sizes["sample"] == 20 and list(a["m_dim"].values) == ["ln_k_xx", "ln_k_yy"]
    assert np.isfinite(a["m"].values).all()


@pytest.mark.slow
def test_cli_generate_on_a_dask_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    local, remote = tmp_path / "local.zarr", tmp_path / "remote.zarr"
    args = ["generate", "pspgen-case1-train", "--scale", "0.001"]  # 2 phi x 4
    assert main([*args, "--out", str(local), "--workers", "1"]) == 0
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        assert main([*args, "--out", str(remote), "--scheduler", cluster.scheduler_address]) == 0
    a, b = open_dataset(local), open_dataset(remote)
    for v in ("phi", "x", "m", "percolates"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
