import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

from psppyro.process import (
    GaussianFilterDensity,
    GaussianRandomField,
    PSPGen10DDensity,
    PSPGenDensity,
    SpectralMixtureDensity,
    from_config,
)
from psppyro.process.grf import hard_threshold, relaxed_threshold
from psppyro.process.spectral import wavenumbers


def _randn(shape, seed):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _reflect_index(shape):
    """Linear index of -k for every k on the FFT grid."""
    n = math.prod(shape)
    idx = torch.arange(n).reshape(shape)
    dims = tuple(range(len(shape)))
    return torch.roll(torch.flip(idx, dims), shifts=(1,) * len(shape), dims=dims).reshape(-1)


def _normalized_sdf(sdf, phi, shape):
    """S~ = n S 1[k != 0] / sum_{k != 0} S, computed independently of the process code."""
    k = wavenumbers(shape, dtype=torch.float64)
    S = sdf(phi, k).clone()
    S.reshape(-1)[0] = 0.0
    return S * (math.prod(shape) / S.sum())


def _periodogram_ratios(fields, S_tilde):
    """Mean periodogram / S~ on the significant modes, one of each conjugate pair (k, -k).

    Returns the ratios R_k and their standard errors under the Gaussian-field hypothesis.
    """
    shape = S_tilde.shape
    n, m = math.prod(shape), fields.shape[0]
    dims = tuple(range(-len(shape), 0))
    P = (torch.fft.fftn(fields, dim=dims).abs() ** 2 / n).mean(0).reshape(-1)
    S = S_tilde.reshape(-1)
    lin = torch.arange(n)
    neg = _reflect_index(shape)
    keep = (lin <= neg) & (S > 1e-8 * S.max())
    self_conj = lin == neg
    R = P[keep] / S[keep]
    # |X_k|^2 / S~_k is Exp(1) for k != -k (two independent N(0, 1/2) parts) and chi^2_1 for
    # self-conjugate k (a real N(0, 1) squared): variance 1 or 2, divided by the m fields averaged.
    se = torch.where(self_conj[keep], math.sqrt(2.0 / m), math.sqrt(1.0 / m))
    return R, se, S[keep] / n


@pytest.mark.parametrize(
    "sdf,phi,shape",
    [
        (PSPGenDensity(), [5.0, 0.5], (36, 36)),
        (PSPGen10DDensity(), [1.0, 3.0, 5.0, 7.0, 9.0, 0.02, 0.1, 0.3, 1.0, 2.0], (36, 36)),
        (SpectralMixtureDensity(), [0.5] * 30 + [0.0] * 70, (32, 32)),
        (GaussianFilterDensity(3), [1.0, 1.5, 2.0], (12, 12, 10)),
    ],
    ids=["pspgen", "pspgen10d", "mixture", "filter3d"],
)
def test_power_spectrum_matches_sdf_chi2(sdf, phi, shape):
    """Raw filtered fields: the periodogram's expectation is exactly S~ (no normalization bias)."""
    phi, m = torch.tensor(phi, dtype=torch.float64), 256
    proc = GaussianRandomField(shape, sdf, 0.5)
    noise = _randn((m,) + shape, 3)
    g = proc.field(phi, noise, normalize=False)
    R, se, _ = _periodogram_ratios(g, _normalized_sdf(sdf, phi, shape))
    z = (R - 1.0) / se
    n_modes = z.numel()
    assert n_modes > 100
    # T = sum z^2 is approximately chi^2 with n_modes dof (mean n, variance 2n; the excess kurtosis
    # of a mean of 256 exponentials adds only 6/256 per mode); allow 5 standard deviations.
    T = float((z**2).sum())
    assert abs(T - n_modes) < 5 * math.sqrt(2 * n_modes), (T, n_modes)
    # no single mode off by more than 5.5 SE (Bonferroni over a few hundred modes, skewed Gamma)
    assert float(z.abs().max()) < 5.5
    # a wrong amplitude (S instead of sqrt(S)) is detected by the same statistic
    S_wrong = _normalized_sdf(sdf, phi, shape) ** 2
    R_w, se_w, _ = _periodogram_ratios(g, S_wrong * (math.prod(shape) / S_wrong.sum()))
    assert float((((R_w - 1) / se_w) ** 2).sum()) > 10 * n_modes


