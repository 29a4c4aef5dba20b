"""GANMDN and MDN: loss reduction on toy data, shapes, inverse, baseline, bad input, tiny case."""

import pytest
import torch

from psppyro.models import GANMDN, MDN


def _toy_images(n, seed=0):
    """16x16 binary stripes of random width (a toy microstructure family)."""
    w = torch.randint(3, 13, (n,), generator=torch.Generator().manual_seed(seed))
    return (torch.arange(16) < w[:, None]).float()[:, None, :].expand(n, 16, 16).contiguous()


def test_discriminator_and_generator_steps_reduce_their_losses():
    gm = GANMDN((16, 16), latent_dim=2, components=3, channels=(16, 8, 4), seed=0)
    x = _toy_images(32)
    before = gm.discriminator_step(x, seed=1, update=False)
    for _ in range(8):
        gm.discriminator_step(x, seed=1)
    assert gm.discriminator_step(x, seed=1, update=False) < before
    before = gm.generator_step(32, seed=2, update=False)
    for _ in range(8):
        gm.generator_step(32, seed=2)
    assert gm.generator_step(32, seed=2, update=False) < before


def test_instance_noise_blurs_what_the_discriminator_sees():
    """A discriminator trained to separate real from fake without noise is confident; the same
    weights judge noisy real and fake images as less separable (higher L_D). fit_gan anneals it."""
    gm = GANMDN((16, 16), latent_dim=2, components=3, channels=(16, 8, 4), seed=0)
    x = _toy_images(32)
    for _ in range(20):
        gm.discriminator_step(x, seed=1)
    clean = gm.discriminator_step(x, seed=1, update=False)
    assert gm.discriminator_step(x, seed=1, update=False, noise=2.0) > clean
    hist = gm.fit_gan(x, epochs=2, batch_size=16, seed=0, instance_noise=0.5)
    assert len(hist["d_loss"]) == 2
    with pytest.raises(ValueError, match="instance_noise"):
        gm.fit_gan(x, epochs=1, instance_noise=-1.0)


def test_mdn_fit_reduces_nll_and_weights_sum_to_one():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(384, 1, generator=g)
    sign = torch.where(torch.rand(384, 1, generator=g) < 0.5, -1.0, 1.0)
    z = torch.cat([sign * y, y], 1) + 0.05 * torch.randn(384, 2, generator=g)  # bimodal given y
    gm = GANMDN((16, 16), latent_dim=2, components=4, channels=(8, 4, 2), seed=0)
    hist = gm.fit_mdn(z, y, epochs=25, batch_size=128, lr=1e-2, patience=25, seed=0)
    assert min(hist["validation"]) < hist["validation"][0] - 1.0
    log_pi, loc, scale = gm.mdn((y[:5] - gm.y_mean) / gm.y_std)
    torch.testing.assert_close(log_pi.exp().sum(-1), torch.ones(5))
    assert bool((scale > 0).all())
    zs = gm.sample_latents([0.8], num_samples=200, seed=1)[0]
    # both modes of z_0 = ±y are found, z_1 ≈ y
    assert float((zs[:, 0] > 0.4).float().mean()) > 0.2
    assert float((zs[:, 0] < -0.4).float().mean()) > 0.2
    assert abs(float(zs[:, 1].median()) - 0.8) < 0.15


def test_inverse_binary_shape_and_latent_optimization():
    gm = GANMDN((16, 16), latent_dim=2, components=3, channels=(16, 8, 4), seed=0)
    gm.fit_gan(_toy_images(64), epochs=2, batch_size=16, seed=0)
    imgs = gm.inverse([0.3, 0.6], num_samples=5, seed=0)
    assert imgs.shape == (2, 5, 16, 16)
    assert set(imgs.unique().tolist()) <= {0.0, 1.0}

    def vf(x):
        return x.flatten(1).mean(1, keepdim=True) + 0.1

    z, y = gm.label_latents(40, vf, seed=0, batch_size=16)
    assert z.shape == (40, 2) and y.shape == (40, 1)
    res = gm.latent_optimization([0.5], vf, n_init=4, iterations=5, offspring=3, seed=0)
    assert res["simulations"] == 4 + 5 * 3 and res["image"].shape == (16, 16)
    assert all(a >= b for a, b in zip(res["history"], res["history"][1:]))
    assert abs(res["rep"] - float(100 * abs(vf(res["image"][None])[0, 0] - 0.5) / 0.5)) < 1e-3


def test_bad_input_refused():
    with pytest.raises(ValueError, match="shape"):
        GANMDN((18, 18))
    with pytest.raises(ValueError, match="shape"):
        GANMDN((16, 32))
    with pytest.raises(ValueError, match="components"):
        MDN(1, 2, components=0)
    gm = GANMDN((16, 16), latent_dim=2, components=2, channels=(8, 4, 2), seed=0)
    with pytest.raises(ValueError, match="binary"):
        gm.fit_gan(torch.full((4, 16, 16), 0.5), epochs=1)
    with pytest.raises(ValueError, match="x must have shape"):
        gm.fit_gan(torch.zeros(4, 8, 8), epochs=1)
    with pytest.raises(ValueError, match="y must have shape"):
        gm.inverse(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        gm.inverse([float("inf")])
    with pytest.raises(ValueError, match="z must have shape"):
        gm.generate(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="property_fn must return"):
        gm.label_latents(4, lambda x: torch.zeros(len(x), 3))


def test_case_harness_tiny(tmp_path):
    from psppyro.cases import get_case, inversion

    assert get_case("gan-mdn") is inversion.run
    proto = inversion.protocol("gan-mdn", 0.001)
    proto.update(gan_images=16, labelled=32, mdn_epochs=2, samples=3, in_range=2, outside=1,
                 opt_init=2, opt_iterations=1, opt_offspring=2, components=3)
    res = inversion.run_protocol(proto, tmp_path, seed=0, progress=False)
    rows = res["targets"]
    assert len(rows) == 3 and [r["in_range"] for r in rows] == [True, True, False]
    assert all(0 <= r["rep_min"] <= r["rep_mean"] for r in rows)
    assert all(r["opt_simulations"] == 2 + 2 for r in rows)
    assert "min REP" in (tmp_path / "results.md").read_text()
