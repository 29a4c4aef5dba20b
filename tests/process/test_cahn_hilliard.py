"""Tests for the stabilized semi-implicit spectral Cahn–Hilliard solver.

Initial conditions are thresholded smooth random fields made here (PSP-GEN-like: void fraction 2/3,
36² or smaller) so that these tests do not depend on the GRF module.
"""

import json
import math
import pickle

import pytest
import torch

from psppyro.process.cahn_hilliard import (
    DEFAULT_DT,
    CahnHilliard,
    _ifrk4_reference,
    wavenumber_squared,
)


def smooth_binary(batch, shape, seed=0, length=2.0, volume_fraction=2 / 3):
    """Binary fields: white noise filtered by exp(-length² k²/2), phase 1 on the top fraction."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(*batch, *shape, generator=g, dtype=torch.float64)
    dims = tuple(range(-len(shape), 0))
    k2 = wavenumber_squared(shape, 1.0)
    field = torch.fft.irfftn(
        torch.fft.rfftn(noise, dim=dims) * torch.exp(-0.5 * length**2 * k2), s=shape, dim=dims
    )
    flat = field.reshape(*batch, -1)
    q = torch.quantile(flat, 1 - volume_fraction, dim=-1, keepdim=True)
    return (flat > q).to(torch.float64).reshape(field.shape)


def differing_fraction(a, b):
    return float(((a > 0) != (b > 0)).double().mean())


# ---------------------------------------------------------------------- construction


def test_defaults_and_config_round_trip():
    ch = CahnHilliard()
    assert ch.max_dt == DEFAULT_DT
    assert ch.steps == round(5.0 / DEFAULT_DT)
    assert math.isclose(ch.dt * ch.steps, ch.T)
    cfg = json.loads(json.dumps(ch.config()))
    assert cfg["type"] == "CahnHilliard"
    rebuilt = CahnHilliard(**{k: v for k, v in cfg.items() if k != "type"})
    assert rebuilt.config() == ch.config()
    # pickles (Dask workers receive processes by pickle) and still works afterwards
    clone = pickle.loads(pickle.dumps(ch))
    assert clone.config() == ch.config()
    # dt that does not divide T: steps rounded up, effective step below the requested one
    ch = CahnHilliard(T=1.0, dt=0.3)
    assert ch.steps == 4 and math.isclose(ch.dt, 0.25)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"D": 0.0}, "D"),
        ({"D": -1.0}, "D"),
        ({"gamma": 0.0}, "gamma"),
        ({"T": -5.0}, "T"),
        ({"T": float("nan")}, "T"),
        ({"dt": 0.0}, "dt"),
        ({"dx": -1.0}, "dx"),
        ({"stabilization": -0.1}, "stabilization"),
        ({"ndim": 1}, "ndim"),
        ({"ndim": 4}, "ndim"),
    ],
)
def test_bad_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CahnHilliard(**kwargs)


def test_bad_parameter_types_raise():
    with pytest.raises(TypeError, match="gamma"):
        CahnHilliard(gamma="2")
    with pytest.raises(TypeError, match="ndim"):
        CahnHilliard(ndim=2.0)


def test_bad_inputs_raise():
    ch = CahnHilliard(T=0.1)
    with pytest.raises(ValueError, match="ndim=2"):
        ch(torch.ones(8))
    with pytest.raises(ValueError, match="ndim=3"):
        CahnHilliard(T=0.1, ndim=3)(torch.ones(8, 8))
    with pytest.raises(ValueError, match="binary"):
        ch(torch.full((8, 8), 0.5))
    c = torch.zeros(8, 8)
    c[0, 0] = float("nan")
    with pytest.raises(ValueError, match="c0"):
        ch.evolve(c)
    with pytest.raises(TypeError, match="c0"):
        ch.evolve(torch.zeros(8, 8, dtype=torch.complex128))


# ---------------------------------------------------------------------- conservation, energy


def test_mass_conserved_to_round_off():
    x = smooth_binary((4,), (36, 36), seed=1)
    c0 = 2 * x - 1
    c = CahnHilliard().evolve(c0)
    assert (c.mean(dim=(-2, -1)) - c0.mean(dim=(-2, -1))).abs().max() < 1e-12
    # ... and the field did evolve (the test is not vacuous)
    assert (c - c0).abs().max() > 0.5


def test_free_energy_non_increasing_at_default_dt():
    x = smooth_binary((4,), (36, 36), seed=2)
    ch = CahnHilliard()
    c, energy = ch.evolve(2 * x - 1, return_energy=True)
    assert energy.shape == (4, ch.steps + 1)
    assert torch.allclose(energy[:, -1], ch.free_energy(c))
    # Energy stability (Shen & Yang 2010, Thm 2.1) needs S >= max f''(c)/2 = (3 max c² - 1)/2
    # along the run; check that the condition held, so a failure below is a real bug.
    assert (3 * c.abs().max() ** 2 - 1) / 2 <= ch.stabilization
    increments = energy.diff(dim=-1)
    assert increments.max() <= 1e-12 * energy.abs().max()  # round-off only
    assert (energy[:, -1] < 0.5 * energy[:, 0]).all()  # and it really decreased


@pytest.mark.parametrize("n", [16, 15])  # even and odd: the half-spectrum weights differ
def test_free_energy_of_a_cosine_matches_closed_form(n):
    # c = A cos(2π m j / N) along axis -1 on an N×N grid with spacing dx:
    # Σ f(c) dx² is summed directly; Σ |∇c|² dx² = A² k² N² dx² / 2 with k = 2π m / (N dx).
    m, amp, dx, gamma = 3, 0.7, 0.5, 1.5
    j = torch.arange(n, dtype=torch.float64)
    c = (amp * torch.cos(2 * math.pi * m * j / n)).expand(n, n)
    k = 2 * math.pi * m / (n * dx)
    bulk = ((c * c - 1) ** 2 / 4).sum() * dx**2
    grad = amp**2 * k**2 * n * n / 2 * dx**2
    expected = bulk + gamma / 2 * grad
    got = CahnHilliard(gamma=gamma, dx=dx).free_energy(c)
    assert torch.allclose(got, expected, rtol=1e-13, atol=0)


def test_free_energy_of_the_nyquist_mode():
    # c = A (-1)^j along axis -1 (N even) is an eigenvector of the spectral Laplacian with
    # eigenvalue -(π/dx)², so Σ c(-∇²c) dx² = A² (π/dx)² N² dx² and f(c) = (A² - 1)²/4 everywhere.
    n, amp, dx, gamma = 8, 0.4, 2.0, 3.0
    c = (amp * (-1.0) ** torch.arange(n, dtype=torch.float64)).expand(n, n)
    expected = n * n * dx**2 * ((amp**2 - 1) ** 2 / 4 + gamma / 2 * amp**2 * (math.pi / dx) ** 2)
    got = CahnHilliard(gamma=gamma, dx=dx).free_energy(c)
    assert math.isclose(float(got), expected, rel_tol=1e-13)


def test_uniform_phases_are_steady():
    ch = CahnHilliard()
    for value in (-1.0, 1.0):
        c = ch.evolve(torch.full((2, 12, 12), value, dtype=torch.float64))
        assert (c - value).abs().max() < 1e-13
    x = torch.zeros(3, 12, 12)
    x[1] = 1.0
    assert torch.equal(ch(x), x)


# ---------------------------------------------------------------------- exact linear behaviour


@pytest.mark.parametrize("c_bar, m", [(0.0, 1), (0.0, 4), (0.8, 1), (0.5, 3)])
def test_linear_stability_rate(c_bar, m):
    # About c = c̄ a mode δ cos(k·x) evolves as exp(σ t), σ = -D k² (f''(c̄) + γ k²),
    # f''(c̄) = 3c̄² - 1.  δ = 1e-7 keeps the nonlinear terms (3c̄δ², δ³) ≤ 1e-6 relative.
    n, dx, D, gamma, T, dt = 32, 1.0, 10.0, 2.0, 0.2, 1e-4
    k = 2 * math.pi * m / (n * dx)
    sigma = -D * k**2 * (3 * c_bar**2 - 1 + gamma * k**2)
    j = torch.arange(n, dtype=torch.float64)
    mode = torch.cos(2 * math.pi * m * j / n).expand(n, n)
    delta = 1e-7
    ch = CahnHilliard(D=D, gamma=gamma, T=T, dt=dt, dx=dx)
    c = ch.evolve(c_bar + delta * mode)
    amplitude = float(((c - c_bar) * mode).sum() / (mode * mode).sum())
    rate = math.log(amplitude / delta) / T
    # First-order scheme: with p = D k² (S - f''), q = D k² (S + γ k²) (σ = p - q) the per-step
    # factor is (1 + dt p)/(1 + dt q), so rate = σ - dt σ (p + q)/2 + O(dt²): relative error
    # dt (p + q)/2 (≤ 2e-3 here); allow 1.5× that.
    p_plus_q = D * k**2 * (2 * ch.stabilization - (3 * c_bar**2 - 1) + gamma * k**2)
    assert abs(rate - sigma) <= 1.5 * dt * p_plus_q / 2 * abs(sigma)
    # The other modes stay at round-off level: the response is a pure single mode.
    assert (c - c_bar - amplitude * mode).abs().max() < 1e-6 * delta


def test_discrete_amplification_factor_at_default_dt():
    # The scheme of the module docstring multiplies a small mode per step by
    # (1 + dt D k² (S - f''(c̄))) / (1 + dt D k² (S + γ k²)); check it exactly at the default dt.
    n, m, c_bar = 24, 2, 0.3
    ch = CahnHilliard(T=1.0)
    k2 = (2 * math.pi * m / n) ** 2
    fpp = 3 * c_bar**2 - 1
    a = ch.dt * ch.D * k2
    factor = (1 + a * (ch.stabilization - fpp)) / (1 + a * (ch.stabilization + ch.gamma * k2))
    j = torch.arange(n, dtype=torch.float64)
    mode = torch.cos(2 * math.pi * m * j / n)[:, None].expand(n, n)  # along axis -2
    delta = 1e-8
    c = ch.evolve(c_bar + delta * mode)
    amplitude = float(((c - c_bar) * mode).sum() / (mode * mode).sum())
    assert math.isclose(amplitude / delta, factor**ch.steps, rel_tol=1e-6)


def test_grid_spacing_is_a_rescaling():
    # x' = x / h turns D, γ on spacing h into D/h², γ/h² on spacing 1: identical discrete problems.
    h = 0.5
    c0 = 2 * smooth_binary((2,), (20, 20), seed=3) - 1
    a = CahnHilliard(D=10.0, gamma=2.0, T=0.4, dx=h).evolve(c0)
    b = CahnHilliard(D=10.0 / h**2, gamma=2.0 / h**2, T=0.4, dx=1.0).evolve(c0)
    assert (a - b).abs().max() < 1e-10


def test_spatial_refinement_converges_spectrally():
    # A resolved problem (cell length 16, γ = 1: interface width ~1, so 1 to 4 points per width)
    # from a band-limited start, on grids of spacing 1, 1/2, 1/4 with the same Δt: the coarse
    # solutions sampled from the finest agree with it to 2.2e-4 and 1.8e-8 (spectral convergence).
    length = 16.0

    def start(n):
        h = length / n
        y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64) * h,
                              torch.arange(n, dtype=torch.float64) * h, indexing="ij")
        w = 2 * math.pi / length
        return 0.1 + 0.6 * torch.cos(w * x) + 0.5 * torch.sin(2 * w * y) * torch.cos(w * x)

    runs = {n: CahnHilliard(D=1.0, gamma=1.0, T=1.0, dt=2e-3, dx=length / n).evolve(start(n))
            for n in (16, 32, 64)}
    err16 = (runs[16] - runs[64][::4, ::4]).abs().max()
    err32 = (runs[32] - runs[64][::2, ::2]).abs().max()
    assert (runs[64] - start(64)).abs().max() > 0.1  # it evolved
    assert err16 < 1e-3 and err32 < 1e-6 and err32 < 1e-3 * err16


# ---------------------------------------------------------------------- time-step convergence


def test_default_dt_converged_against_half_step():
    # Stated tolerance (module docstring): at most 1 % differing pixels and max |Δc| ≤ 0.25 against
    # a converged reference.  The scheme is first order, so error(dt) ≈ 2 |c(dt) - c(dt/2)|
    # (Richardson), which is what is checked on this small batch.
    x = smooth_binary((8,), (36, 36), seed=4)
    c0 = 2 * x - 1
    c = CahnHilliard().evolve(c0)
    c_half = CahnHilliard(dt=DEFAULT_DT / 2).evolve(c0)
    assert 2 * differing_fraction(c, c_half) <= 0.01
    assert 2 * (c - c_half).abs().max() <= 0.25
    # and halving the step really changes something (the estimate is not vacuous)
    assert (c - c_half).abs().max() > 1e-3


def test_first_order_convergence_rate():
    x = smooth_binary((2,), (24, 24), seed=5)
    c0 = 2 * x - 1
    runs = [CahnHilliard(T=1.0, dt=dt).evolve(c0) for dt in (0.04, 0.02, 0.01)]
    ratio = (runs[0] - runs[1]).norm() / (runs[1] - runs[2]).norm()
    assert 1.7 < ratio < 2.3  # 2 for a first-order scheme


@pytest.mark.slow
def test_semi_implicit_agrees_with_integrating_factor_rk4():
    # Second, independent time discretization (fourth order, no stabilization): the semi-implicit
    # scheme converges to it, and at the default dt meets the stated tolerance against it.
    x = smooth_binary((16,), (36, 36), seed=6)
    c0 = 2 * x - 1
    reference = _ifrk4_reference(c0, 10.0, 2.0, 5.0, 0.002)
    reference_fine = _ifrk4_reference(c0, 10.0, 2.0, 5.0, 0.001)
    assert (reference - reference_fine).abs().max() < 1e-3  # the reference is converged
    errors = []
    for dt in (DEFAULT_DT, DEFAULT_DT / 4, DEFAULT_DT / 16):
        c = CahnHilliard(dt=dt).evolve(c0)
        errors.append(float((c - reference).abs().max()))
        if dt == DEFAULT_DT:
            assert differing_fraction(c, reference) <= 0.01
            assert errors[0] <= 0.25
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3  # first order: ÷4 each
    assert errors[2] < 0.02


# ---------------------------------------------------------------------- shapes, dtypes, 3-D


def test_batched_equals_per_sample():
    x = smooth_binary((2, 3), (16, 16), seed=7)
    ch = CahnHilliard(T=1.0)
    c, energy = ch.evolve(2 * x - 1, return_energy=True)
    assert c.shape == x.shape and energy.shape == (2, 3, ch.steps + 1)
    for i in range(2):
        for j in range(3):
            ci, ei = ch.evolve(2 * x[i, j] - 1, return_energy=True)
            assert torch.allclose(c[i, j], ci, atol=1e-12, rtol=0)
            assert torch.allclose(energy[i, j], ei, atol=1e-10, rtol=0)


def test_call_binarizes_and_keeps_dtype_and_device():
    x64 = smooth_binary((2,), (20, 20), seed=8)
    ch = CahnHilliard(T=1.0)
    for dtype in (torch.float32, torch.float64):
        y = ch(x64.to(dtype))
        assert y.dtype == dtype and y.device == x64.device and y.shape == x64.shape
        assert bool(((y == 0) | (y == 1)).all())
    y = ch(x64)
    expected = (ch.evolve(2 * x64 - 1) > 0).double()
    assert torch.equal(y, expected)
    assert not torch.equal(y, x64)  # the microstructure changed
    assert ch(x64.bool()).dtype == torch.get_default_dtype()
    # rectangular grids are allowed (periodic in each axis)
    assert ch(torch.ones(10, 14)).shape == (10, 14)


def test_three_dimensional_run():
    x = smooth_binary((2,), (12, 12, 12), seed=9, length=1.5, volume_fraction=0.5)
    ch = CahnHilliard(T=1.0, ndim=3)
    c, energy = ch.evolve(2 * x - 1, return_energy=True)
    assert c.shape == x.shape
    assert (c.mean(dim=(-3, -2, -1)) - (2 * x - 1).mean(dim=(-3, -2, -1))).abs().max() < 1e-12
    assert energy.diff(dim=-1).max() <= 1e-12 * energy.abs().max()
    assert (energy[:, -1] < energy[:, 0]).all()
    # linear rate of a 3-D mode along axis -3
    n, m, c_bar, delta = 12, 1, 0.0, 1e-7
    k2 = (2 * math.pi * m / n) ** 2
    ch = CahnHilliard(T=0.2, dt=1e-4, ndim=3)
    sigma = -ch.D * k2 * (-1 + ch.gamma * k2)
    mode = torch.cos(2 * math.pi * m * torch.arange(n, dtype=torch.float64) / n)
    mode = mode[:, None, None].expand(n, n, n)
    c = ch.evolve(c_bar + delta * mode)
    amplitude = float((c * mode).sum() / (mode * mode).sum())
    assert abs(math.log(amplitude / delta) / ch.T - sigma) <= 2e-3 * abs(sigma)


def test_ifrk4_reference_conserves_mass():
    c0 = 2 * smooth_binary((1,), (16, 16), seed=10) - 1
    c = _ifrk4_reference(c0, 10.0, 2.0, 0.2, 0.002)
    assert abs(float(c.mean() - c0.mean())) < 1e-12
    assert (c - c0).abs().max() > 0.1


def test_float32_precision_close_to_float64():
    # Stated in the module docstring: at the default dt float32 changes c by ~1e-5 and no pixel.
    x = smooth_binary((4,), (36, 36), seed=11)
    c0 = 2 * x - 1
    c64 = CahnHilliard().evolve(c0)
    ch32 = CahnHilliard(precision="float32")
    c32 = ch32.evolve(c0.float())
    assert c32.dtype == torch.float32
    assert (c32.double() - c64).abs().max() < 1e-4
    assert torch.equal(c32 > 0, c64 > 0)
    # mass conserved to float32 round-off
    assert (c32.double().mean(dim=(-2, -1)) - c0.mean(dim=(-2, -1))).abs().max() < 1e-6
    assert ch32.config()["precision"] == "float32"
    with pytest.raises(ValueError, match="precision"):
        CahnHilliard(precision="float16")


def test_empty_input_raises():
    with pytest.raises(ValueError, match="empty"):
        CahnHilliard(T=0.1).evolve(torch.zeros(0, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_input_device():
    x = smooth_binary((3,), (20, 20), seed=12)
    for precision, tol in (("float64", 1e-10), ("float32", 1e-4)):
        ch = CahnHilliard(T=1.0, precision=precision)
        c_cpu = ch.evolve(2 * x - 1)
        c_gpu = ch.evolve((2 * x - 1).cuda())
        assert c_gpu.device.type == "cuda"
        assert (c_gpu.cpu() - c_cpu).abs().max() < tol
    y = CahnHilliard()(x.float().cuda())
    assert y.device.type == "cuda" and y.dtype == torch.float32
