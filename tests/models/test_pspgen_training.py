"""PSP-GEN training: fast loss == Trace_ELBO, percolation head, model selection, knobs, I/O."""

import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from psppyro.distributions import PercolatedNormal
from psppyro.models import PSPGen
from psppyro.models.pspgen_training import _Pairs, _validate, elbo_loss
from tests.models.synthetic import PHI_BOUNDS, make_triads

SMALL = dict(width=32, small_width=16)


def _blocked_triads(n, seed=0, p_block=0.3):
    """Toy with a known blocking probability: m0 blocked (floor −20) w.p. p_block, independent of
    φ and x; else m0 ~ N(−5 + 0.5 φ1, 0.2²). m1 = volume fraction (never blocked)."""
    phi, x, m = make_triads(n, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    blocked = torch.rand(n, generator=g) < p_block
    m0 = -5.0 + 0.5 * phi[:, 1] + 0.2 * torch.randn(n, generator=g)
    m = torch.stack([torch.where(blocked, torch.full_like(m0, -20.0), m0), m[:, 0]], -1)
    return phi, x, m, blocked


def _gen(**kw):
    return PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2, phi_bounds=PHI_BOUNDS, **{**SMALL, **kw})


# --------------------------------------------------------------------------- fast loss
@pytest.mark.parametrize("percolation", [False, True])
def test_fast_loss_equals_trace_elbo(percolation):
    gen = _gen(percolation=percolation).double()
    phi, x, m, _ = _blocked_triads(8)
    phi, x, m = phi.double(), x.double(), m.double()
    if percolation:
        gen.blocked_mask.copy_(torch.tensor([True, False]))
        assert gen.has_percolation_head
    mask = torch.tensor([True, True, False, True, False, True, True, False])
    weight = torch.linspace(0.5, 1.5, 8, dtype=torch.float64)
    captured = {}

    def guide(*args):
        captured["z0"] = gen.guide(*args)
        return captured["z0"]

    none = torch.zeros(8, dtype=torch.bool)  # all rows unlabelled: the m site masked out
    for args in ((phi, x, m, mask, weight), (phi, x, m, None, None), (phi, x, m, none, weight)):
        pyro.set_rng_seed(3)
        want = Trace_ELBO().loss(gen.model, guide, *args)
        got, terms = elbo_loss(gen, *args, z0=captured["z0"], analytic_kl=False)
        assert float(got.detach()) == pytest.approx(want, rel=1e-5, abs=1e-8)
        total = terms["rec_x"] + terms["rec_m"] + gen.beta * terms["kl"]
        torch.testing.assert_close(total, got)
    # The closed-form KL is the expectation of the single-sample estimate.
    m_checked = gen._check_batch(phi, x, m, None, None)[2]  # blocked entries as -inf
    loc, scale = gen._encode_rows(gen._normalize_phi(phi), x, m_checked, None)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale),
                                           torch.distributions.Normal(0.0, 1.0)).sum(-1)
    z = loc + scale * torch.randn(20000, *loc.shape, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(0))
    est = (torch.distributions.Normal(loc, scale).log_prob(z)
           - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1)
    se = est.std(0) / math.sqrt(z.shape[0])
    assert ((est.mean(0) - kl).abs() < 4 * se).all()
    _, t_closed = elbo_loss(gen, phi, x, m, z0=loc)
    torch.testing.assert_close(t_closed["kl"], kl.sum())