def test_power_spectrum_of_normalized_fields_in_bands():
    """Standardized fields: band-averaged periodogram matches S~ within SE plus normalization bias.

    Dividing by each field's own standard deviation biases E[P_k] by a relative amount bounded
    (delta method for A_k / sum_j A_j with independent exponential/chi^2 parts) by
    2 sum_j w_j^2 + 2 max_j w_j, with w_j = S~_j / n the share of mode j in the total power.
    """
    sdf = SpectralMixtureDensity()
    phi = torch.linspace(-2.0, 2.0, 100, dtype=torch.float64)
    shape, m = (32, 32), 256
    proc = GaussianRandomField(shape, sdf, 0.5)
    noise = _randn((m,) + shape, 4)
    g = proc.field(phi, noise)
    R, se, w = _periodogram_ratios(g, _normalized_sdf(sdf, phi, shape))
    bias = 2 * float((w**2).sum()) * 2 + 2 * float(w.max())  # pairs count twice in sum_j w_j^2
    order = torch.argsort(w, descending=True)
    for band in order.chunk(6):
        mean_ratio = float(R[band].mean())
        band_se = float(se[band].pow(2).sum().sqrt()) / band.numel()
        assert abs(mean_ratio - 1.0) < 5 * band_se + bias, (mean_ratio, band_se, bias)


@pytest.mark.parametrize("shape", [(12, 10), (6, 7, 8)])
def test_zero_mean_unit_variance_and_exact_periodicity(shape):
    sdf = PSPGenDensity() if len(shape) == 2 else GaussianFilterDensity(3)
    phi = torch.tensor([2.0, 1.0] if len(shape) == 2 else [1.0, 2.0, 1.5], dtype=torch.float64)
    proc = GaussianRandomField(shape, sdf, 0.4)
    noise = _randn((5,) + shape, 0)
    dims = tuple(range(-len(shape), 0))
    g = proc.field(phi, noise)
    zeros = torch.zeros(5, dtype=torch.float64)
    torch.testing.assert_close(g.mean(dims), zeros, atol=1e-12, rtol=0)
    torch.testing.assert_close(g.var(dims, unbiased=False), torch.ones(5, dtype=torch.float64))
    shift = tuple(range(1, len(shape) + 1))
    g_shifted = proc.field(phi, torch.roll(noise, shift, dims))
    torch.testing.assert_close(g_shifted, torch.roll(g, shift, dims), rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise_kind", ["normal", "uniform"])
def test_field_equals_direct_circular_convolution(noise_kind):
    """Second discretization: explicit circular convolution with the sampled Gaussian kernel."""
    shape, sigma = (6, 7, 8), (1.0, 2.0, 1.5)
    proc = GaussianRandomField(shape, GaussianFilterDensity(3), 0.5, noise=noise_kind)
    z = _randn(shape, 5)
    u = z if noise_kind == "normal" else math.sqrt(3.0) * torch.erf(z / math.sqrt(2.0))
    kernel = torch.ones(shape, dtype=torch.float64)
    for i, (n, s) in enumerate(zip(shape, sigma)):
        j = torch.arange(n, dtype=torch.float64)
        g1 = sum(torch.exp(-((j + q * n) ** 2) / (2 * s**2)) for q in range(-10, 11))
        view = [1] * 3
        view[i] = n
        kernel = kernel * g1.reshape(view)
    conv = torch.zeros(shape, dtype=torch.float64)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape]).tolist():
        conv += u[tuple(idx)] * torch.roll(kernel, tuple(idx), (0, 1, 2))
    conv = (conv - conv.mean()) / conv.std(unbiased=False)
    torch.testing.assert_close(proc.field(torch.tensor(sigma, dtype=torch.float64), z), conv)


