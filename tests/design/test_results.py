"""Results a user can keep and trust: judged diagnostics, NetCDF + JSON files, progress bars."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from psppyro.design import Box, DesignWarning, infer_design
from psppyro.design.arviz_io import import_arviz
from psppyro.design.results import judge

A = torch.tensor([[1.0, 0.5], [0.0, 1.0]])


class Toy:
    phi_bounds = torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    latent_dim = 2
    phi_names = ["alpha", "beta"]

    def property_dist(self, phi, z):
        return Independent(Normal(phi @ A.T + 0.5 * z, 0.5), 1)


BOX = Box([0.4, -0.6], [0.8, -0.2])


def test_untrained_guide_warns_about_khat():
    # One SVI step leaves the Gaussian guide at its initialization: its draws cannot represent
    # the narrow box posterior (measured k-hat >> 0.7 for this seed).
    with pytest.warns(DesignWarning, match=r"PSIS k-hat = .* > 0.7"):
        res = infer_design(Toy(), BOX, "svi", seed=0, num_steps=1, num_samples=200,
                           num_eval_samples=500)
    assert res.diagnostics["khat"] > 0.7
    assert any("k-hat" in w for w in res.warnings) and "WARNING: PSIS k-hat" in res.summary()


def test_unreachable_box_warns():
    # m = Aφ + noise with |Aφ| <= 4.5: a box at m ≈ 40 has P ≈ 0 everywhere.
    far = Box([40.0, 40.0], [41.0, 41.0])
    with pytest.warns(DesignWarning, match="practically unreachable"):
        res = infer_design(Toy(), far, "sga", num_z=100, epochs=1, restarts=2,
                           num_eval_samples=200)
    assert res.probability < 1e-6


def test_judge_rhat_divergences_and_clean_runs():
    msgs = judge({"r_hat": [1.0, 1.2], "divergences": 3}, BOX, 0.3, 0.01, "nuts")
    assert len(msgs) == 2 and "R-hat = 1.2 > 1.01" in msgs[0] and "3 divergent" in msgs[1]
    assert judge({"r_hat": [math.nan], "divergences": 0, "khat": 0.3}, BOX, 0.3, 0.01, "x") == []
    assert "k-hat = inf" in judge({"khat": math.inf}, BOX, 0.3, 0.01, "svi")[0]


def test_nuts_netcdf_round_trip_with_energy(tmp_path):
    az = import_arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)  # 30 draws per chain: R-hat may be > 1.01
        res = infer_design(Toy(), BOX, "nuts", seed=2, num_samples=30, warmup_steps=30,
                           num_chains=2, num_eval_samples=500)
    assert (max(res.diagnostics["r_hat"]) > 1.01) == any("R-hat" in w for w in res.warnings)
    json_path, nc_path = res.save(str(tmp_path / "r.json"))
    assert nc_path == str(tmp_path / "r.nc")
    idata = az.from_netcdf(nc_path)
    assert list(idata.posterior["phi_dim"].values) == ["alpha", "beta"]
    assert dict(idata.posterior["phi"].sizes) == {"chain": 2, "draw": 30, "phi_dim": 2}
    assert torch.allclose(
        torch.as_tensor(idata.posterior["phi"].values).reshape(-1, 2), res.samples.double()
    )
    for var in ("energy", "lp", "diverging"):
        assert idata.sample_stats[var].shape == (2, 30)
    # energy[i] is the Hamiltonian at the start of the transition to draw i: the potential energy
    # at draw i - 1 (= -lp[i - 1]) plus a kinetic energy >= 0.
    energy, lp = idata.sample_stats["energy"].values, idata.sample_stats["lp"].values
    assert (energy[:, 1:] >= -lp[:, :-1] - 1e-9).all() and not (energy[:, 1:] == -lp[:, :-1]).all()
    bfmi = az.bfmi(idata)
    assert bfmi.shape == (2,) and bool((bfmi > 0).all())
    attrs = idata.posterior.attrs
    assert attrs["psppyro_method"] == "nuts" and int(attrs["psppyro_seed"]) == 2
    assert json.loads(attrs["psppyro_target"])["low"] == [0.4, -0.6]
    d = json.loads(open(json_path).read())
    assert d["posterior_file"] == "r.nc" and d["target"]["high"] == [0.8, -0.2]
    assert set(d["phi_star"]) == {"alpha", "beta"}
    # float32 values are written with their shortest round-trip digits (numpy's str of the
    # float32), which read back to exactly the same float32.
    for name, v in zip(res.phi_names, res.phi_star):
        f32 = np.float32(v.item())
        assert d["phi_star"][name] == float(str(f32)) and np.float32(d["phi_star"][name]) == f32


def test_sga_endpoints_are_not_a_posterior(tmp_path):
    az = import_arviz()
    res = infer_design(Toy(), BOX, "sga", seed=0, num_z=200, epochs=2, restarts=3,
                       num_eval_samples=500)
    _, nc = res.save(str(tmp_path / "s.json"))
    idata = az.from_netcdf(nc)
    assert "posterior" not in idata.groups()
    opt = idata.optimization
    assert dict(opt["phi"].sizes) == {"restart": 3, "phi_dim": 2}
    assert list(opt["phi_dim"].values) == ["alpha", "beta"]
    assert opt["log_objective_history"].shape == (3, 3)  # initial + 2 epochs, 3 restarts
    best = int(np.argmax(opt["log_objective"].values))
    assert torch.allclose(torch.as_tensor(opt["phi"].values[best]).float(), res.phi_star)


def test_progress_is_quiet_off_a_terminal_and_on_when_asked(capsys):
    infer_design(Toy(), BOX, "sga", num_z=100, epochs=1, restarts=2, num_eval_samples=100)
    assert capsys.readouterr().err == ""  # progress=None: stderr is not a TTY under pytest
    infer_design(Toy(), BOX, "sga", num_z=100, epochs=1, restarts=2, num_eval_samples=100,
                 progress=True)
    assert "sga" in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress"):
        infer_design(Toy(), BOX, "sga", progress="yes")