# --------------------------------------------------------------------------- percolation head
def test_percolation_head_recovers_the_blocking_probability():
    p_block, n = 0.3, 400
    phi, x, m, blocked = _blocked_triads(n, seed=1, p_block=p_block)
    gen = _gen(percolation=None)
    gen.fit((phi, x, m), epochs=12, batch_size=100, lr=2e-2, progress=False, seed=0)
    assert gen.has_percolation_head and gen.blocked_mask.tolist() == [True, False]
    # Standardization from the percolating entries only (not pulled towards the −20 floor).
    keep = ~blocked
    assert float(gen.m_mean[0]) == pytest.approx(float(m[keep, 0].mean()), abs=1e-4)
    phi_t = make_triads(50, seed=9)[0]
    z = torch.randn(400, 1, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d = gen.property_dist(phi_t, z)
    assert isinstance(d, PercolatedNormal)
    q = float(d.blocking_probs[..., 0].mean())
    # The head reaches the maximum-likelihood value (the training set's blocking rate, 0.3075
    # here) and so recovers the true 0.3 within 3 SE = 3 sqrt(p(1-p)/n) = 0.069.
    assert abs(q - float(blocked.double().mean())) < 0.02, q
    se = math.sqrt(p_block * (1 - p_block) / n)
    assert abs(q - p_block) < 3 * se, q
    assert float(d.blocking_probs[..., 1].max()) == 0.0  # the volume fraction never blocks
    s = gen.predict_properties(phi_t[:2], num_samples=2000, seed=0)
    assert abs(float(torch.isneginf(s[..., 0]).double().mean()) - q) < 0.05
    assert not bool(torch.isneginf(s[..., 1]).any())


def test_percolation_decided_by_from_dataset_and_saved(tmp_path):
    import numpy as np
    import xarray as xr

    phi, x, m, _ = _blocked_triads(40)
    ds = xr.Dataset({"phi": (("sample", "phi_dim"), phi.double().numpy()),
                     "x": (("sample", "y", "x"), x.numpy().astype(np.uint8)),
                     "m": (("sample", "m_dim"), m.double().numpy())})
    gen = PSPGen.from_dataset(ds, d_z1=2, **SMALL)
    assert gen.percolation is True
    no_blocks = ds.assign(m=ds["m"].clip(min=-10.0))
    assert PSPGen.from_dataset(no_blocks, d_z1=2, **SMALL).percolation is False
    hist = gen.fit(ds, val=ds, epochs=2, batch_size=20, progress=False)
    assert all(math.isfinite(v) for v in hist["val_m_loglik"])
    path = tmp_path / "p.pt"
    gen.save(path)
    back = PSPGen.load(path)
    assert back.config() == gen.config() and back.blocked_mask.tolist() == [True, False]
    z = torch.randn(6, 3)
    a, b = back.property_dist(phi[:6], z), gen.property_dist(phi[:6], z)
    torch.testing.assert_close(a.percolation_probs, b.percolation_probs)
    torch.testing.assert_close(a.loc, b.loc)
    assert torch.equal(back.predict_properties(phi[:3], 5, seed=1),
                       gen.predict_properties(phi[:3], 5, seed=1))


def test_a_model_file_of_the_previous_version_loads(tmp_path):
    # The previous code wrote no "dropout"/"percolation" keys and had no percolation head.
    gen = _gen(percolation=False)
    config = gen.config()
    del config["dropout"], config["percolation"]
    state = {k: v.detach().cpu() for k, v in gen.state_dict().items()}
    torch.save({"config": json.dumps(config), "version": "0.1.0", "state_dict": state},
               tmp_path / "old.pt")
    back = PSPGen.load(tmp_path / "old.pt")
    assert back.percolation is False and not back.has_percolation_head
    phi = make_triads(4)[0]
    torch.testing.assert_close(back.property_dist(phi, torch.zeros(4, 3)).mean,
                               gen.property_dist(phi, torch.zeros(4, 3)).mean)


# --------------------------------------------------------------------------- model selection
def test_model_selection_picks_the_best_property_likelihood():
    # Tiny data, big net, many epochs: the model overfits; the weights kept are those of the
    # epoch with the best validation property log-likelihood, not the last or the best ELBO.
    phi, x, m = make_triads(16, seed=0)
    val = make_triads(32, seed=4)
    gen = _gen(width=64, small_width=32)
    hist = gen.fit((phi, x, m), val=val, epochs=25, batch_size=8, lr=1e-2, patience=100,
                   progress=False, seed=0)
    for key in ("train_loss", "val_loss", "val_x", "val_m_loglik", "val_calibration",
                "epoch_time"):
        assert len(hist[key]) == 25, key
    ll = hist["val_m_loglik"]
    best = max(range(len(ll)), key=ll.__getitem__)
    assert hist["best_epoch"] == best
    pairs = _Pairs("val", val, True)
    pairs.prepare(gen)
    again = _validate(gen, pairs, 50, __import__("psppyro")._random.derive_seed(0, 1), 64)
    assert again["val_m_loglik"] == pytest.approx(ll[best], rel=1e-5)
    assert all(0.0 <= c <= 0.5 for c in hist["val_calibration"])
    # It overfits: the best property epoch is not the last one.
    assert best < len(ll) - 1, ll


def test_weight_decay_dropout_and_paper_architecture():
    phi, x, m = make_triads(32)
    gen = PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2, phi_bounds=PHI_BOUNDS, architecture="paper",
                 dropout=0.2)
    assert not gen.training  # eval mode outside fit: dropout off for design
    d1 = gen.property_dist(phi[:2], torch.zeros(2, 3)).mean
    assert torch.equal(d1, gen.property_dist(phi[:2], torch.zeros(2, 3)).mean)
    assert [layer.out_features for layer in gen.decoder_x.hidden] == [512, 128]
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    hist = gen.fit((phi, x, m), epochs=2, batch_size=16, weight_decay=0.1, progress=False)
    assert not gen.training and math.isfinite(hist["train_loss"][-1])
    assert any(not torch.equal(before[k], v) for k, v in gen.state_dict().items())
    with pytest.raises(ValueError, match="weight_decay"):
        gen.fit((phi, x, m), epochs=1, weight_decay=-1.0, progress=False)
    with pytest.raises(ValueError, match="select"):
        gen.fit((phi, x, m), epochs=1, select="loss", progress=False)
    with pytest.raises(ValueError, match="dropout"):
        _gen(dropout=1.0)
    with pytest.raises(TypeError, match="percolation"):
        _gen(percolation="yes")


