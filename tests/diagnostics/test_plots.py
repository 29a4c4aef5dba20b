"""Diagnostics plots: structure of the figures (axes, legends, marked designs) and saving."""

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from psppyro.design import Box, ReferenceMap, infer_design
from psppyro.diagnostics import pair_plot, plot_history, plot_reference_map, to_inference_data


class Toy:
    phi_bounds = torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    latent_dim = 1
    phi_names = ["a", "b"]

    def property_dist(self, phi, z):
        return Independent(Normal(phi + 0.3 * z, 0.3), 1)


def test_pair_plot_overlays(tmp_path):
    g = torch.Generator().manual_seed(0)
    fig = pair_plot(
        torch.randn(200, 3, generator=g),
        torch.randn(200, 3, generator=g) + 1,
        labels=["svi", "nuts"],
        names=["x", "y", "w"],
        max_points=50,
    )
    axes = np.asarray(fig.axes).reshape(3, 3)
    assert axes[0, 0].get_legend_handles_labels()[1] == ["svi", "nuts"]
    assert len(axes[2, 0].collections) == 2 and len(axes[2, 0].collections[0].get_offsets()) == 50
    assert not axes[0, 2].get_visible()
    assert axes[2, 1].get_xlabel() == "y"
    fig.savefig(tmp_path / "pair.png")
    assert (tmp_path / "pair.png").stat().st_size > 0
    with pytest.raises(ValueError, match="same d_phi"):
        pair_plot(torch.zeros(5, 2), torch.zeros(5, 3))


def test_reference_map_marks_designs():
    axes = [torch.linspace(1, 9, 5), torch.linspace(0.2, 2, 4)]
    ref = ReferenceMap(
        axes,
        torch.rand(5, 4),
        torch.zeros(5, 4),
        Box([0.0, 0.0], [1.0, 1.0]),
        10,
        ["phi_1", "phi_2"],
    )
    fig = plot_reference_map(
        ref,
        designs={"sga": torch.tensor([1.0, 2.0]), "svi": torch.tensor([5.0, 0.5])},
        samples={"svi": torch.tensor([[5.0, 0.3], [5.5, 0.4]])},
    )
    ax = fig.axes[0]
    offsets = [c.get_offsets().tolist() for c in ax.collections[1:]]
    assert [[1.0, 2.0]] in offsets and [[5.0, 0.5]] in offsets
    assert ax.get_legend_handles_labels()[1] == ["sga", "svi"]
    assert ax.get_xlabel() == "phi_1"
    ref3 = ReferenceMap([axes[0]] * 3, torch.rand(5, 5, 5), torch.zeros(5, 5, 5), ref.target, 10)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        plot_reference_map(ref3)


def test_history_and_idata():
    res = infer_design(Toy(), Box([0.9, 0.9], [1.1, 1.1]), "sga", num_z=200, epochs=3, restarts=2)
    fig = plot_history(res)
    assert len(fig.axes[0].lines) == 2  # one line per restart
    idata = to_inference_data(res.endpoints, res.phi_names)
    assert list(idata.posterior["phi_dim"].values) == ["a", "b"]
    # SGA's restart end points are not a posterior: they live in the "optimization" group.
    assert dict(res.idata.optimization["phi"].sizes) == {"restart": 2, "phi_dim": 2}
    assert res.idata.optimization["log_objective"].shape == (2,)


def test_microstructure_gallery():
    from psppyro.diagnostics import plot_microstructures

    x = torch.zeros(5, 6, 6)
    x[:, :, :3] = 1.0
    fig = plot_microstructures(x, title="phi*", ncols=3, titles=list("abcde"))
    assert len(fig.axes) == 5
    img = fig.axes[0].images[0].get_array()
    assert img[0, 0] == 1.0 and img[0, 5] == 0.0
    assert fig.axes[4].get_title() == "e"
    with pytest.raises(ValueError, match="shape"):
        plot_microstructures(torch.zeros(2, 2, 3, 3))
