"""ProbabilisticCNN (Rixner surrogate) and the SurrogateChain: training, calibration, protocol."""

import pytest
import torch

from psppyro.design.protocol import validate_model
from psppyro.models import ProbabilisticCNN, SurrogateChain
from psppyro.process import preset


def _toy(n, seed):
    """16^2 Bernoulli images with per-image density p ~ U(0.2, 0.8); κ = 10·(fraction of ones)
    + N(0, σ(p)²) with σ growing with p (heteroscedastic): known mean and variance per image."""
    g = torch.Generator().manual_seed(seed)
    p = 0.2 + 0.6 * torch.rand(n, 1, 1, generator=g)
    x = (torch.rand(n, 16, 16, generator=g) < p).float()
    frac = x.mean((-2, -1))
    sd = 0.1 + 0.4 * frac
    m = 10.0 * frac + sd * torch.randn(n, generator=g)
    return x, m[:, None], (10.0 * frac)[:, None], sd[:, None]


def test_surrogate_trains_and_is_calibrated_on_a_toy_property():
    torch.manual_seed(0)
    x, m, _, _ = _toy(768, seed=0)
    cnn = ProbabilisticCNN((16, 16), 1, seed=0)
    hist = cnn.fit(x, m, epochs=80, lr=1e-2, patience=20, seed=0)
    assert hist["val_nll"][hist["best_epoch"]] < hist["val_nll"][0]
    xt, mt, mean_true, sd_true = _toy(2000, seed=1)
    with torch.no_grad():
        mean, var = cnn.predict(xt)
    # the mean is learned well below the noise level (noise sd 0.18 ... 0.42)
    assert float((mean - mean_true).pow(2).mean().sqrt()) < 0.12
    # calibration: standardized residuals have unit spread, 90 % intervals cover ≈ 90 %;
    # with n = 2000 the coverage s.e. is 0.7 %, the allowance covers the learned sd's error
    zs = ((mt - mean) / var.sqrt()).squeeze(-1)
    assert 0.85 < float(zs.std()) < 1.15
    cover = float((zs.abs() < 1.645).float().mean())
    assert 0.85 < cover < 0.95
    # heteroscedastic: the predicted sd grows with the true one
    corr = torch.corrcoef(torch.stack([var.sqrt().squeeze(-1), sd_true.squeeze(-1)]))[0, 1]
    assert float(corr) > 0.5


def test_save_load_round_trip(tmp_path):
    x, m, _, _ = _toy(64, seed=2)
    cnn = ProbabilisticCNN((16, 16), 1, seed=3)
    cnn.fit(x, m, epochs=2, seed=0)
    cnn.save(tmp_path / "cnn.pt")
    back = ProbabilisticCNN.load(tmp_path / "cnn.pt")
    with torch.no_grad():
        a, b = cnn.predict(x[:5]), back.predict(x[:5])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(ValueError, match="not a ProbabilisticCNN file"):
        ProbabilisticCNN.load(tmp_path / "junk.pt")


def test_same_seed_same_model():
    x, m, _, _ = _toy(64, seed=4)
    preds = []
    for _ in range(2):
        cnn = ProbabilisticCNN((16, 16), 1, seed=5)
        cnn.fit(x, m, epochs=3, seed=1)
        with torch.no_grad():
            preds.append(cnn.predict(x[:4])[0])
    assert torch.equal(preds[0], preds[1])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(channels\\) = 16"):
        ProbabilisticCNN((20, 16), 1)
    cnn = ProbabilisticCNN((16, 16), 2)
    with pytest.raises(ValueError, match="x must have shape"):
        cnn.predict(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="m must have shape \\(4, 2\\)"):
        cnn.fit(torch.zeros(4, 16, 16), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="m must be finite"):
        cnn.fit(torch.zeros(4, 16, 16), torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="dropout"):
        ProbabilisticCNN((16, 16), 1, dropout=1.0)
    with pytest.raises(TypeError, match="property_dist"):
        SurrogateChain(preset("rixner64", shape=(16, 16)), object())
    with pytest.raises(ValueError, match="phase field"):
        SurrogateChain(preset("pspgen36"), cnn)


def test_surrogate_chain_satisfies_the_design_protocol():
    proc = preset("rixner64", shape=(16, 16))
    chain = SurrogateChain(proc, ProbabilisticCNN((16, 16), 2, seed=0))
    cm = validate_model(chain)              # batched probe, gradient reaches phi
    assert (cm.d_phi, cm.latent_dim, cm.d_m, cm.diag_normal) == (100, 256, 2, True)
    # the hard structures are the process's own samples for the same white noise
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 256, generator=g)
    phi = torch.randn(100, generator=g)
    x = chain.structures(phi, z, hard=True)
    ref = proc.sample(phi, num_samples=3, seed=0)   # draws the same 3 x 256 normals first
    assert torch.equal(x, ref) and bool((x.sum((-2, -1)) == 128).all())
    # the relaxed structures are differentiable in z as well
    zz = z.clone().requires_grad_(True)
    chain.property_dist(phi, zz).mean.sum().backward()
    assert zz.grad is not None and bool((zz.grad != 0).any())
    with pytest.raises(ValueError, match="z must be a tensor of shape"):
        chain.structures(phi, torch.zeros(3, 100))


def test_other_design_methods_run_on_the_chain():
    """sga (and vbem) run on the 16² chain through infer_design; see the module's dimension
    limits for svi/flow/nuts at 64²."""
    from psppyro.design import Box, infer_design

    chain = SurrogateChain(preset("rixner64", shape=(16, 16)), ProbabilisticCNN((16, 16), 2))
    box = Box([-0.5, -0.5], [0.5, 0.5])
    res = infer_design(chain, box, "sga", num_z=32, batch_size=16, epochs=1, restarts=1,
                       num_eval_samples=32)
    assert res.phi_star.shape == (100,) and 0.0 <= res.objective <= 1.0
    res = infer_design(chain, box, "vbem", max_iter=2, e_steps=1, num_particles=1, rank=4,
                       num_eval_samples=32)
    assert res.phi_star.shape == (100,) and len(res.history["elbo"]) == 2