def test_guide_x_fraction_sets_the_rows_of_the_m_hidden_copies():
    phi, x, m = make_triads(40)
    gen = _gen()
    rows = []
    hook = gen.enc_u_x.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    gen.fit((phi, x, m), epochs=1, batch_size=20, guide_x_fraction=0.2, progress=False)
    assert rows == [4, 4]  # ceil(0.2 · 20) copies per step, two steps, no validation
    rows.clear()
    gen.fit((phi, x, m), epochs=1, batch_size=20, guide_x_fraction=1.0, progress=False)
    assert rows == [20, 20]
    hook.remove()
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="guide_x_fraction"):
            gen.fit((phi, x, m), epochs=1, guide_x_fraction=bad, progress=False)


@pytest.mark.parametrize("percolation", [False, True])
def test_prior_m_weight_trains_the_design_density(percolation):
    """λ > 0 adds −λ log p(m | φ) (z0 from the prior): it raises the validation log p(m | φ)
    that design uses, against the β-ELBO alone from the same seed."""
    phi, x, m, _ = _blocked_triads(200, seed=3)
    val = tuple(t[160:] for t in (phi, x, m))
    train = tuple(t[:160] for t in (phi, x, m))
    scores = {}
    for lam in (0.0, 20.0):
        gen = _gen(percolation=percolation)
        if percolation:
            gen.blocked_mask.copy_(torch.tensor([True, False]))
        hist = gen.fit(train, val=val, epochs=6, batch_size=20, prior_m_weight=lam,
                       select="elbo", seed=0, progress=False)
        scores[lam] = hist["val_m_loglik"][-1]
    assert scores[20.0] > scores[0.0] + 0.03  # measured: +0.29 / +0.08 nats
    with pytest.raises(ValueError, match="prior_m_weight"):
        _gen().fit(train, epochs=1, prior_m_weight=-1.0, progress=False)
    with pytest.raises(ValueError, match="prior_m_samples"):
        _gen().fit(train, epochs=1, prior_m_weight=1.0, prior_m_samples=0, progress=False)
