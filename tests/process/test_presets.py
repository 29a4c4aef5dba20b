import math

import pyro.poutine as poutine
import pytest
import torch

from psppyro.process import (
    PRESETS,
    GaussianFilterDensity,
    GaussianRandomField,
    PSPGen10DDensity,
    PSPGenDensity,
    SpectralMixtureDensity,
    correlation_length,
    from_config,
    preset,
)


@pytest.fixture
def one_thread():
    """Small FFTs and sparse solves: one torch thread is several times faster under load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _orientation(x):
    """Mean correlation lengths along y (axis -2) and x (axis -1) over samples."""
    return float(correlation_length(x, -2).mean()), float(correlation_length(x, -1).mean())


def test_known_names_and_unknown_name_error():
    assert set(PRESETS) == {
        "pspgen36", "pspgen128", "pspgen10d", "rixner64", "filtered3d",
        "pspgen36-paper", "pspgen128-paper", "pspgen10d-paper",
    }
    assert all(isinstance(v, str) and v for v in PRESETS.values())
    with pytest.raises(ValueError, match=r"name must be one of \['filtered3d', 'pspgen10d'"):
        preset("pspgen37")


@pytest.mark.parametrize(
    "name,shape,sdf_type,d_phi,vf",
    [
        ("pspgen36", (36, 36), PSPGenDensity, 2, 2 / 3),
        ("pspgen128", (128, 128), PSPGenDensity, 2, 2 / 3),
        ("pspgen10d", (36, 36), PSPGen10DDensity, 10, 2 / 3),
        ("pspgen36-paper", (36, 36), PSPGenDensity, 2, 2 / 3),
        ("pspgen128-paper", (128, 128), PSPGenDensity, 2, 2 / 3),
        ("pspgen10d-paper", (36, 36), PSPGen10DDensity, 10, 2 / 3),
        ("rixner64", (64, 64), SpectralMixtureDensity, 100, 0.5),
        ("filtered3d", (51, 51, 51), GaussianFilterDensity, 3, 0.5),
    ],
)
def test_preset_set_ups(name, shape, sdf_type, d_phi, vf):
    proc = preset(name, phase_field=None)
    assert isinstance(proc, GaussianRandomField) and isinstance(proc.sdf, sdf_type)
    assert proc.shape == shape and proc.d_phi == d_phi and proc.volume_fraction == vf
    assert proc.threshold == "hard" and proc.eps == 25.0
    assert proc.noise == ("uniform" if name == "filtered3d" else "normal")
    rebuilt = from_config(proc.config())
    assert rebuilt.config() == proc.config()


def test_pspgen36_orientation_without_phase_field():
    """phi = (1, 2): elongated along y (axis -2); phi = (9, 2): along x — by correlation lengths."""
    proc = preset("pspgen36", phase_field=None)
    x = proc.sample(torch.tensor([[1.0, 2.0], [9.0, 2.0], [5.0, 2.0]]), num_samples=16, seed=0)
    assert (x.sum((-2, -1)) == 864).all()  # void fraction 2/3 exactly
    ly, lx = _orientation(x[0])
    assert ly > 3 * lx, (ly, lx)
    ly, lx = _orientation(x[1])
    assert lx > 3 * ly, (ly, lx)
    # per sample, not only on average
    assert (correlation_length(x[0], -2) > correlation_length(x[0], -1)).all()
    assert (correlation_length(x[1], -1) > correlation_length(x[1], -2)).all()
    # phi1 = 5: nearly isotropic (ratio within a factor 2 either way)
    ly, lx = _orientation(x[2])
    assert 0.5 < ly / lx < 2.0, (ly, lx)


def test_rixner64_sample_binary_model_relaxed():
    proc = preset("rixner64")
    phi = torch.zeros(2, 100)
    x = proc.sample(phi, num_samples=2, seed=1)
    assert x.shape == (2, 2, 64, 64) and (x.sum((-2, -1)) == 2048).all()
    xr = proc.sample(phi[0], num_samples=2, seed=1, threshold="relaxed")
    assert not ((xr == 0) | (xr == 1)).all()
    tr = poutine.trace(proc.model).get_trace(phi)
    assert tr.nodes["white_noise"]["fn"].batch_shape == (2,)
    assert tr.nodes["white_noise"]["fn"].event_shape == (64, 64)
    out = tr.nodes["_RETURN"]["value"]
    assert out.shape == (2, 64, 64) and ((out > 0.01) & (out < 0.99)).any()
    assert proc.phi_prior.event_shape == (100,)


def test_filtered3d_sample_and_orientation():
    proc = preset("filtered3d")
    x = proc.sample(torch.tensor([1.0, 1.0, 7.0]), num_samples=1, seed=0)
    assert x.shape == (1, 51, 51, 51)
    assert (x.sum((-3, -2, -1)) == round(0.5 * 51**3)).all()
    lengths = [float(correlation_length(x, a, ndim=3)) for a in (-3, -2, -1)]
    assert lengths[2] > 3 * max(lengths[0], lengths[1]), lengths


def test_preset_overrides():
    proc = preset("pspgen36", phase_field=None, volume_fraction=0.5)
    assert proc.volume_fraction == 0.5 and proc.phase_field is None


def test_pspgen_presets_with_cahn_hilliard(one_thread):
    from psppyro.process import CahnHilliard

    proc = preset("pspgen36")
    assert isinstance(proc.phase_field, CahnHilliard)
    cfg = proc.config()
    assert cfg["phase_field"]["type"] == "CahnHilliard"
    assert cfg["phase_field"]["gamma"] == 2.0 and cfg["phase_field"]["D"] == 10.0
    assert preset("pspgen128").config()["phase_field"]["gamma"] == 10.0
    assert preset("pspgen10d").config()["phase_field"] == cfg["phase_field"]
    rebuilt = from_config(cfg)
    assert rebuilt.config() == cfg
    phi = torch.tensor([[1.0, 2.0], [9.0, 2.0]])
    x = proc.sample(phi, num_samples=4, seed=0)
    assert x.shape == (2, 4, 36, 36) and ((x == 0) | (x == 1)).all()
    assert torch.equal(rebuilt.sample(phi, num_samples=4, seed=0), x)
    # Cahn-Hilliard coarsens but keeps the orientation set by the spectral density
    ly, lx = _orientation(x[0])
    assert ly > 1.5 * lx, (ly, lx)
    ly, lx = _orientation(x[1])
    assert lx > 1.5 * ly, (ly, lx)


@pytest.mark.parametrize("name", ["pspgen36", "pspgen128", "pspgen10d"])
def test_literal_presets_stay_literal_and_paper_presets_differ_only_in_two_details(name):
    lit, pap = preset(name).config(), preset(name + "-paper").config()
    assert lit["filter_amplitude"] == "sqrt" and lit["phase_field"]["dx"] == 1.0
    assert pap["filter_amplitude"] == "density" and pap["phase_field"]["dx"] == 2.0
    assert pap["phase_field"]["dt"] is None  # the validated default step, as the literal preset
    gamma = 10.0 if name == "pspgen128" else 2.0
    for cfg in (lit, pap):
        ch = cfg["phase_field"]
        assert (ch["D"], ch["gamma"], ch["T"]) == (10.0, gamma, 5.0)
    # everything else identical
    diff = {k for k in lit if lit[k] != pap[k]}
    assert diff == {"filter_amplitude", "phase_field"}
    assert {k for k in lit["phase_field"] if lit["phase_field"][k] != pap["phase_field"][k]} == {
        "dx"
    }
    rebuilt = from_config(pap)
    assert rebuilt.config() == pap
    assert "reconstructed" in PRESETS[name + "-paper"] and "dx=2" in PRESETS[name + "-paper"]


def test_paper_preset_overrides_and_same_noise_as_literal(one_thread):
    proc = preset("pspgen36-paper", phase_field=None)
    assert proc.phase_field is None and proc.filter_amplitude == "density"
    lit = preset("pspgen36", filter_amplitude="density", phase_field=None)
    phi = torch.tensor([[1.0, 2.0], [9.0, 0.2]])
    assert torch.equal(proc.sample(phi, 3, seed=2), lit.sample(phi, 3, seed=2))
    rebuilt = from_config(preset("pspgen36-paper").config())
    x = rebuilt.sample(phi, 2, seed=5)
    assert torch.equal(x, preset("pspgen36-paper").sample(phi, 2, seed=5))


def test_paper_preset_keeps_the_anisotropy_through_cahn_hilliard(one_thread):
    """phi = (1, 2): literal CH rounds the streaks (ly/lx ≈ 2.5); paper reading: ≈ 8."""
    phi = torch.tensor([1.0, 2.0])
    lit = preset("pspgen36").sample(phi, 32, seed=0)
    pap = preset("pspgen36-paper").sample(phi, 32, seed=0)
    ly_l, lx_l = _orientation(lit)
    ly_p, lx_p = _orientation(pap)
    assert ly_p / lx_p > 2 * (ly_l / lx_l), (ly_p / lx_p, ly_l / lx_l)


# Measured by benchmarks/pspgen_fingerprints.py (36², 200 samples per point, seed 0):
# P(m in box | phi_ref) of the paper reading and of the literal reading.
FINGERPRINT_200 = {"L": (0.760, 0.005), "R": (0.730, 0.000)}


@pytest.mark.parametrize("box,phi", [("L", (1.0, 2.0)), ("R", (9.0, 1.905))])
def test_paper_reading_reproduces_the_fingerprints_and_literal_does_not(box, phi, one_thread):
    """50 fresh samples per reading: P within 3.5 s.e. of the 200-sample measurement."""
    from psppyro.design import paper_targets
    from psppyro.properties import property_map

    target, n = paper_targets("case1")[box], 50
    measured, literal_measured = FINGERPRINT_200[box]
    phi = torch.tensor(phi, dtype=torch.float64)
    x = preset("pspgen36-paper").sample(phi, n, seed=123)
    m, flags = property_map("log_permeability_paper").evaluate(x)
    p = float(target.contains(m).double().mean())
    se = math.sqrt(measured * (1 - measured) * (1 / n + 1 / 200))
    assert abs(p - measured) < 3.5 * se, (p, measured, se)
    # the blocked direction is the one the box asks for: x for L, y for R
    blocked = 1.0 - flags["percolates"].double().mean(0)
    axis = 0 if box == "L" else 1
    assert blocked[axis] > 0.75 and blocked[1 - axis] < 0.1, blocked
    # the literal reading at the same phi and noise: the box is (almost) never hit
    x_lit = preset("pspgen36").sample(phi, n, seed=123)
    p_lit = float(target.contains(property_map("log_permeability")(x_lit)).double().mean())
    se_lit = math.sqrt(max(literal_measured * (1 - literal_measured), 0.01 * 0.99) / n)
    assert p_lit < literal_measured + 3.5 * se_lit and p_lit < p - 0.4, (p_lit, p)
