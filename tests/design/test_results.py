"""Results a user can trust: judged diagnostics, SGA end points kept apart, progress bars.

The NetCDF + JSON round trip of a NUTS result is in test_infer.py (it reuses that NUTS run).
"""

import math

import numpy as np
import pytest
import torch

from psppyro.design import Box, DesignWarning, infer_design
from psppyro.design.arviz_io import import_arviz
from psppyro.design.results import judge

from .test_infer import BOX
from .test_infer import LinearToy as Toy


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
