"""The PSP-GEN paper-case harness (``psppyro benchmark pspgen-paper-case*``) and its calibration
helpers: a tiny end-to-end run through the CLI, refusals before work, and the calibration numbers
on toys whose answers are known."""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch.distributions import Independent, Normal

from psppyro._doctest_fixtures import ToyChain
from psppyro.cases import _calibration as cal
from psppyro.cases import pspgen_paper
from psppyro.cases.pspgen_paper import protocol, results_markdown, run
from psppyro.cli import main
from psppyro.design import Box


def _grid_ds(phi_values, per_phi, noise, seed, blocked_fraction=0.0):
    """A reference-set stand-in: m = φ + N(0, noise²), a fraction set to the −20 floor."""
    g = np.random.default_rng(seed)
    phi = np.repeat(np.asarray(phi_values, dtype=float), per_phi)[:, None]
    m = phi + noise * g.standard_normal(phi.shape)
    if blocked_fraction:
        m[g.uniform(size=m.shape) < blocked_fraction] = -20.0
    idx = np.repeat(np.arange(len(phi_values)), per_phi)
    return xr.Dataset({"phi": (("sample", "phi_dim"), phi), "m": (("sample", "m_dim"), m),
                       "phi_index": ("sample", idx)})


class _Blocking(ToyChain):
    """ToyChain whose m is blocked (far below the −20 floor) with probability 0.3 (z_2 decides)."""

    latent_dim = 2

    def property_dist(self, phi, z):
        loc = phi + self.slope * z[..., :1]
        loc = torch.where(z[..., 1:] < -0.5244, torch.full_like(loc, -30.0), loc)  # Φ⁻¹(0.3)
        return Independent(Normal(loc, self.noise), 1)


