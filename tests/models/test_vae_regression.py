"""VAERegression, RegressionCNN, the style statistics and the vae-regression case at tiny scale."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from psppyro.models import RegressionCNN, VAERegression
from psppyro.models.style import (
    FeatureBank,
    gram_style_loss,
    slices,
    style_loss,
    two_point,
    two_point_style_loss,
)
from psppyro.models.vae_regression import gaussian_kl, mixture_kl_hershey_olsen


def _stripes(n, shape, seed=0):
    """Binary images with random stripe width; label = volume fraction (a toy property)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(1, shape[-1], (n,), generator=g)
    x = (torch.arange(shape[-1]) < w[:, None]).float()
    x = x.reshape(n, *([1] * (len(shape) - 1)), shape[-1]).expand(n, *shape).contiguous()
    return x, x.flatten(1).mean(1, keepdim=True) * 10 + 1


def test_hershey_olsen_equals_exact_kl_for_one_component():
    g = torch.Generator().manual_seed(0)
    q_loc, p_loc = torch.randn(5, 4, generator=g), torch.randn(5, 1, 4, generator=g)
    q_scale = torch.rand(5, 4, generator=g) + 0.2
    p_scale = torch.rand(5, 1, 4, generator=g) + 0.2
    exact = torch.distributions.kl_divergence(
        torch.distributions.Normal(q_loc, q_scale).to_event(1) if False else
        torch.distributions.Independent(torch.distributions.Normal(q_loc, q_scale), 1),
        torch.distributions.Independent(torch.distributions.Normal(p_loc[:, 0], p_scale[:, 0]), 1))
    ho = mixture_kl_hershey_olsen(q_loc, q_scale, torch.zeros(5, 1), p_loc, p_scale)
    torch.testing.assert_close(ho, exact)
    torch.testing.assert_close(gaussian_kl(q_loc, q_scale, p_loc[:, 0], p_scale[:, 0]), exact)


def test_hershey_olsen_identical_components_and_bound():
    g = torch.Generator().manual_seed(1)
    q_loc, q_scale = torch.randn(3, 2, generator=g), torch.rand(3, 2, generator=g) + 0.5
    p_loc, p_scale = torch.randn(3, 1, 2, generator=g), torch.rand(3, 1, 2, generator=g) + 0.5
    single = mixture_kl_hershey_olsen(q_loc, q_scale, torch.zeros(3, 1), p_loc, p_scale)
    log_pi = torch.log(torch.tensor([[0.3, 0.7]])).expand(3, 2)
    double = mixture_kl_hershey_olsen(q_loc, q_scale, log_pi, p_loc.expand(3, 2, 2),
                                      p_scale.expand(3, 2, 2))
    torch.testing.assert_close(double, single)
    # -log sum pi_k e^{-KL_k} <= KL to any component - log pi_k
    other = p_loc + 3.0
    mix = mixture_kl_hershey_olsen(q_loc, q_scale, log_pi, torch.cat([p_loc, other], 1),
                                   p_scale.expand(3, 2, 2))
    assert bool((mix <= single - log_pi[:, 0] + 1e-6).all())


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 8)])
@pytest.mark.parametrize("reconstruction", ["gram", "two_point", "bernoulli"])
def test_shapes_and_mixture_weights(shape, reconstruction):
    vae = VAERegression(shape, latent_dim=3, components=3, width=16,
                        reconstruction=reconstruction, seed=0)
    x, c = _stripes(4, shape)
    z_loc, z_scale, c_loc, c_scale = vae.encode(x)
    assert z_loc.shape == z_scale.shape == (4, 3) and c_loc.shape == c_scale.shape == (4, 1)
    log_pi, loc, scale = vae.prior(c_loc)
    torch.testing.assert_close(log_pi.exp().sum(-1), torch.ones(4))
    assert loc.shape == scale.shape == (4, 3, 3)
    assert vae.decode(z_loc).shape == (4, *shape)
    terms = vae.loss_terms(x, c)
    assert all(t.shape == (4,) and bool(torch.isfinite(t).all()) for t in terms.values())
    res = vae.inverse(torch.tensor([2.0, 5.0]))
    assert res.images.shape == (2, 3, *shape)
    assert set(res.images.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(res.weights.sum(-1), torch.ones(2))


def test_fit_reduces_loss_and_refinement_moves_towards_target():
    x, c = _stripes(48, (8, 8), seed=2)
    vae = VAERegression((8, 8), latent_dim=2, components=2, width=32,
                        reconstruction="bernoulli", seed=0)
    hist = vae.fit(x, c, epochs=12, batch_size=8, lr=3e-3, seed=0)
    assert hist["train"][-1] < 0.7 * hist["train"][0]
    mean, sd = vae.predict(x)
    assert float((mean - c).abs().mean()) < 0.5 * float((c - c.mean()).abs().mean())
    target = torch.tensor([[4.0]])
    one = vae.inverse(target)
    ref = vae.inverse(target, refine_steps=30, refine_lr=0.1, prior_weight=0.0)
    err = lambda r: float((r.predicted - target).abs().min())  # noqa: E731
    assert err(ref) <= err(one) + 0.05


def test_regression_cnn_learns_volume_fraction():
    x, c = _stripes(48, (8, 8), seed=3)
    reg = RegressionCNN((8, 8), width=32, seed=0)
    hist = reg.fit(x[:32], c[:32], validation=(x[32:], c[32:]), epochs=8, batch_size=16, lr=3e-3,
                   seed=0)
    assert hist["best_epoch"] is not None and min(hist["validation"]) < hist["validation"][0]
    mean, _ = reg.predict(x[32:])
    assert float((mean - c[32:]).abs().mean()) < 0.5 * float((c[32:] - c[32:].mean()).abs().mean())


@pytest.mark.parametrize("reconstruction", ["bernoulli", "gram"])
def test_pyro_model_guide_trace_elbo(reconstruction):
    pyro.clear_param_store()
    x, c = _stripes(6, (8, 8))
    vae = VAERegression((8, 8), latent_dim=2, components=2, width=16,
                        reconstruction=reconstruction, seed=0)
    vae.set_standardization(c)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    losses = [svi.step(x, c) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert torch.isfinite(torch.tensor(svi.evaluate_loss(x)))  # c unobserved: q(c | x) in guide


def test_style_statistics():
    x = torch.zeros(2, 8, 8, 8)
    x[..., :4] = 1.0
    assert [s.shape for s in slices(x)] == [torch.Size([16, 8, 8])] * 3
    torch.testing.assert_close(two_point(x)[:, 0, 0, 0], torch.full((2,), 0.5))
    bank = FeatureBank(ndim=3, seed=0)
    assert gram_style_loss(x, x, bank).abs().max() == 0
    rotated = x.transpose(1, 3)
    assert bool((gram_style_loss(x, rotated, bank) > 0).all())
    assert bool((two_point_style_loss(x, rotated) > 0).all())
    # the Gram statistics carry the volume fraction: a uniform image differs from an empty one,
    # and a field thresholded at vf 0.3 from the same field thresholded at vf 0.7
    assert float(gram_style_loss(torch.zeros(1, 8, 8, 8), torch.ones(1, 8, 8, 8), bank)) > 0
    field = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    low, high = (field > field.quantile(0.7)).float(), (field > field.quantile(0.3)).float()
    assert float(gram_style_loss(low, high, bank)) > 0
    torch.testing.assert_close(FeatureBank(2, seed=4).weight0, FeatureBank(2, seed=4).weight0)
    assert not torch.equal(FeatureBank(2, seed=4).weight0, FeatureBank(2, seed=5).weight0)


def test_bad_input_refused():
    with pytest.raises(ValueError, match="shape"):
        VAERegression((8,))
    with pytest.raises(ValueError, match="components"):
        VAERegression((8, 8), components=0)
    with pytest.raises(ValueError, match="reconstruction"):
        VAERegression((8, 8), reconstruction="vgg19")
    with pytest.raises(ValueError, match="regression_weight"):
        VAERegression((8, 8), regression_weight=-1.0)
    vae = VAERegression((8, 8), latent_dim=2, width=8)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, 8\)"):
        vae.fit(torch.zeros(4, 9, 9), torch.zeros(4, 1), epochs=1)
    with pytest.raises(ValueError, match="c must have shape"):
        vae.fit(torch.zeros(4, 8, 8), torch.zeros(3, 1), epochs=1)
    with pytest.raises(ValueError, match="c must have shape"):
        vae.inverse(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="finite"):
        vae.inverse([float("nan")])
    with pytest.raises(ValueError, match="refine_steps"):
        vae.inverse([1.0], refine_steps=-1)
    with pytest.raises(ValueError, match="kind"):
        style_loss("vgg", torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="bank"):
        style_loss("gram", torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))


