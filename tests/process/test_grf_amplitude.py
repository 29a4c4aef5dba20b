"""The ``filter_amplitude`` option of GaussianRandomField: filter S itself (power spectrum S²)."""

import math

import pytest
import torch

from psppyro.process import GaussianRandomField, PSPGen10DDensity, PSPGenDensity, from_config
from psppyro.process.grf import relaxed_threshold
from psppyro.process.spectral import wavenumbers


def _normalized_power(sdf, phi, shape, power):
    """P~ = n S^power 1[k != 0] / sum_{k != 0} S^power, independent of the process code."""
    k = wavenumbers(shape, dtype=torch.float64)
    P = sdf(phi, k).clone() ** power
    P.reshape(-1)[0] = 0.0
    return P * (math.prod(shape) / P.sum())


def _z_scores(fields, P_tilde):
    """(mean periodogram / P~ - 1) / SE on significant modes, one per conjugate pair."""
    shape = P_tilde.shape
    n, m = math.prod(shape), fields.shape[0]
    dims = tuple(range(-len(shape), 0))
    per = (torch.fft.fftn(fields, dim=dims).abs() ** 2 / n).mean(0).reshape(-1)
    P = P_tilde.reshape(-1)
    idx = torch.arange(n).reshape(shape)
    neg = torch.roll(torch.flip(idx, dims), shifts=(1,) * len(shape), dims=dims).reshape(-1)
    lin = torch.arange(n)
    keep = (lin <= neg) & (P > 1e-8 * P.max())
    # Exp(1) ratio for k != -k, chi^2_1 for self-conjugate modes, averaged over m fields
    se = torch.where((lin == neg)[keep], math.sqrt(2.0 / m), math.sqrt(1.0 / m))
    return (per[keep] / P[keep] - 1.0) / se


@pytest.mark.parametrize(
    "sdf,phi",
    [
        (PSPGenDensity(), [5.0, 0.5]),
        (PSPGenDensity(), [1.0, 0.2]),
        (PSPGen10DDensity(), [1.0, 3.0, 5.0, 7.0, 9.0, 0.02, 0.1, 0.3, 1.0, 2.0]),
    ],
    ids=["pspgen-iso", "pspgen-aniso", "pspgen10d"],
)
def test_density_amplitude_power_spectrum_is_S_squared_chi2(sdf, phi):
    shape, m = (36, 36), 256
    phi = torch.tensor(phi, dtype=torch.float64)
    proc = GaussianRandomField(shape, sdf, 0.5, filter_amplitude="density")
    noise = torch.randn((m,) + shape, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(5))
    g = proc.field(phi, noise, normalize=False)
    z = _z_scores(g, _normalized_power(sdf, phi, shape, 2))
    n_modes = z.numel()
    assert n_modes > 50
    T = float((z**2).sum())
    assert abs(T - n_modes) < 5 * math.sqrt(2 * n_modes), (T, n_modes)
    assert float(z.abs().max()) < 5.5
    # the literal power spectrum S is rejected by the same statistic on these fields
    z_lit = _z_scores(g, _normalized_power(sdf, phi, shape, 1))
    assert float((z_lit**2).sum()) > 10 * z_lit.numel()
    # and the default process has power S, not S^2 (same noise)
    g_sqrt = GaussianRandomField(shape, sdf, 0.5).field(phi, noise, normalize=False)
    z_sqrt = _z_scores(g_sqrt, _normalized_power(sdf, phi, shape, 1))
    assert abs(float((z_sqrt**2).sum()) - z_sqrt.numel()) < 5 * math.sqrt(2 * z_sqrt.numel())


def test_density_amplitude_unit_expected_variance_and_filter_shape():
    proc = GaussianRandomField((12, 10), PSPGenDensity(), 0.5, filter_amplitude="density")
    phi = torch.tensor([3.0, 0.7], dtype=torch.float64)
    amp = proc.amplitude(phi)
    k = wavenumbers((12, 10), dtype=torch.float64)
    S = PSPGenDensity()(phi, k)[..., : 10 // 2 + 1].clone()
    S[0, 0] = 0.0
    ratio = amp[S > 0] / S[S > 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))  # filter ∝ S
    assert float(amp[0, 0]) == 0.0
    # full-spectrum power averages to 1 (unit expected variance of the raw field)
    P = _normalized_power(PSPGenDensity(), phi, (12, 10), 2)
    assert abs(float(P.mean()) - 1.0) < 1e-12


def test_gradient_finite_where_density_underflows():
    """φ2 = 2 on 36²: exp(-2 k²) underflows at |k| >= 19; the filter S has a finite gradient."""
    proc = GaussianRandomField((36, 36), PSPGenDensity(), 0.5, filter_amplitude="density")
    phi = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    noise = torch.randn(36, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = relaxed_threshold(proc.field(phi, noise), proc.volume_fraction, proc.eps).sum()
    (grad,) = torch.autograd.grad(out, phi)
    assert torch.isfinite(grad).all()


def test_config_round_trip_and_validation():
    proc = GaussianRandomField((16, 16), PSPGenDensity(), 2 / 3, filter_amplitude="density")
    cfg = proc.config()
    assert cfg["filter_amplitude"] == "density"
    rebuilt = from_config(cfg)
    assert rebuilt.config() == cfg and rebuilt.filter_amplitude == "density"
    phi = torch.tensor([2.0, 1.0])
    assert torch.equal(rebuilt.sample(phi, 3, seed=4), proc.sample(phi, 3, seed=4))
    default = GaussianRandomField((16, 16), PSPGenDensity(), 2 / 3)
    assert default.filter_amplitude == "sqrt" and default.config()["filter_amplitude"] == "sqrt"
    # a config written before the option existed rebuilds with the default
    old = {k: v for k, v in default.config().items() if k != "filter_amplitude"}
    assert from_config(old).filter_amplitude == "sqrt"
    assert not torch.equal(default.sample(phi, 3, seed=4), proc.sample(phi, 3, seed=4))
    assert "filter_amplitude='density'" in repr(proc)
    with pytest.raises(ValueError, match=r"filter_amplitude must be one of .*'sqrt'.*'power'"):
        GaussianRandomField((16, 16), PSPGenDensity(), 0.5, filter_amplitude="power")
