import math

import pytest
import torch

from psppyro.process.spectral import (
    GaussianFilterDensity,
    PSPGen10DDensity,
    PSPGenDensity,
    SpectralDensity,
    SpectralMixtureDensity,
    density_from_config,
    wavenumbers,
)


def _randn(shape, seed):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _reflect(S, ndim):
    """S(-k) on the FFT grid: index i -> (-i) mod N along each spatial axis."""
    dims = tuple(range(-ndim, 0))
    return torch.roll(torch.flip(S, dims), shifts=(1,) * ndim, dims=dims)


def test_wavenumbers_axis_order_and_values():
    k = wavenumbers((4, 6), dtype=torch.float64)
    assert k.shape == (2, 4, 6)
    assert k[-1, 0].tolist() == [0.0, 1.0, 2.0, -3.0, -2.0, -1.0]  # along axis -1 (x)
    assert k[-2, :, 0].tolist() == [0.0, 1.0, -2.0, -1.0]  # along axis -2 (y)
    assert (k[-1] == k[-1, :1]).all() and (k[-2] == k[-2, :, :1]).all()
    with pytest.raises(ValueError, match="shape"):
        wavenumbers((1, 4))


def test_pspgen_formula_and_orientation():
    sdf = PSPGenDensity()
    k = wavenumbers((8, 8), dtype=torch.float64)
    phi = torch.tensor([3.0, 0.7], dtype=torch.float64)
    S = sdf(phi, k)
    # k_y = 1 is row 1, k_x = 2 is column 2
    expected = 0.3 * math.exp(-0.7 * 4) + 0.7 * math.exp(-0.7 * 1)
    assert S[1, 2].item() == pytest.approx(expected, rel=1e-12)
    # phi1 = 1: weight 0.9 on the k_y term -> power concentrated at small k_y
    S1 = sdf(torch.tensor([1.0, 2.0]), k)
    assert S1[0, 3] > 8 * S1[3, 0]  # 0.9 vs 0.1