@pytest.mark.parametrize("vf", [0.3, 0.5, 2 / 3])
def test_hard_threshold_exact_volume_fraction(vf):
    proc = GaussianRandomField((36, 36), PSPGenDensity(), vf)
    x = proc.sample(torch.tensor([[1.0, 2.0], [5.0, 0.2]]), num_samples=7, seed=2)
    assert x.dtype == torch.float32 and x.shape == (2, 7, 36, 36)
    assert ((x == 0) | (x == 1)).all()
    assert (x.sum((-2, -1)) == round(vf * 36 * 36)).all()
    # phase 1 is the high side of the field
    g = proc.field(torch.tensor([5.0, 0.2]), torch.randn(36, 36))
    xb = hard_threshold(g, vf, ndim=2)
    assert g[xb == 1].min() >= g[xb == 0].max()


def test_relaxed_threshold_mean_within_1e_2():
    proc = GaussianRandomField((36, 36), PSPGenDensity(), 2 / 3, threshold="relaxed", eps=25.0)
    x = proc.sample(torch.tensor([5.0, 1.0]), num_samples=256, seed=7)
    # in (0, 1) mathematically; float32 tanh saturates to exactly 0 or 1 far from the level
    assert ((x >= 0) & (x <= 1)).all() and ((x > 0.01) & (x < 0.99)).float().mean() > 0.01
    per_sample = x.mean((-2, -1)).double()
    se = float(per_sample.std() / math.sqrt(per_sample.numel()))
    # the per-sample fraction fluctuates (correlated field); with 256 samples the SE is small
    # enough that a 1e-2 error in the threshold level would show at > 4 SE
    assert se < 2.5e-3
    assert abs(float(per_sample.mean()) - 2 / 3) < 1e-2
    # the threshold level itself: x0 = Phi^{-1}(1 - vf) gives x = 1/2 exactly at x0
    x0 = math.sqrt(2) * float(torch.erfinv(torch.tensor(1 - 2 * (2 / 3), dtype=torch.float64)))
    at_level = relaxed_threshold(torch.tensor(x0, dtype=torch.float64), 2 / 3)
    assert float(at_level) == pytest.approx(0.5)


def test_seeds_batching_and_global_rng():
    proc = GaussianRandomField((16, 16), PSPGenDensity(), 0.5)
    phi = torch.tensor([[1.0, 2.0], [9.0, 2.0], [5.0, 1.0]])
    a = proc.sample(phi, num_samples=2, seed=11)
    b = proc.sample(phi, num_samples=2, seed=11)
    c = proc.sample(phi, num_samples=2, seed=12)
    assert a.shape == (3, 2, 16, 16)
    assert torch.equal(a, b)
    assert (a != c).any(-1).any(-1).all()  # every image differs
    assert (a[:, 0] != a[:, 1]).any()
    torch.manual_seed(5)
    d = proc.sample(phi, seed=None)
    torch.manual_seed(5)
    e = proc.sample(phi, seed=None)
    assert torch.equal(d, e) and d.shape == (3, 1, 16, 16)
    gen = torch.Generator().manual_seed(11)
    assert torch.equal(proc.sample(phi, num_samples=2, seed=gen), a)


def test_phase_field_is_applied_to_hard_binary_image():
    seen = {}

    def flip(x):
        seen["x"] = x
        return 1.0 - x

    proc = GaussianRandomField((12, 12), PSPGenDensity(), 0.25, phase_field=flip)
    plain = GaussianRandomField((12, 12), PSPGenDensity(), 0.25)
    phi = torch.tensor([[3.0, 1.0], [6.0, 1.0]])
    x = proc.sample(phi, num_samples=3, seed=1)
    assert seen["x"].shape == (2, 3, 12, 12) and ((seen["x"] == 0) | (seen["x"] == 1)).all()
    assert torch.equal(x, 1.0 - plain.sample(phi, num_samples=3, seed=1))
    relaxed = proc.sample(phi[0], seed=1, threshold="relaxed")  # no phase field on relaxed
    assert relaxed.shape == (1, 12, 12)
    assert proc.config()["phase_field"]["type"] == "callable"
    with pytest.raises(ValueError, match="phase_field"):
        from_config(proc.config())


