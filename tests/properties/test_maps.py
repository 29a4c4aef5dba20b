import math

import pytest
import torch

from psppyro.properties import (
    PROPERTY_MAPS,
    conductivity,
    elasticity,
    log_permeability,
    property_map,
)


def _image(seed, shape=(2, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.6).double()


def test_registry_names_and_lookup():
    assert set(PROPERTY_MAPS) == {
        "log_permeability", "log_permeability_paper", "rixner_o1", "rixner_o2", "c11_3d"
    }
    pm = property_map("rixner_o2")
    assert property_map(pm) is pm
    with pytest.raises(ValueError, match=r"properties must be one of .*'c11_3d'.*got 'nope'"):
        property_map("nope")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        pm.evaluate([[0.0, 1.0]])
    with pytest.raises(ValueError, match="at least 3 dims"):
        property_map("c11_3d")(torch.ones(4, 4))


def test_log_permeability_map_matches_function():
    x = torch.ones(3, 16, 16)
    x[..., :, :4] = 0.0  # vertical channels: flow along y only
    m, flags = property_map("log_permeability").evaluate(x)
    ref, perc = log_permeability(x, return_percolation=True)
    assert torch.equal(m, ref)
    assert torch.equal(flags["percolates"], perc)
    assert flags["percolates"].tolist() == [[False, True]] * 3


def test_rixner_maps_are_the_documented_combinations():
    x = _image(0)
    K = conductivity(x, phases=(1.0, 50.0), method="extrapolated")
    C = elasticity(x, youngs=(1.0, 50.0), poisson=0.3, plane="strain", method="extrapolated")
    m1 = property_map("rixner_o1")(x)
    m2 = property_map("rixner_o2")(x)
    assert m1.shape == m2.shape == (2, 2) and m1.dtype == m2.dtype == torch.float64
    # the maps solve in float32 (CG rtol 1e-5): agree with the float64 solve to ~1e-5
    tol = {"rtol": 1e-4, "atol": 0.0}
    torch.testing.assert_close(m1[:, 0], K[:, 0, 0], **tol)
    torch.testing.assert_close(m1[:, 1], 0.5 * (C[:, 0, 0] + C[:, 1, 1]), **tol)
    torch.testing.assert_close(m2, torch.stack([K[:, 0, 0], K[:, 1, 1]], -1), **tol)


def test_c11_3d_is_first_stiffness_entry_of_a_volume():
    x = _image(1, (2, 6, 6, 6))
    m, flags = property_map("c11_3d").evaluate(x)
    C = elasticity(x, youngs=(2.4, 120.0), poisson=0.3, ndim=3)
    assert m.shape == (2, 1)
    torch.testing.assert_close(m[:, 0], C[:, 0, 0], rtol=1e-6, atol=0.0)
    assert flags["converged"].all()


def test_log_permeability_paper_is_brinkman_with_kappa_s_of_the_image_size():
    from psppyro.properties.maps import PAPER_SOLID_PERMEABILITY

    pm = property_map("log_permeability_paper")
    assert pm.components == ("ln_k_xx", "ln_k_yy") and pm.ndim == 2
    assert "kappa_s = 0.02 h^2" in pm.description and PAPER_SOLID_PERMEABILITY == 0.02
    for n in (12, 18):
        x = torch.ones(2, n, n)
        x[..., :, : n // 3] = 0.0  # solid layer across x: void percolates along y only
        m, flags = pm.evaluate(x)
        ref, perc = log_permeability(
            x, return_percolation=True, solid_permeability=0.02 / n**2
        )
        torch.testing.assert_close(m, ref, rtol=1e-10, atol=0)  # same solve, round-off only
        assert torch.equal(flags["percolates"], perc)
        assert flags["percolates"].tolist() == [[False, True]] * 2
        # across the layers the exact laminate value: k_xx = kappa_s / s, s = solid fraction
        s = (n // 3) / n
        torch.testing.assert_close(m[:, 0], torch.full((2,), math.log(0.02 / n**2 / s),
                                                       dtype=m.dtype), rtol=1e-9, atol=0)


def test_log_permeability_paper_blocked_direction_near_minus_9_5_at_36():
    """A pspgen36-paper structure at phi = (1, 2): blocked along x, finite ln k_xx near -9.5."""
    import psppyro as pp

    x = pp.process.preset("pspgen36-paper").sample(torch.tensor([1.0, 2.0]), 6, seed=0)
    m, flags = property_map("log_permeability_paper").evaluate(x)
    assert torch.isfinite(m).all()
    blocked = ~flags["percolates"][:, 0]
    assert blocked.sum() >= 3
    assert ((m[blocked, 0] > -10.5) & (m[blocked, 0] < -8.5)).all(), m[blocked, 0]
    assert abs(float(m[blocked, 0].mean()) + 9.5) < 0.4
    # the literal map floors the same directions at -20
    m0, f0 = property_map("log_permeability").evaluate(x)
    assert torch.equal(f0["percolates"], flags["percolates"])
    assert (m0[blocked, 0] == -20.0).all()
    # open directions: the leaky solid adds flow (k grows; ~0.1 in ln k, more at a pinched throat)
    open_ = flags["percolates"]
    d = m[open_] - m0[open_]
    assert (d >= 0).all() and (d < 0.6).all() and float(d.median()) < 0.15, d