def test_pspgen10d_formula():
    sdf = PSPGen10DDensity()
    k = wavenumbers((6, 6), dtype=torch.float64)
    phi = torch.tensor([1.0, 2, 3, 4, 5, 0.1, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    S = sdf(phi, k)
    ky, kx = 2.0, -1.0  # row 2, column 5
    expected = sum(
        a * (math.exp(-b * kx**2) + math.exp(-b * ky**2))
        for a, b in zip(phi[:5].tolist(), phi[5:].tolist())
    )
    assert S[2, 5].item() == pytest.approx(expected, rel=1e-12)
    assert sdf.phi_names[0] == "phi1_1" and sdf.phi_names[5] == "phi1_2"


def test_spectral_mixture_against_direct_sum():
    sdf = SpectralMixtureDensity(Q=9, w_max=20.0, sigma=5.0)
    k = wavenumbers((8, 8), dtype=torch.float64)
    phi = _randn(9, 1)
    S = sdf(phi, k)
    gamma = torch.softmax(phi, -1)
    c = torch.linspace(0, 20.0, 3, dtype=torch.float64)
    for iy, ix in [(0, 0), (1, 3), (6, 2), (4, 4)]:
        wy, wx = 2 * math.pi * abs(k[-2, iy, ix].item()), 2 * math.pi * abs(k[-1, iy, ix].item())
        direct = sum(
            gamma[3 * i + j].item()
            * math.exp(-((wy - c[i].item()) ** 2 + (wx - c[j].item()) ** 2) / (2 * 25.0))
            / (2 * math.pi * 25.0)
            for i in range(3)
            for j in range(3)
        )
        assert S[iy, ix].item() == pytest.approx(direct, rel=1e-12)
    prior = sdf.phi_prior
    assert prior.event_shape == (9,) and prior.batch_shape == ()
    assert torch.isinf(sdf.phi_bounds).all()
    with pytest.raises(ValueError, match="Q must be a perfect square"):
        SpectralMixtureDensity(Q=10)


def _periodized_kernel_dft(sigma, n):
    """DFT of the periodized sampled normalized Gaussian, by brute force (many images)."""
    j = torch.arange(n, dtype=torch.float64)
    g = sum(
        torch.exp(-((j + m * n) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
        for m in range(-20, 21)
    )
    return torch.fft.fft(g)


@pytest.mark.parametrize("shape,sigma", [((12, 10), (1.0, 2.5)), ((6, 7, 8), (1.0, 3.0, 7.0))])
def test_gaussian_filter_density_is_exact_kernel_transform(shape, sigma):
    sdf = GaussianFilterDensity(ndim=len(shape))
    k = wavenumbers(shape, dtype=torch.float64)
    S = sdf(torch.tensor(sigma, dtype=torch.float64), k)
    expected = torch.ones(shape, dtype=torch.float64)
    for i, (n, s) in enumerate(zip(shape, sigma)):
        g_hat = _periodized_kernel_dft(s, n)
        assert g_hat.imag.abs().max() < 1e-12  # symmetric kernel: real transform
        view = [1] * len(shape)
        view[i] = n
        expected = expected * g_hat.real.reshape(view) ** 2
    torch.testing.assert_close(S, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "sdf,phi,shape",
    [
        (PSPGenDensity(), [4.0, 0.5], (9, 8)),
        (PSPGen10DDensity(), [1.0, 2, 3, 4, 5, 0.05, 0.2, 0.5, 1.0, 2.0], (8, 8)),
        (SpectralMixtureDensity(), [0.0] * 50 + [1.0] * 50, (16, 15)),
        (GaussianFilterDensity(3), [1.0, 2.0, 3.0], (6, 7, 8)),
    ],
)
def test_densities_even_nonnegative_batched_and_config(sdf, phi, shape):
    k = wavenumbers(shape, dtype=torch.float64)
    phi = torch.tensor(phi, dtype=torch.float64)
    S = sdf(phi, k)
    assert S.shape == shape and (S >= 0).all()
    torch.testing.assert_close(_reflect(S, len(shape)), S, rtol=1e-12, atol=0)
    batch = torch.stack([phi, phi])[:, None].expand(2, 3, -1)
    Sb = sdf(batch, k)
    assert Sb.shape == (2, 3) + shape
    torch.testing.assert_close(Sb[1, 2], S)
    rebuilt = density_from_config(sdf.config())
    assert type(rebuilt) is type(sdf) and rebuilt.config() == sdf.config()
    assert len(sdf.phi_names) == sdf.d_phi == sdf.phi_bounds.shape[0] == len(phi)
    draw = sdf.phi_prior.sample((5,))
    assert draw.shape == (5, sdf.d_phi)
    if sdf.bounded:
        b = sdf.phi_bounds
        assert ((draw >= b[:, 0]) & (draw <= b[:, 1])).all()


def test_bounds_and_prior_of_bounded_families():
    torch.testing.assert_close(PSPGenDensity().phi_bounds, torch.tensor([[1.0, 9.0], [0.2, 2.0]]))
    b10 = PSPGen10DDensity().phi_bounds
    assert b10[:5].tolist() == [[1.0, 9.0]] * 5
    torch.testing.assert_close(b10[5:], torch.tensor([[0.02, 2.0]] * 5))
    assert GaussianFilterDensity(3).phi_bounds.tolist() == [[1.0, 7.0]] * 3
    assert PSPGenDensity().phi_prior.event_shape == (2,)


def test_bad_inputs_raise_value_error_naming_the_argument():
    sdf = PSPGenDensity()
    k = wavenumbers((8, 8))
    with pytest.raises(ValueError, match="phi must have last dimension 2"):
        sdf(torch.tensor([1.0, 2.0, 3.0]), k)
    with pytest.raises(ValueError, match=r"phi is outside its bounds.*\[1, 9\]"):
        sdf(torch.tensor([0.5, 1.0]), k)
    with pytest.raises(ValueError, match="phi must be finite"):
        sdf(torch.tensor([float("nan"), 1.0]), k)
    with pytest.raises(TypeError, match="phi"):
        sdf("abc", k)
    with pytest.raises(ValueError, match="ndim=2"):
        sdf(torch.tensor([5.0, 1.0]), wavenumbers((4, 4, 4)))
    with pytest.raises(TypeError, match="k must be"):
        sdf(torch.tensor([5.0, 1.0]), [[0.0]])
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        GaussianFilterDensity(ndim=1)
    with pytest.raises(ValueError, match="sigma_bounds"):
        GaussianFilterDensity(3, sigma_bounds=(0.0, 7.0))
    with pytest.raises(ValueError, match="w_max"):
        SpectralMixtureDensity(w_max=-1.0)
    with pytest.raises(ValueError, match="config"):
        density_from_config({"type": "Nope"})
    assert issubclass(PSPGenDensity, SpectralDensity)