def test_case_harness_tiny(tmp_path):
    from psppyro.cases import get_case, inversion

    assert get_case("vae-regression") is inversion.run
    proto = inversion.protocol("vae-regression", 0.001)
    proto.update(grid_points=2, per_family=2, bimodal_per_family=6, width=8, latent_dim=2,
                 targets=2, refine_steps=1, resolution_volumes=0)
    res = inversion.run_protocol(proto, tmp_path, seed=0, progress=False)
    assert res["data"]["n"] == 16 and res["data"]["n_bimodal"] == 12
    assert set(res["forward"]) == {"VAE-Reg", "Reg-only"}
    runs = res["inverse"]["mixture"]["runs"]
    assert len(runs) == 1 and len(runs[0]["one_shot"]["error_percent"]) == 2
    assert len(runs[0]["one_shot"]["error_percent"][0]) == 2
    assert res["data"]["morphology_accuracy"] == 1.0
    summary = res["inverse"]["Gaussian"]["summary"]
    assert summary["one_shot_separated"] == [0.0, None]  # one component cannot be both
    assert (tmp_path / "results.md").read_text().startswith("# vae-regression")
    assert (tmp_path / "gallery_vae_regression.png").stat().st_size < 300_000
    # a second run into the same folder reuses every finished training (out/runs/*.json)
    again = inversion.run_protocol(proto, tmp_path, seed=0, progress=False)
    assert again["forward"] == res["forward"] and again["inverse"] == res["inverse"]
    assert not any(k.startswith("train") for k in again["wall_times"])
    only = dict(proto, parts=["inverse"], inverse_seeds=2)
    res2 = inversion.run_protocol(only, tmp_path / "inv", seed=0, progress=False)
    assert res2["forward"] == {} and "resolution" not in res2 and res2["data"]["n"] == 0
    assert len(res2["inverse"]["mixture"]["runs"]) == 2
    assert res2["inverse"]["mixture"]["runs"][0] == res["inverse"]["mixture"]["runs"][0]
    assert "| mixture |" in (tmp_path / "inv" / "results.md").read_text()
    with pytest.raises(ValueError, match="parts"):
        inversion.run_protocol(dict(proto, parts=["fwd"]), tmp_path / "bad", seed=0)
    with pytest.raises(ValueError, match="scale"):
        inversion.run("vae-regression", scale=2.0, out=tmp_path)
