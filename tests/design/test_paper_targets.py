"""The PSP-GEN paper's target boxes and tables, checked against the printed text."""

import math
import re
from pathlib import Path

import pytest
import torch

import psppyro as pp
from psppyro.design import PAPER_CASES, Box, PaperDesign, paper_reference, paper_targets

# Rows copied from the paper (Zang & Koutsourelakis, PSP-GEN), columns L, M, R.
TABLES = {
    "case1": {  # Table 1
        "comp": "(1.883, 1.367)/65.8%  (5.335, 0.395)/27.4%  (8.052, 1.406)/63.4%",
        "prop": "(1.009, 2.000)/81.2%  (5.152, 0.200)/28.6%  (8.999, 2.000)/79.2%",
        "ref": "(1.000, 2.000)/81.2%  (4.789, 0.200)/30.2%  (9.000, 1.905)/83.8%",
    },
    "case3": {  # Table 2
        "comp": "(2.095, 1.999)/67.2%  (5.373, 0.775)/19.6%  (8.967, 1.110)/62.4%",
        "prop": "(1.001, 1.999)/81.2%  (4.683, 0.200)/30.2%  (8.999, 1.999)/79.2%",
        "ref": "(1.000, 2.000)/81.2%  (4.789, 0.200)/30.2%  (9.000, 1.905)/83.8%",
    },
    "case4": {  # Table 3
        "comp": "(1.347, 1.292)/81.6%  (6.803, 0.203)/35.2%  (8.502, 1.213)/77.6%",
        "prop": "(1.013, 1.997)/95.4%  (4.996, 0.202)/60.2%  (8.987, 1.971)/93.2%",
        "ref": "(1.000, 2.000)/95.4%  (5.211, 0.200)/61.4%  (9.000, 2.000)/93.2%",
    },
}
# §4.2 and §4.5: the boxes as printed, "[a, b] x [c, d]" per box.
BOXES = {
    "case1": {"L": "[-10, -9] x [-7, -5]", "M": "[-7, -5] x [-7, -5]",
              "R": "[-7, -5] x [-10, -9]"},
    "case4": {"L": "[-12.5, -11] x [-8, -5]", "M": "[-8, -6] x [-8, -6]",
              "R": "[-8, -5] x [-12.5, -11]"},
}
# §4.6, Eq. (26) and the text after it.
CASE5 = {
    "low": ("1.000, 1.000, 1.000, 3.092, 1.000, 0.020, 0.020, 0.020, 0.020, 2.000", 19.2,
            "1.046, 8.995, 4.802, 9.000, 5.036, 1.999, 2.000, 2.000, 2.000, 1.936", 18.0),
    "high": ("1.000, 3.055, 2.374, 8.952, 8.999, 0.020, 0.020, 0.024, 0.021, 0.095", 24.7,
             "6.183, 7.512, 4.351, 8.999, 8.999, 2.000, 0.022, 1.999, 0.023, 2.000", 14.2),
}


def _cells(row):
    return [
        (tuple(float(v) for v in phi.split(",")), float(p) / 100)
        for phi, p in re.findall(r"\(([^)]*)\)/([\d.]+)%", row)
    ]


def _box(text):
    a, b, c, d = (float(v) for v in re.findall(r"-?[\d.]+", text))
    return (a, c), (b, d)


@pytest.mark.parametrize("case", ["case1", "case3", "case4"])
def test_tables_as_printed(case):
    ref = paper_reference(case)
    assert list(ref) == ["L", "M", "R"]
    for kind in ("comp", "prop", "ref"):
        cells = _cells(TABLES[case][kind])
        assert len(cells) == 3
        for name, (phi, p) in zip("LMR", cells):
            d = ref[name]
            assert getattr(d, f"phi_{kind}") == phi, (case, name, kind)
            assert math.isclose(getattr(d, f"p_{kind}"), p, abs_tol=1e-12), (case, name, kind)
    boxes = paper_targets(case)
    printed = BOXES["case4" if case == "case4" else "case1"]
    for name, text in printed.items():
        low, high = _box(text)
        assert tuple(boxes[name].low.tolist()) == low and tuple(boxes[name].high.tolist()) == high
        assert ref[name].printed == text
    assert ref["L"].source == {"case1": "Table 1", "case3": "Table 2", "case4": "Table 3"}[case]


