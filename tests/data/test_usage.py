"""Splits, torch loading, reference probabilities and presets of triad datasets (issue 4)."""

import math

import numpy as np
import pytest
import torch
import xarray as xr

from psppyro.data import (
    DATASET_PRESETS,
    dataset_preset,
    generate,
    reference_probability,
    split,
    to_torch,
)

from ._standins import FRACTIONS, NoiseThresholdProcess


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("usage") / "grid.zarr"
    return generate(
        NoiseThresholdProcess(8),
        FRACTIONS,
        n_phi=9,
        per_phi=12,
        design="grid",
        seed=11,
        chunk_size=24,
        path=str(path),
        workers=1,
        progress=False,
    )


def test_split_reproducible_and_disjoint_by_phi(dataset):
    parts = split(dataset, (0.5, 0.25, 0.25), seed=4)
    again = split(dataset, (0.5, 0.25, 0.25), seed=4)
    other = split(dataset, (0.5, 0.25, 0.25), seed=5)
    groups = [set(np.unique(p["phi_index"].values)) for p in parts]
    assert [len(g) for g in groups] == [4, 3, 2]  # cuts at round(4.5)=4, round(6.75)=7, 9
    assert set.union(*groups) == set(range(9))
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])
    assert sum(p.sizes["sample"] for p in parts) == dataset.sizes["sample"]
    for p, q in zip(parts, again):
        np.testing.assert_array_equal(p["x"].values, q["x"].values)
    assert any(
        set(np.unique(p["phi_index"].values)) != set(np.unique(q["phi_index"].values))
        for p, q in zip(parts, other)
    )
    for p in parts:  # whole phi groups, every sample of a group kept
        assert (np.bincount(p["phi_index"].values)[sorted(set(p["phi_index"].values))] == 12).all()
    with pytest.raises(ValueError, match="sum to 1"):
        split(dataset, (0.5, 0.4), seed=0)
    with pytest.raises(ValueError, match="positive"):
        split(dataset, (1.5, -0.5), seed=0)


def test_to_torch_tensors_and_mask(dataset):
    t = to_torch(dataset)
    assert t["x"].dtype == torch.float32 and t["x"].shape == (108, 8, 8)
    np.testing.assert_array_equal(t["x"].numpy(), dataset["x"].values)
    np.testing.assert_array_equal(t["m"].double().numpy(), dataset["m"].values.astype(np.float32))
    assert t["labelled"].all()
    mask = np.arange(108) % 3 == 0
    t = to_torch(dataset, ("m", "percolates", "phi_index"), labelled=mask)
    assert torch.isnan(t["m"][~torch.from_numpy(mask)]).all()
    assert not torch.isnan(t["m"][torch.from_numpy(mask)]).any()
    assert t["percolates"].dtype == torch.bool and t["phi_index"].dtype == torch.int64
    with pytest.raises(ValueError, match="not a per-sample variable"):
        to_torch(dataset, ("phi", "nope"))
    with pytest.raises(ValueError, match="boolean mask of shape"):
        to_torch(dataset, labelled=np.ones(5, bool))


def test_loader_epochs_cover_every_sample_once(dataset):
    train = split(dataset, (0.7, 0.3), seed=0)[0]
    loader = to_torch(train, ("phi", "x", "m"), batch_size=10, shuffle=True, seed=3, buffer_size=30)
    n = train.sizes["sample"]
    assert len(loader) == math.ceil(n / 10)
    x_all = train["x"].values
    orders = []
    for _ in range(2):
        batches = list(loader)
        assert [len(b["index"]) for b in batches[:-1]] == [10] * (len(batches) - 1)
        index = torch.cat([b["index"] for b in batches]).numpy()
        assert sorted(index) == list(range(n))
        for b in batches:  # every field belongs to the sample it is reported with
            np.testing.assert_array_equal(b["x"].numpy(), x_all[b["index"].numpy()])
        orders.append(index)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    replay = to_torch(train, ("x",), batch_size=10, shuffle=True, seed=3, buffer_size=30)
    np.testing.assert_array_equal(torch.cat([b["index"] for b in replay]).numpy(), orders[0])
    plain = to_torch(train, ("x",), batch_size=16, drop_last=True)
    index = torch.cat([b["index"] for b in plain]).numpy()
    np.testing.assert_array_equal(index, np.arange(n // 16 * 16))


def test_reference_probability_matches_direct_count(dataset):
    low, high = [0.4, -np.inf], [0.6, 0.55]
    ref = reference_probability(dataset, low, high)
    m, idx = dataset["m"].values, dataset["phi_index"].values
    for i in range(9):
        mi = m[idx == i]
        hits = sum(1 for row in mi if 0.4 <= row[0] <= 0.6 and row[1] <= 0.55)
        p = hits / len(mi)
        assert ref["count"].values[i] == 12 and ref["hits"].values[i] == hits
        assert ref["probability"].values[i] == pytest.approx(p)
        assert ref["standard_error"].values[i] == pytest.approx(math.sqrt(p * (1 - p) / 12))
        np.testing.assert_array_equal(ref["phi"].values[i], dataset["phi"].values[idx == i][0])
    assert 0 < ref["probability"].mean() < 1  # the box is informative for this data
    with pytest.raises(ValueError, match="low must be <= high"):
        reference_probability(dataset, [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="length d_m=2"):
        reference_probability(dataset, [0.0], [1.0])


def test_reference_probability_unlabelled_refused():
    ds = xr.Dataset({"x": (("sample", "y", "x"), np.zeros((2, 2, 2), np.uint8))})
    with pytest.raises(ValueError, match="labelled dataset"):
        reference_probability(ds, [0.0], [1.0])


def test_presets():
    sizes = {name: p.n_samples for name, p in DATASET_PRESETS.items()}
    assert sizes["pspgen-case1-train"] == 10_000 and sizes["pspgen-case1-test"] == 2000
    assert sizes["pspgen-case1-reference"] == 200_000 and sizes["pspgen-case5-train"] == 10_000
    assert sizes["rixner-o1-initial"] == 2048 and sizes["rixner-o2-initial"] == 4096
    assert len({p.seed for p in DATASET_PRESETS.values()}) == len(DATASET_PRESETS)
    small = dataset_preset("pspgen-case1-train", scale=0.01)
    assert (small.n_phi, small.per_phi, small.process) == (25, 4, "pspgen36")
    grid = dataset_preset("pspgen-case1-reference", scale=0.09)
    assert (grid.n_phi, grid.per_phi) == (36, 500)  # 20 * 0.3 = 6 points per axis
    assert dataset_preset("rixner-o1-initial", 1e-9).n_phi == 1
    assert small.kwargs()["preset_name"] == "pspgen-case1-train"
    with pytest.raises(ValueError, match="name must be one of"):
        dataset_preset("case1")
    with pytest.raises(ValueError, match="scale must be"):
        dataset_preset("pspgen-case1-train", scale=0)
