"""Active learning: the acquisition function, the selection, resume after interruption, input."""

import json

import pytest
import torch
from torch.distributions import Independent, Normal

from psppyro._doctest_fixtures import white_fraction
from psppyro.design import Box, TargetDensity, TargetValue
from psppyro.design.active_learning import acquisition_scores, active_learning
from psppyro.models import ProbabilisticCNN, SurrogateChain
from psppyro.process import preset

AL = __import__("sys").modules["psppyro.design.active_learning"]  # the module, not the function


def test_box_acquisition_is_the_variance_of_the_indicator():
    loc = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.2], [3.0, 3.0]])
    scale = torch.tensor([[0.3, 0.3], [0.5, 0.1], [0.2, 0.2], [0.1, 0.1]])
    d = Independent(Normal(loc, scale), 1)
    box = Box([0.0, -0.5], [1.0, 0.5])
    a = acquisition_scores(d, box)
    # Monte Carlo check of Var[1_K(kappa)] = P(1 - P): s.e. of the mean of 40 000 indicators
    m = d.sample((40000,))
    p = box.contains(m).double().mean(0)
    assert torch.allclose(a.double(), p * (1 - p), atol=0.01)
    assert float(a[3]) < 1e-6                                 # certainly outside: no variance


def test_target_value_and_density_acquisitions():
    d = Independent(Normal(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.5], [0.2],
                                                                               [0.3]])), 1)
    tv = TargetValue([1.0], tau=1.5)
    a = acquisition_scores(d, tv)
    u = tv.utility(d.sample((100000,))).double()
    assert torch.allclose(a.double(), u.var(0), atol=3e-3)
    td = TargetDensity.normal([1.0], [[0.1]])
    draws = td.sample(5, seed=0)
    s = acquisition_scores(d, td, draws)
    assert torch.allclose(s, d.log_prob(draws[:, None, :]).mean(0))
    with pytest.raises(ValueError, match="draws"):
        acquisition_scores(d, td)


def _chain():
    return SurrogateChain(preset("rixner64", shape=(16, 16)), ProbabilisticCNN((16, 16), 1))


SMALL = dict(n_initial=24, n_pool=16, n_add=4, num_eval_samples=6,
             fit_options={"epochs": 2},
             vbem_options={"max_iter": 2, "e_steps": 1, "num_particles": 1, "rank": 2})


def test_selection_takes_the_highest_scores(monkeypatch):
    chosen = {}
    real = AL.acquisition_scores

    def spy(d, target, draws=None):
        s = real(d, target, draws)
        chosen.setdefault("scores", []).append(s)
        return s

    sims = []
    real_sim = AL._simulate

    def spy_sim(prop, x, chunk=64, bar=None):
        sims.append(x.clone())
        return real_sim(prop, x, chunk, bar)

    monkeypatch.setattr(AL, "acquisition_scores", spy)
    monkeypatch.setattr(AL, "_simulate", spy_sim)
    res = active_learning(_chain(), Box([0.45], [0.55]), white_fraction, steps=1, **SMALL)
    scores = torch.cat(chosen["scores"])
    rec = res.records[0]
    top = torch.topk(scores, 4).values
    assert rec["acquisition_score_mean_selected"] == pytest.approx(float(top.mean()), rel=1e-6)
    assert rec["acquisition_score_mean_selected"] >= rec["acquisition_score_mean_pool"]
    assert len(sims) == 2 and sims[1].shape == (4, 16, 16)     # D0, then the 4 selected
    assert [r["n_data"] for r in res.records] == [24, 28]


def test_random_acquisition_and_resume_after_interruption(tmp_path, monkeypatch):
    ref = active_learning(_chain(), Box([0.45], [0.55]), white_fraction, steps=2,
                          acquisition="random", state_dir=tmp_path / "ref", **SMALL)
    assert [r["n_data"] for r in ref.records] == [24, 28, 32]
    calls = {"n": 0}
    real_sim = AL._simulate

    def failing(prop, x, chunk=64, bar=None):
        calls["n"] += 1
        if calls["n"] == 3:                       # D0, step-0 additions, then fail in step 1
            raise KeyboardInterrupt
        return real_sim(prop, x, chunk, bar)

    monkeypatch.setattr(AL, "_simulate", failing)
    with pytest.raises(KeyboardInterrupt):
        active_learning(_chain(), Box([0.45], [0.55]), white_fraction, steps=2,
                        acquisition="random", state_dir=tmp_path / "run", **SMALL)
    saved = json.loads((tmp_path / "run" / "records.json").read_text())
    assert [r["step"] for r in saved] == [0]
    monkeypatch.setattr(AL, "_simulate", real_sim)
    res = active_learning(_chain(), Box([0.45], [0.55]), white_fraction, steps=2,
                          acquisition="random", state_dir=tmp_path / "run", **SMALL)
    assert [r["phi_star"] for r in res.records] == [r["phi_star"] for r in ref.records]
    with pytest.raises(ValueError, match="other arguments"):
        active_learning(_chain(), Box([0.45], [0.55]), white_fraction, steps=3,
                        acquisition="random", state_dir=tmp_path / "run", **SMALL)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"n_add": 20}, ValueError, "n_add"),
        ({"acquisition": "ucb"}, ValueError, "acquisition"),
        ({"steps": -1}, ValueError, "steps"),
        ({"vbem_options": {"init": [0.0]}}, ValueError, "vbem_options"),
    ],
)
def test_bad_input_is_refused(kw, err, match):
    args = dict(SMALL, steps=1)
    args.update(kw)
    with pytest.raises(err, match=match):
        active_learning(_chain(), Box([0.45], [0.55]), white_fraction, **args)
    with pytest.raises(TypeError, match="chain must have"):
        active_learning(object(), Box([0.45], [0.55]), white_fraction)
