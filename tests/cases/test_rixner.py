"""The Rixner benchmark harness end to end at a tiny size (cheap property, few iterations)."""

import json

import pytest
import torch

from psppyro.cases import case_names, get_case, rixner


def _stripes(x):
    """A cheap analytic 'property' of 64^2 images: horizontal and vertical phase-1 fractions of
    neighbour pairs scaled to the box of the case (not physics: the harness is under test)."""
    h = (x * x.roll(1, -1)).mean((-2, -1))
    v = (x * x.roll(1, -2)).mean((-2, -1))
    return torch.stack([40.0 * h, 30.0 * v], -1).double()


def _o2_props(x):
    h = (x * x.roll(1, -1)).mean((-2, -1))
    v = (x * x.roll(1, -2)).mean((-2, -1))
    return torch.stack([60.0 * h, 10.0 * v], -1).double()


_PROTOCOL = rixner.protocol


def _tiny(name, scale=1.0):
    p = _PROTOCOL(name, 1.0)
    p.update(n_initial=16, n_pool=8, n_add=4, steps=1, num_eval_samples=8, runs=1)
    p["vbem"] = {"max_iter": 2, "patience": 1, "e_steps": 1, "num_particles": 1, "rank": 2,
                 "num_target_samples": 2}
    p["fit"] = {"epochs": 2, "patience": 2}
    return p


@pytest.mark.parametrize(
    "name", ["rixner-o1", pytest.param("rixner-o2", marks=pytest.mark.slow)]
)
def test_case_harness_runs_and_writes_results(tmp_path, monkeypatch, name):
    monkeypatch.setattr(rixner, "protocol", _tiny)
    monkeypatch.setitem(rixner.PROPERTIES, "rixner-o1", _stripes)
    monkeypatch.setitem(rixner.PROPERTIES, "rixner-o2", _o2_props)
    assert name in case_names()
    out = tmp_path / name
    res = get_case(name)(name, scale=0.5, out=out, seed=0, progress=False)
    saved = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    keys = ["vf0.5"] if name == "rixner-o1" else ["vf0.5", "vf0.3"]
    assert list(saved["variants"]) == keys
    for key in keys:
        v = saved["variants"][key]
        assert v["n_data"] == [16, 20]                      # N0, then N0 + N_add
        for med in [v["median_variance"]] + ([v["median_random"]] if name == "rixner-o1" else []):
            assert len(med) == 2 and all(0.0 <= p <= 1.0 or name == "rixner-o2" for p in med)
        assert (out / "figures" / f"{name}-{key}-gallery-phistar.png").is_file()
        assert f"## {key}" in md
    if name == "rixner-o1":
        assert (out / "figures" / "rixner-o1-vf0.5-al-vs-random.png").is_file()
    else:
        assert (out / "figures" / "rixner-o2-density.png").is_file()
        assert any("Wiener bound" in n for n in saved["notes"])   # vf 0.3 target shifted
    assert res["case"] == name
    # the per-run state is on disk: a second call resumes instead of recomputing
    state = out / "runs" / "vf0.5-variance-0" / "state.pt"
    assert state.is_file()


def test_bad_arguments_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        rixner.run("rixner-o1", scale=1.5, out=tmp_path)
    with pytest.raises(ValueError, match="name"):
        rixner.run("rixner-o3", scale=0.1, out=tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        rixner.run("rixner-o1", scale=0.1, out=f)


def test_protocol_full_scale_is_the_papers():
    o1, o2 = rixner.protocol("rixner-o1"), rixner.protocol("rixner-o2")
    assert (o1["n_initial"], o1["n_pool"], o1["n_add"], o1["steps"]) == (2048, 4096, 1024, 4)
    assert (o2["n_initial"], o2["n_add"], o2["steps"]) == (4096, 1024, 6)
    assert o2["vbem"]["num_target_samples"] == 20 and o1["vbem"]["rank"] == 50
    assert o2["volume_fractions"] == [0.5, 0.3]
