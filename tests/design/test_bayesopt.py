"""Tests of the BoTorch Bayesian-optimization baseline on the simulator."""

import math

import pytest
import torch

from psppyro._doctest_fixtures import CoinProcess, white_fraction
from psppyro.design import Box

pytest.importorskip("botorch")

from psppyro.design.bayesopt import bayesopt_design  # noqa: E402

SD = 0.3


def simulate(phi, n, seed):
    # m ~ N(phi_0 + phi_1, 0.3^2) in 1-D property space
    g = torch.Generator().manual_seed(seed)
    loc = phi.sum() if phi.numel() > 1 else phi[0]
    return loc + SD * torch.randn(n, 1, generator=g, dtype=torch.float64)


def true_p(phi, box=(0.8, 1.2)):
    loc = float(phi.sum())
    cdf = lambda v: 0.5 * (1 + math.erf((v - loc) / (SD * math.sqrt(2))))  # noqa: E731
    return cdf(box[1]) - cdf(box[0])


def test_bo_improves_a_toy_objective_within_a_few_evaluations():
    box = Box([0.8], [1.2])
    res = bayesopt_design(box, simulate, phi_bounds=[[-3.0, 3.0]], budget=240,
                          sims_per_eval=30, num_init=3, raw_samples=32, num_restarts=2, seed=0,
                          true_objective=true_p)
    p_max = true_p(torch.tensor([1.0]))          # 0.495
    first = res.trace[2]["true_value"]       # the recommendation after the 3 Sobol points
    last = res.trace[-1]["true_value"]
    assert len(res.trace) == 8 and res.simulations == 240
    assert [r["simulations"] for r in res.trace] == list(range(30, 241, 30))
    assert last >= 0.9 * p_max, (res.phi, last)
    assert last >= first
    # the observed fractions are binomial estimates of the true p at the evaluated points
    p_true = torch.tensor([true_p(x) for x in res.X])
    z = (res.p_hat - p_true) / (p_true * (1 - p_true) / 30).clamp_min(1e-4).sqrt()
    assert float(z.abs().max()) < 4.5


def test_bo_with_a_process_and_a_property_map():
    # CoinProcess + white_fraction: P(m in [0.5, 1.5] | phi) = phi; three Sobol evaluations of
    # 40 simulations each through simulate_properties
    res = bayesopt_design(Box([0.5], [1.5]), process=CoinProcess(), properties=white_fraction,
                          budget=120, sims_per_eval=40, num_init=3, seed=1)
    assert res.to_dict()["simulations"] == 120 and res.X.shape == (3, 1)
    p = res.X[:, 0]
    z = (res.p_hat - p) / (p * (1 - p) / 40).clamp_min(1e-4).sqrt()
    assert float(z.abs().max()) < 4.5, (res.p_hat, p)
    assert res.trace[-1]["recommended"] in res.X.tolist()   # an evaluated point


def test_bo_rejects_bad_input_before_simulating():
    calls = []

    def counting(phi, n, seed):
        calls.append(1)
        return simulate(phi, n, seed)

    with pytest.raises(ValueError, match="phi_bounds"):
        bayesopt_design(Box([0.8], [1.2]), counting, phi_bounds=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="at least 2"):
        bayesopt_design(Box([0.8], [1.2]), counting, phi_bounds=[[0.0, 1.0]], budget=20,
                        sims_per_eval=20)
    with pytest.raises(ValueError, match="either simulate"):
        bayesopt_design(Box([0.8], [1.2]), counting, process=CoinProcess(),
                        properties=white_fraction)
    with pytest.raises(TypeError, match="Box"):
        from psppyro.design import TargetValue

        bayesopt_design(TargetValue([1.0]), counting, phi_bounds=[[0.0, 1.0]])
    assert calls == []


def test_missing_botorch_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "botorch" or name.startswith("botorch."):
            raise ImportError("no botorch")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install psppyro\[bo\]"):
        bayesopt_design(Box([0.8], [1.2]), simulate, phi_bounds=[[0.0, 1.0]], budget=40)
