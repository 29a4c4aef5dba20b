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
    assert set(PROPERTY_MAPS) == {"log_permeability", "rixner_o1", "rixner_o2", "c11_3d"}
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
    K = conductivity(x, phases=(1.0, 50.0))
    C = elasticity(x, youngs=(1.0, 50.0), poisson=0.3, plane="strain")
    m1 = property_map("rixner_o1")(x)
    m2 = property_map("rixner_o2")(x)
    assert m1.shape == m2.shape == (2, 2)
    torch.testing.assert_close(m1[:, 0], K[:, 0, 0])
    torch.testing.assert_close(m1[:, 1], 0.5 * (C[:, 0, 0] + C[:, 1, 1]))
    torch.testing.assert_close(m2, torch.stack([K[:, 0, 0], K[:, 1, 1]], -1))


def test_c11_3d_is_first_stiffness_entry_of_a_volume():
    x = _image(1, (2, 6, 6, 6))
    m, flags = property_map("c11_3d").evaluate(x)
    C = elasticity(x, youngs=(2.4, 120.0), poisson=0.3, ndim=3)
    assert m.shape == (2, 1)
    torch.testing.assert_close(m[:, 0], C[:, 0, 0], rtol=1e-6, atol=0.0)
    assert flags["converged"].all()
