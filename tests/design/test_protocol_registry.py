"""The design protocol (one batched probe), targets through every method, and the method registry.

Sizes are tiny: these tests check wiring and error messages, the statistical accuracy of each
method is checked in test_infer.py.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import psppyro as pp
from psppyro._validation import check_int, check_seed
from psppyro.cli import main
from psppyro.design import (
    Box,
    DesignWarning,
    MethodOutput,
    TargetDensity,
    TargetValue,
    describe_methods,
    infer_design,
    method_names,
    method_options,
    register_method,
    unregister_method,
    validate_model,
)

A = torch.tensor([[1.0, 0.5], [0.0, 1.0]])


class Batched:
    """A ten-line user model written for batches: phi (..., 2), z (..., 2)."""

    phi_bounds = torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    latent_dim = 2

    def property_dist(self, phi, z):
        return Independent(Normal(phi @ A.T + 0.5 * z, 0.5), 1)


class NotBatched(Batched):
    """Indexes the first *row* instead of the first component: fine for one φ, wrong in batch."""

    def property_dist(self, phi, z):
        loc = torch.stack([phi[0] + 0.5 * phi[1], phi[1]]) + 0.5 * z
        return Independent(Normal(loc, 0.5), 1)


class Detached(Batched):
    def property_dist(self, phi, z):
        return Independent(Normal(phi.detach() @ A.T + 0.5 * z, 0.5), 1)


class Scalarizing(Batched):
    def property_dist(self, phi, z):
        # a typical unbatched user model: indexes phi as one point (detach: no torch warning)
        p = phi.detach()
        return Independent(Normal(torch.tensor([float(p[0]), float(p[1])]) + z, 0.5), 1)


class NoDistribution(Batched):
    def property_dist(self, phi, z):
        return phi + z


def test_validators_accept_numpy_integers_and_name_the_argument():
    assert check_int("n", np.int64(3)) == 3 and isinstance(check_int("n", np.int32(3)), int)
    assert check_seed("seed", np.uint32(7)) == 7
    for bad in (True, 3.0, "3", None):
        with pytest.raises(TypeError, match="num_z must be an integer"):
            check_int("num_z", bad)
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer >= 0, got -1"):
        check_int("warmup_steps", -1, minimum=0)
    with pytest.raises(ValueError, match=r"in \[1, 5\]"):
        check_int("k", 6, maximum=5)
    with pytest.raises(ValueError, match="seed"):
        check_seed("seed", -1)
    with pytest.raises(TypeError, match="seed"):
        check_seed("seed", 1.0)


def test_probe_accepts_a_batched_user_model():
    cm = validate_model(Batched(), Box([0.0, 0.0], [1.0, 1.0]))
    assert (cm.d_phi, cm.latent_dim, cm.d_m, cm.diag_normal) == (2, 2, 2, True)
    assert cm.names == ["phi_0", "phi_1"]
    assert isinstance(Batched(), pp.design.DesignModel)


@pytest.mark.parametrize(
    "model,exc,match",
    [
        (NotBatched(), ValueError, "must broadcast the batch shapes"),
        (Detached(), ValueError, "no gradient reaches phi"),
        (Scalarizing(), ValueError, "failed when called with batched inputs"),
        (NoDistribution(), TypeError, "must return a torch.distributions.Distribution"),
    ],
)
def test_probe_explains_what_is_wrong_with_the_model(model, exc, match):
    with pytest.raises(exc, match=match):
        validate_model(model)
    # ... and every method reports it the same way, before any work.
    for method in method_names()[:4]:
        with pytest.raises(exc, match=match):
            infer_design(model, Box([0.0, 0.0], [1.0, 1.0]), method)


TINY = {
    "sga": dict(num_z=100, epochs=2, restarts=2, o2_eval_samples=50, num_target_samples=20),
    "svi": dict(num_steps=10, num_samples=20, num_pseudo_data=3),
    "nuts": dict(num_samples=10, warmup_steps=10, num_chains=1, num_pseudo_data=3),
    "flow": dict(
        num_steps=5, num_samples=20, hidden_features=(8,), transforms=1, num_pseudo_data=3
    ),
}
TARGETS = {
    "box": Box([0.4, -0.6], [0.8, -0.2]),
    "value": TargetValue([0.6, -0.4], tau=2.0),
    "density": TargetDensity.normal([0.6, -0.4], 0.5 * torch.eye(2)),
}


@pytest.mark.parametrize("method", ["sga", "svi", "nuts", "flow"])
@pytest.mark.parametrize("kind", ["box", "value", "density"])
def test_each_target_kind_through_each_method(method, kind):
    target = TARGETS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)  # tiny runs: k-hat etc. are not the point
        res = infer_design(
            Batched(), target, method, seed=1, num_eval_samples=200, **TINY[method]
        )
    assert res.objective_name == target.objective_name and res.method == method
    assert res.phi_star.shape == (2,) and bool((res.phi_star.abs() <= 3.0).all())
    assert np.isfinite(res.objective) and res.objective_se >= 0
    if kind == "density":
        assert res.target.direction == "minimize"
        with pytest.raises(AttributeError, match="utility targets"):
            _ = res.probability
    else:
        assert 0.0 <= res.probability <= 1.0
    groups = set(res.idata.groups())
    if method == "sga":
        assert "posterior" not in groups and "optimization" in groups and res.samples is None
        assert res.endpoints.shape == (2, 2)
    else:
        assert "posterior" in groups and res.samples.shape[-1] == 2
    text = res.summary()
    assert res.objective_name in text and "phi_star" in text


# --------------------------------------------------------------------------- registry
def run_toy(model, target, seed=0, progress=False, shift=0.0, calls=None):
    """Toy method: the centre of the phi box, shifted."""
    if calls is not None:
        calls.append(seed)
    return MethodOutput(phi_star=model.bounds.mean(-1) + shift, diagnostics={"toy": 1.0})


@pytest.fixture
def toy():
    register_method("toy", run_toy)
    yield
    unregister_method("toy")


def test_registered_method_runs_through_infer_design(toy):
    assert "toy" in method_names() and method_options("toy") == {"shift": 0.0, "calls": None}
    calls = []
    res = infer_design(Batched(), TARGETS["box"], "toy", seed=3, shift=0.5, calls=calls,
                       num_eval_samples=500)
    assert calls == [3] and torch.allclose(res.phi_star, torch.tensor([0.5, 0.5]))
    assert res.method == "toy" and res.diagnostics["toy"] == 1.0
    assert "toy: Toy method" in describe_methods()
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['shfit'\].*shift=0.0"):
        infer_design(Batched(), TARGETS["box"], "toy", shfit=0.5)


def test_options_are_validated_before_the_work(toy):
    calls = []
    with pytest.raises(ValueError, match="num_eval_samples must be an integer >= 1, got -1"):
        infer_design(Batched(), TARGETS["box"], "toy", num_eval_samples=-1, calls=calls)
    with pytest.raises(ValueError, match="point must be one of"):
        infer_design(Batched(), TARGETS["box"], "toy", point="mode", calls=calls)
    assert calls == []
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        infer_design(Batched(), TARGETS["box"], "sga", epochs=0)
    with pytest.raises(TypeError, match="num_samples must be an integer"):
        infer_design(Batched(), TARGETS["box"], "svi", num_samples=10.0)


def test_register_method_refuses_bad_registrations(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy", run_toy)
    with pytest.raises(ValueError, match="clash"):
        register_method("bad", lambda model, target, seed=0, progress=False, point="x": None)
    with pytest.raises(ValueError, match="name must be"):
        register_method("1bad", run_toy)
    with pytest.raises(TypeError, match="needs a default"):
        register_method("bad", lambda model, target, seed=0, progress=False, *, k: None)
    register_method("broken", lambda model, target, seed=0, progress=False: {"phi": 0})
    try:
        with pytest.raises(TypeError, match="must return a psppyro.design.MethodOutput"):
            infer_design(Batched(), TARGETS["box"], "broken")
    finally:
        unregister_method("broken")
    with pytest.raises(ValueError, match="method must be one of"):
        infer_design(Batched(), TARGETS["box"], "broken")


@pytest.fixture
def tiny_pspgen(tmp_path):
    from psppyro.models import PSPGen

    torch.manual_seed(0)
    path = tmp_path / "gen.pt"
    PSPGen(2, (4, 4), 2, 3, 1).save(path)
    return path


def test_cli_lists_and_runs_a_registered_method(toy, tiny_pspgen, tmp_path, capsys):
    assert main(["design", "--method"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"sga:", "svi:", "nuts:", "flow:", "toy:"} <= set(listed)
    with pytest.raises(SystemExit) as exc:
        main(["design", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "toy: Toy method" in help_text and "shift=0.0" in help_text
    assert "num_z=50000" in help_text and "num_pseudo_data=20" in help_text
    out = tmp_path / "r.json"
    argv = ["design", "--model", str(tiny_pspgen), "--method", "toy", "--low", "-6.74", "-1",
            "--high", "1", "1", "--option", "shift=0.25", "--option", "num_eval_samples=200",
            "--seed", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    d = json.loads(out.read_text())
    assert d["method"] == "toy" and d["seed"] == 4
    assert d["phi_star"] == {"phi_0": 0.75, "phi_1": 0.75}  # unit box centre + 0.25
    assert d["target"]["low"] == [-6.74, -1.0]  # the user's numbers, not float32 noise
    assert "-6.739999" not in out.read_text()
    assert main(["design", "--model", str(tiny_pspgen), "--method", "tyo", "--low", "0", "0",
                 "--high", "1", "1"]) == 2
    err = capsys.readouterr().err
    assert "--method must be one of sga, svi, nuts, flow, " in err and ", toy; got 'tyo'" in err


class NoLatent:
    """latent_dim = 0: the model may ignore its empty z (batch shape from φ only)."""

    phi_bounds = torch.tensor([[-3.0, 3.0]])
    latent_dim = 0

    def property_dist(self, phi, z):
        return Independent(Normal(phi, 0.5), 1)


def test_model_without_latent_is_expanded_over_z():
    from psppyro.design import estimate_objective

    cm = validate_model(NoLatent())
    assert cm.property_dist(torch.zeros(4, 1, 1), torch.zeros(1, 7, 0)).batch_shape == (4, 7)
    # Exact: P(0 < N(0.5, 0.5²) < 1) = Φ(1) − Φ(−1), whatever the chunking of the z draws.
    p, se = estimate_objective(NoLatent(), Box([0.0], [1.0]), torch.tensor([0.5]), 3000,
                               batch_size=1000)
    assert abs(float(p) - 0.682689492) < 1e-5 and float(se) < 1e-6
