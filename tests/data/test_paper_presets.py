"""Dataset presets of the reconstructed PSP-GEN simulator (pspgen-paper-*)."""

import json

import numpy as np
import pytest
import torch

import psppyro as pp
from psppyro._random import derive_seed
from psppyro.cli import main
from psppyro.data import DATASET_PRESETS, dataset_preset, open_dataset

PAPER = {
    # name: (process, n_phi, per_phi, design)
    "pspgen-paper-case1-train": ("pspgen36-paper", 2500, 4, "uniform"),
    "pspgen-paper-case1-test": ("pspgen36-paper", 500, 4, "uniform"),
    "pspgen-paper-case1-reference": ("pspgen36-paper", 400, 500, "grid"),
    "pspgen-paper-case3-train": ("pspgen36-paper", 2500, 1, "uniform"),
    "pspgen-paper-case4-train": ("pspgen128-paper", 2500, 4, "uniform"),
    "pspgen-paper-case4-test": ("pspgen128-paper", 500, 4, "uniform"),
    "pspgen-paper-case4-reference": ("pspgen128-paper", 400, 500, "grid"),
    "pspgen-paper-case5-train": ("pspgen10d-paper", 10_000, 1, "uniform"),
    "pspgen-paper-case5-test": ("pspgen10d-paper", 500, 4, "uniform"),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_dataset_presets_sizes_and_names(name):
    process, n_phi, per_phi, design = PAPER[name]
    p = dataset_preset(name)
    assert (p.process, p.properties, p.n_phi, p.per_phi, p.design) == (
        process, "log_permeability_paper", n_phi, per_phi, design
    )
    # the literal twin has the same sizes on the literal simulator, and a different seed
    twin = DATASET_PRESETS[name.replace("pspgen-paper-", "pspgen-")]
    assert (twin.n_phi, twin.per_phi, twin.design) == (n_phi, per_phi, design)
    assert twin.process == process.replace("-paper", "") and twin.properties == "log_permeability"
    assert twin.seed != p.seed and "reconstructed" in p.description
    # the names resolve to a process preset and a property map
    assert pp.process.preset(p.process).shape == ((128, 128) if "case4" in name else (36, 36))
    assert pp.properties.property_map(p.properties).dim == 2
    assert p.kwargs()["preset_name"] == name


def test_paper_sizes_match_the_paper_and_seeds_are_unique():
    n = {k: dataset_preset(k).n_samples for k in PAPER}
    assert n["pspgen-paper-case1-train"] == 10_000 and n["pspgen-paper-case1-test"] == 2000
    assert n["pspgen-paper-case1-reference"] == 200_000 and n["pspgen-paper-case3-train"] == 2500
    assert n["pspgen-paper-case5-train"] == 10_000 and n["pspgen-paper-case5-test"] == 2000
    seeds = [p.seed for p in DATASET_PRESETS.values()]
    assert len(seeds) == len(set(seeds))


def test_scale_on_paper_presets():
    assert dataset_preset("pspgen-paper-case1-train", scale=0.01).n_phi == 25
    ref = dataset_preset("pspgen-paper-case4-reference", scale=0.01)
    assert (ref.n_phi, ref.per_phi, ref.design) == (4, 500, "grid")  # 2 x 2 grid, per_phi kept
    assert dataset_preset("pspgen-paper-case5-test", scale=0.001).n_phi == 1


def test_generate_paper_preset_records_provenance(tmp_path):
    p = dataset_preset("pspgen-paper-case1-test", scale=0.004)  # 2 phi x 4
    ds = p.generate(str(tmp_path / "t.zarr"), workers=1, progress=False)
    assert ds.sizes["sample"] == 8 and ds.attrs["preset"] == "pspgen-paper-case1-test"
    cfg = json.loads(ds.attrs["process"])
    assert cfg["filter_amplitude"] == "density" and cfg["phase_field"]["dx"] == 2.0
    assert json.loads(ds.attrs["properties"])["name"] == "log_permeability_paper"
    m = ds["m"].values
    assert np.isfinite(m).all() and (m > -15).all()  # no floor: the solid is leaky
    # the microstructures of phi value 1 are reproduced from its seed derive_seed(seed, 0, 1)
    proc = pp.process.from_config(cfg)
    phi1 = torch.as_tensor(ds["phi"].values[4], dtype=proc.phi_bounds.dtype)
    x = proc.sample(phi1, 4, seed=derive_seed(p.seed, 0, 1))
    np.testing.assert_array_equal(x.numpy().astype(np.uint8), ds["x"].values[4:8])


def test_cli_generate_paper_preset_with_scale(tmp_path, capsys):
    out = tmp_path / "c.zarr"
    args = ["generate", "pspgen-paper-case5-test", "--out", str(out), "--scale", "0.002",
            "--workers", "1"]
    assert main(args) == 0
    ds = open_dataset(out)
    assert ds.sizes["sample"] == 4 and ds.attrs["preset"] == "pspgen-paper-case5-test"
    assert ds["phi"].shape == (4, 10)
