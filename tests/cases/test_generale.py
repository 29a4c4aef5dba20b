"""The Cases 2 / 5 harness (PSP-GEN, the SV-MOGP competitor and BO) end to end at tiny scale."""

import json

import pytest

from psppyro.cases import case_names, get_case
from psppyro.cases.generale import CASE2_BOX, competitor_design, protocol, run
from psppyro.design import Box
from psppyro.models.generale import _tiny_triads

pytest.importorskip("botorch")


def test_cases_are_registered():
    assert {"pspgen-paper-case2", "pspgen-paper-case5"} <= set(case_names())
    assert get_case("pspgen-paper-case5") is run


def test_protocol_scales_and_validates():
    full = protocol("pspgen-paper-case2", 1.0)
    assert full["eval_samples"] == 1000 and full["competitor"]["num_pairs"] == 20_000
    assert full["psp_gen"]["train_epochs"] == 500 and full["psp_gen"]["prior_m_weight"] == 4.0
    assert protocol("pspgen-paper-case2", 0.001)["eval_samples"] == 20
    with pytest.raises(ValueError, match="scale"):
        protocol("pspgen-paper-case2", 1.5)
    with pytest.raises(ValueError, match="name"):
        protocol("case9")


@pytest.mark.slow  # ~6 min on the loaded session machine; the default suite runs the e2e case test
def test_competitor_design_on_toy_triads_targets_the_box():
    # m = white fraction of 16 Bernoulli(phi) pixels: P(m in [0.7, 0.8]) peaks near phi = 0.75
    out = competitor_design(_tiny_triads(300, 1), {"B": Box([0.7], [0.8])},
                            phi_bounds=[[0.0, 1.0]], gp_epochs=40, gp_lr=0.1, gp_batch_size=300,
                            num_inducing=8, num_pairs=2000, flow_epochs=8, num_candidates=512)
    phi = float(out["designs"]["B"].phi[0])
    assert abs(phi - 0.75) < 0.15, phi
    assert 0 < out["p_model"]["B"] <= 1
    assert set(out["timings"]) == {"chain_s", "pairs_s", "flow_fit_s", "design_s"}
    with pytest.raises(ValueError, match="phi_bounds"):
        competitor_design(_tiny_triads(), {"B": Box([0.7], [0.8])})
    with pytest.raises(TypeError, match="targets"):
        competitor_design(_tiny_triads(), {}, phi_bounds=[[0.0, 1.0]])


def test_case2_end_to_end_at_tiny_scale(tmp_path):
    res = run("pspgen-paper-case2", scale=0.002, out=tmp_path / "c2", seed=0, progress=False)
    rows = res["designs"]["Md"]
    assert set(rows) == {"psp_gen", "competitor", "bo", "reference"}
    assert rows["reference"]["phi"] == [9.0, 1.905]
    for r in rows.values():
        assert 0 <= r["p_sim"] <= 1 and len(r["phi"]) == 2
    # the learned models never saw a triad inside M_d
    assert res["train_size"] <= res["generated"]
    saved = json.loads((tmp_path / "c2" / "results.json").read_text())
    assert saved["region"]["low"] == list(CASE2_BOX[0])
    assert (tmp_path / "c2" / "bo_trace.png").stat().st_size > 0
    # Figure-3-style maps: simulation and both models on the 4 × 4 grid, values in [0, 1]
    heat = saved["heatmap"]
    assert len(heat["a"]) == len(heat["b"]) == 4 and heat["per_phi"] == 20
    for key in ("simulation", "psp_gen", "competitor"):
        grid = heat["maps"]["Md"][key]
        assert len(grid) == 4 and all(0.0 <= v <= 1.0 for row in grid for v in row)
    assert (tmp_path / "c2" / "fig3.png").stat().st_size > 1000
    assert "| Md | competitor |" in (tmp_path / "c2" / "results.md").read_text()
    # a second run into the same folder reuses every stage and gives the same table
    again = run("pspgen-paper-case2", scale=0.002, out=tmp_path / "c2", seed=0, progress=False)
    assert again["designs"] == res["designs"] and again["heatmap"] == res["heatmap"]
    assert "competitor: train + design" not in again["wall_times"]
    # a model trained with other settings is refused before any work
    record = tmp_path / "c2" / "models" / "pspgen_train.json"
    record.write_text(record.read_text().replace('"prior_m_weight": 4.0', '"prior_m_weight": 1.0'))
    with pytest.raises(ValueError, match="other settings.*prior_m_weight"):
        run("pspgen-paper-case2", scale=0.002, out=tmp_path / "c2", seed=0, progress=False)


def test_run_rejects_bad_arguments_before_work(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        run("pspgen-paper-case5", scale=0.1, out=f)
    with pytest.raises(ValueError, match="name"):
        run("pspgen-paper-case9", scale=0.1, out=tmp_path / "x")