# --------------------------------------------------------------------------- end to end
def test_case3_tiny_end_to_end(tmp_path):
    out = tmp_path / "c3"
    rc = main(["benchmark", "pspgen-paper-case3", "--scale", "0.004", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    text = (out / "results.md").read_text()
    variant = res["variants"]["dz1_default"]
    for t in ("L", "M", "R"):
        for method in ("sga", "nuts", "svi"):
            p = variant["evaluations"][t][method]["p_sim"]
            assert 0.0 <= p <= 1.0
            phi = variant["designs"][t][method]["phi_star"]
            assert 1.0 <= phi[0] <= 9.0 and 0.2 <= phi[1] <= 2.0
        assert 0.0 <= res["reference"][t]["p_ref_grid"] <= 1.0
    for row in ("φ_prop (SGA) / p (simulated)", "φ* NUTS", "φ* SVI", "φ_ref / p (reference grid)",
                "paper φ_prop / p", "paper φ_ref / p", "paper φ_comp / p",
                "p(φ_prop) / p(φ_ref), paired simulations ± s.e. (goal ≥ 0.97)", "| total |",
                "| train: dz1_default |"):
        assert row in text, row
    # the paper's Table 2 numbers are printed beside ours
    assert "(1.001, 1.999) / 0.812" in text
    for fig in ("fig3_dz1_default.png", "fig4_dz1_default.png", "fig6_dz1_default.png"):
        assert (out / fig).stat().st_size > 1000
    # the baselines: φ_comp and φ_BO rows beside φ_prop, checked by simulation, BO's budget
    for row in ("| φ_comp (competitor) / p (simulated) |", "| φ_BO / p (simulated) [simulations "
                "spent] |", "| p(φ_comp) / p(φ_ref) |", "## Competitor (φ_comp) and Bayesian",
                "| competitor: train + design |", "| bayesopt: L (20 simulations) |"):
        assert row in text, row
    assert res["budget"] == 20 and res["training_data_size"] == 10  # budget ≥ 2 evaluations
    comp, bo = res["competitor"], res["bayesopt"]
    assert comp["train_size"] == 9 and comp["validation_unused"] == 1  # PSP-GEN's 90/10 split
    for t in ("L", "M", "R"):
        assert 0.0 <= comp["designs"][t]["p_sim"] <= 1.0 and len(comp["designs"][t]["phi"]) == 2
        assert bo[t]["simulations"] == 20 and 0.0 <= bo[t]["p_sim"] <= 1.0
    assert (out / "fig_bayesopt.png").stat().st_size > 1000
    # a second run reuses the complete data stores, the trained model and the baselines
    proto = protocol("pspgen-paper-case3", 0.004)
    ds, p = pspgen_paper._dataset("pspgen-paper-case3-train", 0.004, out / "data", progress=False)
    assert ds.sizes["sample"] == 10
    seed_t = pspgen_paper._s(0, 30, 0)  # the harness's training seed of variant 0
    _, _, reused = pspgen_paper._train(ds, None, proto, out / "models", "dz1_default", seed_t,
                                       False)
    assert reused is True
    # a model trained with other settings is refused, not silently reused
    with pytest.raises(ValueError, match="other settings.*prior_m_weight"):
        pspgen_paper._train(ds, None, dict(proto, prior_m_weight=1.0), out / "models",
                            "dz1_default", seed_t, False)
    with pytest.raises(ValueError, match="other settings.*seed"):
        pspgen_paper._train(ds, None, proto, out / "models", "dz1_default", seed_t + 1, False)
    # ... and the CLI says so in one line before touching the data
    record = out / "models" / "dz1_default_train.json"
    record.write_text(json.dumps(dict(json.loads(record.read_text()), beta=3.0)))
    assert main(["benchmark", "pspgen-paper-case3", "--scale", "0.004", "--out", str(out),
                 "--no-progress"]) != 0
    from psppyro.cases._common import StageClock
    from psppyro.design import paper_targets
    from psppyro.process import preset

    tr, val = pspgen_paper._split(ds, proto, pspgen_paper._s(0, 30, 0))
    args = (paper_targets("case3"), preset(p.process), p.properties, proto)
    seed_c, seed_b = pspgen_paper._s(0, 80), pspgen_paper._s(0, 81)
    clock = StageClock()
    again = pspgen_paper._competitor_stage(tr, val, *args, out / "models", seed_c, clock, False)
    assert again["reused"] == "results" and again["designs"] == comp["designs"]
    bo2 = pspgen_paper._bayesopt_stage(*args, 20, out / "models", seed_b, clock, False)
    assert all(b["reused"] is True for b in bo2.values()) and not clock.stages
    # without the results file the saved competitor is reloaded: the same φ_comp and checks
    (out / "models" / "competitor.json").unlink()
    again = pspgen_paper._competitor_stage(tr, val, *args, out / "models", seed_c, clock, False)
    assert again["reused"] == "model" and again["designs"] == comp["designs"]
    # other settings (here the seed) are not served from the cache
    other = pspgen_paper._bayesopt_stage(*args, 20, out / "models", seed_b + 1, clock, False)
    assert not any(b["reused"] for b in other.values())


@pytest.mark.parametrize("argv, message", [
    (["--scale", "0"], "--scale must be in (0, 1]"),
    (["--scale", "1.5"], "--scale must be in (0, 1]"),
    (["--seed", "-1"], "seed"),
])
def test_bad_arguments_refused_before_work(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    rc = main(["benchmark", "pspgen-paper-case1", "--out", str(out), *argv])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_out_refused_before_work(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["benchmark", "pspgen-paper-case1", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    missing = tmp_path / "no" / "such" / "dir"
    assert main(["benchmark", "pspgen-paper-case1", "--out", str(missing)]) == 2
    assert "missing or read-only" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_stage_switches_checked_before_work(tmp_path, capsys):
    with pytest.raises(TypeError, match="competitor must be True or False"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "a", competitor=1)
    with pytest.raises(TypeError, match="bayesopt must be True or False"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "a", bayesopt=None)
    assert not (tmp_path / "a").exists()
    # the CLI switches exist only for the cases that have the stages
    assert main(["benchmark", "pspgen-paper-case2", "--out", str(tmp_path / "b"),
                 "--no-bayesopt"]) == 2
    assert "has no 'bayesopt' option (--no-bayesopt" in capsys.readouterr().err
    assert main(["benchmark", "pspgen-paper-case2", "--out", str(tmp_path / "b"),
                 "--tempering"]) == 2
    assert "(--tempering applies to rixner-o1/o2)" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="non-empty subset of \\['dz1_default', 'dz1_2'\\]"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "a", variants=["dz1_3"])
    with pytest.raises(TypeError, match="variants must be a list"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "a", variants="dz1_2")
    assert main(["benchmark", "pspgen-paper-case3", "--out", str(tmp_path / "a"),
                 "--variants", "dz1_2"]) == 2
    assert "non-empty subset of ['dz1_default']" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_a_folder_in_use_is_refused_at_once(tmp_path, capsys):
    from psppyro.cases import generale, rixner
    from psppyro.cases._common import folder_lock

    out = tmp_path / "busy"
    with folder_lock(out):  # another run holds the folder
        for case, module in (("pspgen-paper-case1", pspgen_paper), ("pspgen-paper-case2", generale),
                             ("rixner-o1", rixner)):
            with pytest.raises(ValueError, match="in use by another run \\(pid"):
                module.run(case, scale=0.01, out=out, progress=False)
        assert main(["benchmark", "pspgen-paper-case1", "--out", str(out)]) == 2
        assert "in use by another run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing was started
    with folder_lock(out):  # released when the holder ends
        pass


def test_baseline_protocol():
    full = protocol("pspgen-paper-case1")
    assert full["competitor"]["gp_epochs"] == 40 and full["competitor"]["eval_samples"] == 1000
    assert full["bayesopt"]["sims_per_eval"] == 50 and full["bayesopt"]["budget_cap"] is None
    c4 = protocol("pspgen-paper-case4")
    assert c4["bayesopt"]["budget_cap"] == 400 and c4["competitor"]["eval_samples"] == 200


def test_run_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        run("pspgen-paper-case2", scale=0.1, out=tmp_path / "a")
    with pytest.raises(TypeError, match="scale must be a number"):
        run("pspgen-paper-case1", scale="0.1", out=tmp_path / "a")
    with pytest.raises(ValueError, match="does not exist"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "x" / "y")
    with pytest.raises(TypeError, match="progress"):
        run("pspgen-paper-case1", scale=0.1, out=tmp_path / "a", progress=1)
    assert not (tmp_path / "a").exists()


def test_protocol_is_the_papers_at_scale_one():
    p = protocol("pspgen-paper-case1")
    assert p["sga"] == {"num_z": 50_000, "batch_size": 100, "lr": 0.2, "decay": 4.0,
                        "patience": 2, "epochs": 20}
    assert (p["train_epochs"], p["batch_size"], p["lr"], p["lr_patience"], p["beta"]) == (
        500, 50, 1e-3, 20, 2.0)
    assert p["reference_per_phi"] == 500 and p["eval_samples"] == 1000
    assert p["variants"] == {"dz1_default": None, "dz1_2": 2}
    assert protocol("pspgen-paper-case3")["presets"]["reference"] == "pspgen-paper-case1-reference"
    small = protocol("pspgen-paper-case4", 0.1)
    assert small["train_epochs"] == 50 and small["sga"]["num_z"] == 5000
    assert small["lr_patience"] == 5 and small["sga"]["epochs"] == 20


def test_results_markdown_marks_goal():
    res = {"case": "c", "protocol": {"scale": 1.0},
           "reference": {"L": {"phi_ref": [1.0, 2.0], "p_ref_grid": 0.8, "p_ref_fresh": 0.8,
                               "p_ref_fresh_se": 0.01}},
           "paper": {"L": {"phi_prop": [1.0, 2.0], "p_prop": 0.8, "phi_ref": [1.0, 2.0],
                           "p_ref": 0.8, "phi_comp": [2.0, 1.0], "p_comp": 0.6}},
           "variants": {}, "wall_times": {"a": 1.0}}
    d = {"phi_star": [1.0, 2.0], "p_model": 0.7, "warnings": []}
    e = {"p_sim": 0.78, "p_sim_se": 0.01}
    res["variants"]["v"] = {
        "d_z0": 3, "d_z1": 2, "designs": {"L": {m: d for m in ("sga", "nuts", "svi")}},
        "evaluations": {"L": {m: e for m in ("sga", "nuts", "svi")}},
        "table": {"L": {"ratio_prop_ref": 0.9, "ratio_paired": 0.975, "ratio_paired_se": 0.01,
                        "goal_met": True}},
        "calibration": {"probability": {"L": {"mean_abs_error": 0.04, "max_abs_error": 0.1}},
                        "coverage90": [0.9], "oracle": {
                            "r2_mean_vs_oracle": [0.5], "r2_triads_model": [0.1],
                            "r2_triads_oracle": [0.2], "blocking_error_mean": [0.0],
                            "blocking_error_max": [0.0]},
                        "figure6_check": {"central90_both_components": 0.9, "num_test": 4}}}
    text = results_markdown(res)
    assert "0.975 ± 0.010 met" in text and "fig5_v.png" in text and "| total | 1.0 |" in text
    res["variants"]["v"]["table"]["L"].update(ratio_paired=0.95, goal_met=False)
    assert "0.950 ± 0.010 missed, within 2 s.e." in results_markdown(res)


def test_paired_ratio_uses_common_random_numbers(tmp_path):
    from psppyro._doctest_fixtures import CoinProcess, white_fraction

    box = Box([0.5], [1.5])  # P(m in box | φ) = φ for the coin process
    cache = tmp_path / "paired.json"
    same = pspgen_paper._paired_ratio([0.6], [0.6], box, CoinProcess(), white_fraction, 400, 3,
                                      cache)
    assert same["ratio_paired"] == 1.0 and same["ratio_paired_se"] == 0.0  # identical draws
    assert same["paired_agreement"] == 1.0
    near = pspgen_paper._paired_ratio([0.57], [0.6], box, CoinProcess(), white_fraction, 4000, 3,
                                      tmp_path / "near.json")
    # exact ratio 0.95; the paired s.e. is far below the ≈ 0.025 of two independent estimates
    assert abs(near["ratio_paired"] - 0.95) < 4 * near["ratio_paired_se"]
    assert near["ratio_paired_se"] < 0.01 and near["paired_agreement"] > 0.95
    # cached under its settings
    assert pspgen_paper._paired_ratio([0.6], [0.6], box, None, None, 400, 3, cache) == same


# --------------------------------------------------------------------------- calibration
def test_probability_calibration_exact_model_has_small_error():
    # model m | φ ~ N(φ, 0.5²) (slope 0.4, noise 0.3) equals the data's law: |ΔP| within MC error
    ds = _grid_ds([-1.0, 0.0, 0.5, 1.0], 2000, 0.5, seed=0)
    box = Box([0.0], [1.0])
    out = cal.probability_calibration(ToyChain(slope=0.4, noise=0.3), {"B": box}, ds, 4000, 0)
    se = max(out["B"]["se_sim"])
    assert out["B"]["mean_abs_error"] < 4 * se
    # P_sim is the per-φ hit fraction: the analytic P(1 ≤ m ≤ 2 | φ) within 4 binomial SE
    other = cal.probability_calibration(ToyChain(slope=0.4, noise=0.3),
                                        {"B": Box([1.0], [2.0])}, ds, 4000, 0)
    assert other["B"]["p_sim"] == pytest.approx(
        [float(Normal(p, 0.5).cdf(torch.tensor(2.0)) - Normal(p, 0.5).cdf(torch.tensor(1.0)))
         for p in (-1.0, 0.0, 0.5, 1.0)], abs=4 * 0.012)


def test_probability_calibration_detects_miscalibration():
    ds = _grid_ds([0.0, 0.5, 1.0], 1000, 0.5, seed=1)
    wide = cal.probability_calibration(ToyChain(slope=1.0, noise=1.0), {"B": Box([0.0], [1.0])},
                                       ds, 4000, 0)
    # N(φ, 2) against N(φ, 0.25): P(0 ≤ m ≤ 1 | φ = 0.5) is 0.276 vs 0.683
    assert wide["B"]["max_abs_error"] > 0.3


def test_interval_coverage_nominal_and_too_narrow():
    g = torch.Generator().manual_seed(3)
    phi = torch.zeros(1000, 1)
    m = 0.5 * torch.randn(1000, 1, generator=g)
    ok = cal.interval_coverage(ToyChain(slope=0.4, noise=0.3), phi, m, 0.9, 2000, seed=0)[0]
    se = math.sqrt(0.9 * 0.1 / 1000)
    assert abs(ok - 0.9) < 4 * se + 0.015  # + the interval ends' own sampling error
    narrow = cal.interval_coverage(ToyChain(slope=0.1, noise=0.1), phi, m, 0.9, 2000, seed=0)[0]
    assert narrow < 0.5


def test_blocked_entries_are_a_point_mass_on_both_sides():
    ds = _grid_ds([0.0, 1.0], 1500, 0.5, seed=2, blocked_fraction=0.3)
    model = _Blocking(slope=0.4, noise=0.3)
    r = cal.oracle_r2(model, ds, 2000, seed=0)
    se = math.sqrt(0.3 * 0.7 / 1500) + math.sqrt(0.3 * 0.7 / 2000)
    assert r["blocking_error_max"][0] < 4 * se
    # the percolating means agree with the oracle's (R² over two points of means ≈ 1)
    assert r["r2_mean_vs_oracle"][0] > 0.95
    # coverage counts an observed blocked entry as inside when the interval reaches −inf
    phi = torch.zeros(1500, 1)
    m = torch.as_tensor(ds["m"].values[:1500])
    assert 0.85 < cal.interval_coverage(model, phi, m, 0.9, 2000, seed=1)[0] <= 1.0
    # a model without blocking misses the blocking probability by 0.3
    r0 = cal.oracle_r2(ToyChain(slope=0.4, noise=0.3), ds, 2000, seed=0)
    assert r0["blocking_error_mean"][0] == pytest.approx(0.3, abs=0.03)


def test_calibration_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        cal.blocked([float("nan")])
    with pytest.raises(ValueError, match="num_samples"):
        cal.predictive_samples(ToyChain(), torch.zeros(2, 1), 0)
    with pytest.raises(ValueError, match="phi must have shape"):
        cal.predictive_samples(ToyChain(), torch.zeros(2), 5)
    with pytest.raises(ValueError, match="level"):
        cal.interval_coverage(ToyChain(), torch.zeros(2, 1), torch.zeros(2, 1), 1.5)
    with pytest.raises(ValueError, match="targets"):
        cal.probability_calibration(ToyChain(), {}, _grid_ds([0.0], 2, 0.1, 0))
    with pytest.raises(ValueError, match="no 'm'"):
        cal.grid_summary(_grid_ds([0.0], 2, 0.1, 0).drop_vars("m"))
