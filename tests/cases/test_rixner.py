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
        # the shifted K is designed for, both K's are reported, P is given for both
        v = saved["variants"]["vf0.5"]
        assert v["target_paper"] == {"low": [8.5, 6.75], "high": [11.0, 9.0]}
        lo, hi = rixner.o1_box()
        assert v["target_shifted"]["low"] == lo and v["target_shifted"]["high"] == hi
        assert v["target"]["low"] == pytest.approx(lo) and v["target"]["high"] == pytest.approx(hi)
        assert len(v["paperK_variance"]) == 2 and len(v["paperK_random"]) == 2
        assert len(v["kappa_variance"]) == 3                 # phi(0) and two steps
        assert all(0.0 <= p <= 1.0 for k in v["kappa_random"] for p in k["p_marginal"])
        assert "paper K = [8.5, 11] x [6.75, 9]" in md and "K' = K * b" in md
        assert any("paper K" in n for n in saved["notes"])
    else:
        assert (out / "figures" / "rixner-o2-density.png").is_file()
        assert any("Wiener bound" in n for n in saved["notes"])   # vf 0.3 target shifted
        mo = saved["variants"]["vf0.3"]["kappa_moments_run0"]
        assert len(mo) == 3 and all(len(m["mean"]) == len(m["sd"]) == 2 for m in mo)
        assert "target mean (14.15, 3.50), sd (0.77, 0.10)" in md
        assert "target mean (15.06, 3.32), sd (0.77, 0.10)" in md  # vf 0.5: Keller
    assert res["case"] == name
    # the per-run state is on disk: a second call resumes instead of recomputing
    state = out / "runs" / "vf0.5-variance-0" / "state.pt"
    assert state.is_file()


def test_tempering_option_reaches_every_vbem_run(tmp_path, monkeypatch):
    monkeypatch.setattr(rixner, "protocol", _tiny)
    monkeypatch.setitem(rixner.PROPERTIES, "rixner-o1", _stripes)
    out = tmp_path / "t"
    res = rixner.run("rixner-o1", scale=0.5, out=out, seed=0, progress=False, tempering=True)
    assert res["tempering"] is True and "adaptive tempering on" in (out / "results.md").read_text()
    for arm in ("variance", "random"):
        for rec in json.loads((out / "runs" / f"vf0.5-{arm}-0" / "records.json").read_text()):
            levels = rec["vbem"]["tempering_levels"]
            assert levels and levels[0][0] == 0.0           # the schedule starts at K(0)
    # a folder written without tempering is not resumed with it (other arguments)
    plain = tmp_path / "p"
    rixner.run("rixner-o1", scale=0.5, out=plain, seed=0, progress=False)
    with pytest.raises(ValueError, match="other arguments"):
        rixner.run("rixner-o1", scale=0.5, out=plain, seed=0, progress=False, tempering=True)


def test_o2_target_at_vf05_moves_onto_the_keller_curve():
    from psppyro.process import preset
    from psppyro.properties import property_map

    target, note = rixner._target("rixner-o2", 0.5)
    k1, k2 = target.dist.mean.tolist()
    assert k1 * k2 == pytest.approx(50.0) and (k1, k2) == pytest.approx((15.06, 3.32), abs=0.01)
    assert "Keller" in note and "8.6 target sd" in note
    cov = target.dist.covariance_matrix.double()
    assert torch.allclose(cov, torch.tensor(rixner.O2_TARGET[1]).double())  # covariance kept
    # the physics behind it: K_11(x) K_22(1 - x) = k0 k1 = 50 for each structure (the map is
    # converged to ~2 %), and at vf 0.5 x and 1 - x have the same law, so K_11 K_22 ~ 50
    phi = torch.zeros(1, 100, dtype=torch.float64)
    phi[0, :10] = 3.0                                   # an anisotropic spectral mixture
    x = preset("rixner64", phase_field=None).sample(phi, num_samples=3, seed=1).reshape(-1, 64, 64)
    kx, kflip = (torch.as_tensor(property_map("rixner_o2")(y)).double() for y in (x, 1 - x))
    assert torch.allclose(kx[:, 0] * kflip[:, 1], torch.full((3,), 50.0, dtype=torch.float64),
                          rtol=0.03)


def test_bad_arguments_are_refused_before_work(tmp_path):
    with pytest.raises(TypeError, match="tempering must be True or False"):
        rixner.run("rixner-o1", scale=0.1, out=tmp_path / "x", tempering="yes")
    assert not (tmp_path / "x").exists()
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


def test_vbem_options_do_not_shrink_with_scale():
    # shrunk options (2 particles, 5 E-steps, patience 5) stopped VB-EM while its ELBO still
    # rose (benchmarks/rixner_vbem_stopping.py); only O2's number of target draws scales
    for name in ("rixner-o1", "rixner-o2"):
        small, full = rixner.protocol(name, 0.01)["vbem"], rixner.protocol(name)["vbem"]
        assert small.pop("num_target_samples") < full.pop("num_target_samples")
        assert small == full == {"max_iter": 200, "patience": 10, "e_steps": 10,
                                 "num_particles": 4, "rank": 50}
        # nor the surrogate's training: patience 15 stopped fits on the initial plateau
        assert rixner.protocol(name, 0.01)["fit"] == rixner.protocol(name)["fit"] == {
            "epochs": 300, "patience": 40}


def test_o1_shift_rule_scales_the_paper_box_by_the_measured_bias():
    assert rixner.o1_box("none") == ([8.5, 6.75], [11.0, 9.0])
    b1, b2 = rixner.O1_BIAS
    assert 0.8 < b1 < 1.0 and 0.8 < b2 < 1.0     # the pixel FEM over-estimates both
    lo, hi = rixner.o1_box()
    assert lo == pytest.approx([8.5 * b1, 6.75 * b2]) and hi == pytest.approx([11 * b1, 9 * b2])
    target, note = rixner._target("rixner-o1", 0.5)
    assert target.low.tolist() == pytest.approx(lo) and target.high.tolist() == pytest.approx(hi)
    assert "paper K" in note and "K'" in note
    with pytest.raises(ValueError, match="shift"):
        rixner.o1_box("tuned")


@pytest.mark.slow
def test_o1_bias_constant_matches_a_fresh_measurement():
    """O1_BIAS (median converged / pixel-Q1 at refine 1 on prior structures) re-measured on 12
    fresh ancestral structures agrees within 3 standard errors of the median."""
    import importlib.util
    import math
    from pathlib import Path

    from psppyro.process import preset

    path = Path(__file__).parents[2] / "benchmarks" / "rixner_reachability.py"
    spec = importlib.util.spec_from_file_location("rixner_reachability", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    proc = preset("rixner64", phase_field=None)
    phi = torch.randn(6, 100, generator=torch.Generator().manual_seed(123))
    x = proc.sample(phi, num_samples=2, seed=7).reshape(-1, 64, 64)
    sim = mod.simulate(x, check=True)
    ratio = sim["conv"][:, :2] / sim["q1"][:, :2]
    med, sd = ratio.median(0).values, ratio.std(0)
    se = 1.2533 * sd / math.sqrt(ratio.shape[0])
    assert ((med - torch.tensor(rixner.O1_BIAS, dtype=med.dtype)).abs() < 3 * se + 1e-3).all()