def _model_output(proc, phi, noise):
    return poutine.condition(proc.model, data={"white_noise": noise})(phi)


@pytest.mark.parametrize(
    "sdf,phi",
    [
        (PSPGenDensity(), [4.0, 0.8]),
        (SpectralMixtureDensity(9, 30.0, 8.0), [0.3, -0.2, 0.5, 1, 0, -1, 0.2, 0.7, 0]),
        (PSPGen10DDensity(), [2, 4, 6, 8, 5, 0.05, 0.5, 1, 1.5, 1.9]),
    ],
)
@pytest.mark.parametrize("filter_amplitude", ["sqrt", "density"])
def test_model_gradient_matches_central_difference(sdf, phi, filter_amplitude):
    shape = (8, 8)
    proc = GaussianRandomField(shape, sdf, 0.4, eps=5.0, filter_amplitude=filter_amplitude)
    gen = torch.Generator().manual_seed(9)
    noise = torch.randn(shape, dtype=torch.float64, generator=gen)
    weights = torch.randn(shape, dtype=torch.float64, generator=gen)
    phi = torch.tensor(phi, dtype=torch.float64, requires_grad=True)

    def f(p):
        return (weights * _model_output(proc, p, noise)).sum()

    (grad,) = torch.autograd.grad(f(phi), phi)
    assert torch.isfinite(grad).all() and grad.abs().max() > 1e-4
    h = 1e-5
    fd = torch.stack([
        (f(phi.detach() + h * e) - f(phi.detach() - h * e)) / (2 * h)
        for e in torch.eye(len(phi), dtype=torch.float64)
    ])
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_model_site_shapes_and_plates():
    proc = GaussianRandomField((8, 8), PSPGenDensity(), 0.5, threshold="hard")
    tr = poutine.trace(proc.model).get_trace(torch.tensor([5.0, 1.0]))
    site = tr.nodes["white_noise"]
    assert site["fn"].event_shape == (8, 8) and site["fn"].batch_shape == ()
    assert isinstance(site["fn"].base_dist, pyro.distributions.Normal)
    out = tr.nodes["_RETURN"]["value"]
    assert out.shape == (8, 8) and ((out >= 0) & (out <= 1)).all()
    assert ((out > 0.01) & (out < 0.99)).any()  # relaxed although the threshold is hard
    expected = relaxed_threshold(proc.field(torch.tensor([5.0, 1.0]), site["value"]), 0.5, 25.0)
    torch.testing.assert_close(out, expected)

    def batched():
        with pyro.plate("designs", 3):
            return proc.model(torch.tensor([[5.0, 1.0], [2.0, 1.0], [8.0, 0.5]]))

    tr = poutine.trace(batched).get_trace()
    assert tr.nodes["white_noise"]["fn"].batch_shape == (3,)
    assert tr.nodes["_RETURN"]["value"].shape == (3, 8, 8)
    tr.compute_log_prob()
    assert tr.nodes["white_noise"]["log_prob"].shape == (3,)

    def broadcast():
        with pyro.plate("samples", 4):
            return proc.model(torch.tensor([5.0, 1.0]))

    tr = poutine.trace(broadcast).get_trace()
    assert tr.nodes["white_noise"]["value"].shape == (4, 8, 8)
    assert tr.nodes["_RETURN"]["value"].shape == (4, 8, 8)


def test_config_round_trip_gives_same_samples():
    proc = GaussianRandomField((10, 10, 10), GaussianFilterDensity(3), 0.3, noise="uniform",
                               threshold="relaxed", eps=10.0)
    cfg = proc.config()
    assert cfg["noise"] == "uniform" and cfg["eps"] == 10.0 and cfg["shape"] == [10, 10, 10]
    rebuilt = from_config(cfg)
    assert rebuilt.config() == cfg
    phi = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(rebuilt.sample(phi, seed=3), proc.sample(phi, seed=3))
    hard = proc.sample(phi, seed=3, threshold="hard")
    assert (hard.sum((-3, -2, -1)) == 300).all()


