"""Smoke test of the end-to-end demo at tiny sizes (the full demo is `make demo`)."""

import json
import os

import pytest

from psppyro.cli import main
from psppyro.demo import PAPER_BOXES, TARGET_ANCHORS


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_demo_writes_every_output_and_consistent_numbers(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    # every figure exists, is a PNG and was printed
    for key, path in res["outputs"].items():
        assert os.path.exists(path), key
        assert path in printed
        if path.endswith(".png"):
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(res["targets"]) == set(TARGET_ANCHORS) == set(PAPER_BOXES)
    assert set(res["designs"]) == {f"{t}/{m}" for t in TARGET_ANCHORS for m in ("sga", "svi")}
    for t in res["targets"].values():
        # boxes are centred on the anchor median with half-width one spread
        for lo, hi, med in zip(t["low"], t["high"], t["median"]):
            assert lo < med < hi
            assert hi - med == pytest.approx(med - lo)
    for d in res["designs"].values():
        assert 0.0 <= d["simulated_probability"] <= 1.0
        assert 0.0 <= d["model_probability"] <= 1.0
        assert 1.0 <= d["phi_star"][0] <= 9.0 and 0.2 <= d["phi_star"][1] <= 2.0
    table = (out / "table.txt").read_text()
    assert "L/sga" in table and "paper box M_d^R" in table