def test_case5_reading_and_values():
    ref = paper_reference("case5")
    assert list(ref) == ["low", "high"]
    for name, (prop, p_prop, comp, p_comp) in CASE5.items():
        d = ref[name]
        assert d.phi_prop == tuple(float(v) for v in prop.split(","))
        assert d.phi_comp == tuple(float(v) for v in comp.split(","))
        assert len(d.phi_prop) == len(d.phi_comp) == 10
        assert math.isclose(d.p_prop, p_prop / 100) and math.isclose(d.p_comp, p_comp / 100)
        assert d.phi_ref is None and d.p_ref is None
    # printed "[-10, -10] x [-7, -7]" read as the square box [-10, -7]^2; high as [-7, -4]^2
    assert ref["low"].printed == "[-10, -10] x [-7, -7]"
    boxes = paper_targets("case5")
    assert boxes["low"].low.tolist() == [-10.0, -10.0] and boxes["low"].high.tolist() == [-7, -7]
    assert boxes["high"].low.tolist() == [-7.0, -7.0] and boxes["high"].high.tolist() == [-4, -4]
    # every published phi lies in the 10-D box [1, 9]^5 x [0.02, 2]^5
    bounds = pp.process.preset("pspgen10d-paper").phi_bounds.double()
    for d in ref.values():
        for phi in (d.phi_prop, d.phi_comp):
            t = torch.tensor(phi, dtype=torch.float64)
            assert ((t >= bounds[:, 0] - 1e-9) & (t <= bounds[:, 1] + 1e-9)).all()


def test_boxes_and_objects():
    boxes = paper_targets("case1")
    assert all(isinstance(b, Box) for b in boxes.values())
    m = torch.tensor([[-9.5, -6.0], [-6.0, -6.0], [-6.0, -9.5], [-8.0, -8.0]])
    assert boxes["L"].contains(m).tolist() == [True, False, False, False]
    assert boxes["M"].contains(m).tolist() == [False, True, False, False]
    assert boxes["R"].contains(m).tolist() == [False, False, True, False]
    # fresh objects: mutating one does not change the registry
    assert paper_targets("case1")["L"] is not boxes["L"]
    d = paper_reference("case4")["M"]
    assert isinstance(d, PaperDesign) and d.case == "case4" and d.name == "M"
    assert d.box.low.tolist() == [-8.0, -8.0]
    with pytest.raises(AttributeError):
        d.p_ref = 0.5  # frozen
    # phi of the 2-D cases lies in the paper's box [1, 9] x [0.2, 2]
    for case in ("case1", "case3", "case4"):
        for d in paper_reference(case).values():
            for phi in (d.phi_ref, d.phi_prop, d.phi_comp):
                assert 1.0 <= phi[0] <= 9.0 and 0.2 <= phi[1] <= 2.0


def test_unknown_case_lists_the_cases():
    assert PAPER_CASES == ("case1", "case3", "case4", "case5")
    for bad in ("case2", "Case1", 1, None):
        with pytest.raises(ValueError, match=r"case must be one of \['case1', 'case3', 'case4'"):
            paper_targets(bad)
        with pytest.raises(ValueError, match="case 2's box is not printed"):
            paper_reference(bad)


_SEED = Path("/work/shared/seeds/000_4c603a569a803fe4.txt")


@pytest.mark.skipif(not _SEED.exists(), reason="the paper's text is not on this machine")
def test_every_number_appears_in_the_paper_text():
    text = _SEED.read_text()
    for case in ("case1", "case3", "case4"):
        for d in paper_reference(case).values():
            for kind in ("comp", "prop", "ref"):
                phi, p = getattr(d, f"phi_{kind}"), getattr(d, f"p_{kind}")
                cell = f"({phi[0]:.3f}, {phi[1]:.3f})/{100 * p:.1f}%"
                assert cell in text, cell
    for text_box in ("[-10, -9] \\times [-7, -5]", "[-12.5, -11] \\times [-8, -5]",
                     "[-8, -5] \\times [-12.5, -11]", "[-10, -10] \\times [-7, -7]",
                     "[-7, -7] \\times [-4, -4]"):
        assert text_box in text, text_box
    for d in paper_reference("case5").values():
        assert ", ".join(f"{v:.3f}" for v in d.phi_prop) in text