def test_properties():
    sdf = PSPGenDensity()
    proc = GaussianRandomField((16, 16), sdf, 0.5)
    assert proc.shape == (16, 16) and proc.ndim == 2 and proc.d_phi == 2
    assert proc.phi_names == ("phi1", "phi2")
    torch.testing.assert_close(proc.phi_bounds, sdf.phi_bounds)
    assert proc.phi_prior.event_shape == (2,)
    assert "GaussianRandomField" in repr(proc)


def test_bad_inputs():
    sdf = PSPGenDensity()
    proc = GaussianRandomField((8, 8), sdf, 0.5)
    with pytest.raises(ValueError, match="shape must be"):
        GaussianRandomField((8,), sdf, 0.5)
    with pytest.raises(ValueError, match="shape must be"):
        GaussianRandomField((4, 4, 4, 4), GaussianFilterDensity(3), 0.5)
    with pytest.raises(ValueError, match="shape must be"):
        GaussianRandomField(8, sdf, 0.5)
    with pytest.raises(ValueError, match="ndim=2"):
        GaussianRandomField((8, 8, 8), sdf, 0.5)
    for vf in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"volume_fraction must lie in \(0.0, 1.0\)"):
            GaussianRandomField((8, 8), sdf, vf)
    for eps in (0.0, -1.0):
        with pytest.raises(ValueError, match="eps must be"):
            GaussianRandomField((8, 8), sdf, 0.5, eps=eps)
    with pytest.raises(ValueError, match="threshold must be one of"):
        GaussianRandomField((8, 8), sdf, 0.5, threshold="soft")
    with pytest.raises(ValueError, match="noise must be one of"):
        GaussianRandomField((8, 8), sdf, 0.5, noise="cauchy")
    with pytest.raises(TypeError, match="sdf must be"):
        GaussianRandomField((8, 8), lambda phi, k: k, 0.5)
    with pytest.raises(TypeError, match="phase_field must be callable"):
        GaussianRandomField((8, 8), sdf, 0.5, phase_field=3)
    with pytest.raises(ValueError, match="threshold='hard'"):
        GaussianRandomField((8, 8), sdf, 0.5, threshold="relaxed", phase_field=lambda x: x)
    with pytest.raises(ValueError, match="phi must have last dimension 2"):
        proc.sample(torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="phi is outside its bounds"):
        proc.sample(torch.tensor([5.0, 3.0]))
    with pytest.raises(ValueError, match="phi must be finite"):
        proc.sample(torch.tensor([5.0, float("nan")]))
    with pytest.raises(ValueError, match="phi is outside its bounds"):
        proc.model(torch.tensor([10.0, 1.0]))
    with pytest.raises(ValueError, match="num_samples"):
        proc.sample(torch.tensor([5.0, 1.0]), num_samples=0)
    with pytest.raises(ValueError, match="seed"):
        proc.sample(torch.tensor([5.0, 1.0]), seed=-1)
    with pytest.raises(ValueError, match="noise must be a tensor"):
        proc.field(torch.tensor([5.0, 1.0]), torch.randn(8, 7))
    with pytest.raises(ValueError, match="threshold must be one of"):
        proc.sample(torch.tensor([5.0, 1.0]), threshold="soft")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_follows_phi():
    proc = GaussianRandomField((16, 16), PSPGenDensity(), 0.5)
    phi = torch.tensor([5.0, 1.0], device="cuda")
    x = proc.sample(phi, num_samples=3, seed=0)
    assert x.device.type == "cuda" and (x.sum((-2, -1)) == 128).all()
    out = proc.model(phi.requires_grad_())
    assert out.device.type == "cuda"
    out.sum().backward()
    assert torch.isfinite(phi.grad).all()
