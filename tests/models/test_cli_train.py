"""`psppyro train pspgen` end to end on a tiny generated store."""

import torch

import psppyro as pp
from psppyro.cli import main
from psppyro.models import PSPGen
from psppyro.properties.maps import PropertyMap


def _cheap_properties(x):
    # Volume fraction and horizontal two-point probability at lag 1: analytic and instant.
    m = torch.stack([x.mean((-1, -2)), (x * x.roll(1, -1)).mean((-1, -2))], -1)
    return m, {"percolates": torch.ones_like(m, dtype=torch.bool)}


def test_train_pspgen_from_the_cli(tmp_path, capsys):
    pm = PropertyMap("vf_s2_test", ("vf", "s2"), 2, _cheap_properties, "test map")
    data = tmp_path / "train.zarr"
    pp.data.generate("pspgen36", pm, n_phi=6, per_phi=2, seed=0, path=data, workers=1,
                     progress=False)
    out = tmp_path / "gen.pt"
    ckpt = tmp_path / "ckpt"
    argv = ["train", "pspgen", "--data", str(data), "--val", str(data), "--out", str(out),
            "--epochs", "2", "--batch-size", "6", "--d-z0", "2", "--no-progress",
            "--checkpoint-dir", str(ckpt), "--checkpoint-every", "1"]
    assert main(argv) == 0
    assert "saved to" in capsys.readouterr().out
    gen = PSPGen.load(out)
    assert gen.x_shape == (36, 36) and gen.d_z0 == 2 and gen.m_names == ["vf", "s2"]
    torch.testing.assert_close(gen.phi_bounds, pp.process.preset("pspgen36").phi_bounds.float())
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_0001.pt", "epoch_0002.pt"]
    # Resume to more epochs continues from the newest checkpoint.
    assert main(argv[:8] + ["--epochs", "3"] + argv[10:] + ["--resume"]) == 0
    assert (ckpt / "epoch_0003.pt").exists()
