"""Verification of the Darcy–Brinkman–Stokes permeability (``solid_permeability`` κ_s > 0).

Exact discrete answers: an all-solid cell (k = κ_s I), flow across a layered medium (uniform
velocity, k = κ_s / s with s the solid fraction — exact for the face-mean drag, see below),
agreement of the three MAC solvers (SuperLU saddle point, stream-function Cholesky, projected CG)
and of Taylor–Hood on the same exact cases.  Convergence: along the layers to the closed-form
1-D Brinkman (cosh) profile under refinement, κ_s → 0 to the Stokes values, MAC vs Taylor–Hood
on a random image (slow).  Symmetries, per-image κ_s, validation.
"""

import math

import numpy as np
import pytest
import torch

from psppyro.properties import (
    extrapolate_permeability,
    log_permeability,
    percolates,
    permeability,
)
from psppyro.properties._brinkman import (
    interface_transmissibility,
    solve_dbs_cholesky,
    solve_dbs_direct,
    solve_dbs_pcg,
)

from .test_permeability import smoothed_noise as _smoothed_noise

MAC_SOLVERS = ["direct", "cholesky", "pcg"]


def smoothed_noise(num, size, seed, sigma=1.5, void_fraction=0.6):
    return _smoothed_noise(num, size, seed, sigma=sigma, void_fraction=void_fraction)


def layers(n, rows):
    """Horizontal void layers at the given row indices (flow along x is along the layers)."""
    x = torch.zeros(n, n, dtype=torch.float64)
    x[list(rows), :] = 1.0
    return x


def brinkman_layer_flux(w, kappa):
    """Closed-form k along periodic layers: void of width w, Brinkman solid of width 1 − w.

    Void: −u'' = 1, u = A − y²/2 (|y| <= w/2); solid: −u'' + u/κ = 1, u = κ + B cosh(z/ℓ),
    ℓ = √κ, z measured from the solid's centre (|z| <= s = (1 − w)/2); u and u' continuous give
    B = w ℓ / (2 sinh(s/ℓ)), A = κ + B cosh(s/ℓ) + w²/8 and the flux
    k = A w − w³/24 + 2 s κ + w κ (→ w³/12, Poiseuille, as κ → 0).
    """
    ell = math.sqrt(kappa)
    s = 0.5 * (1.0 - w)
    b = w * ell / (2.0 * math.sinh(s / ell))
    a = kappa + b * math.cosh(s / ell) + w * w / 8.0
    return a * w - w**3 / 24.0 + 2.0 * s * kappa + w * kappa


# ------------------------------------------------------------------ exact discrete answers


@pytest.mark.parametrize("solver", MAC_SOLVERS)
@pytest.mark.parametrize("refine", [1, 2])
def test_all_solid_cell_gives_kappa_identity(solver, refine):
    kappa = 3e-3
    k = permeability(torch.zeros(6, 6), refine=refine, solid_permeability=kappa, solver=solver)
    assert torch.allclose(k, kappa * torch.eye(2, dtype=torch.float64), rtol=1e-10, atol=1e-16)


def test_all_solid_cell_fem():
    k = permeability(torch.zeros(4, 4), method="fem", solid_permeability=2e-3)
    assert torch.allclose(k, 2e-3 * torch.eye(2, dtype=torch.float64), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("solver", MAC_SOLVERS)
@pytest.mark.parametrize("rows", [(0,), (2, 3, 4), (1, 2, 5, 6, 7, 8)])
def test_flow_across_layers_is_exactly_kappa_over_solid_fraction(solver, rows):
    # Force along y crosses the layers.  The uniform velocity v = V, u = 0 is divergence-free and
    # has no viscous stress; momentum on the v faces of a column reads h² β_face V + Δq = h², and
    # summing over the periodic column removes the pressure: V = 1 / mean(β_face).  With the
    # face-mean drag β_face = (1/κ_above + 1/κ_below) / 2 every cell contributes 1/κ exactly
    # once, mean(β_face) = s / κ_s: k_yy = κ_s / s exactly, for any layer arrangement.
    n, kappa = 10, 1e-3
    x = layers(n, rows)
    s = 1.0 - len(rows) / n
    k = permeability(x, solid_permeability=kappa, solver=solver)
    assert k[1, 1].item() == pytest.approx(kappa / s, rel=1e-9)
    assert abs(k[0, 1].item()) < 1e-9 * kappa and abs(k[1, 0].item()) < 1e-9 * kappa
    # refinement changes h but not κ_s (a physical value): the same exact answer
    k2 = permeability(x, refine=2, solid_permeability=kappa, solver=solver)
    assert k2[1, 1].item() == pytest.approx(kappa / s, rel=1e-9)


def test_flow_across_layers_fem_is_exact():
    # P1 pressure represents the piecewise linear pressure of the uniform flow exactly
    x = layers(6, (1, 2))
    k = permeability(x, method="fem", solid_permeability=1e-3)
    assert k[1, 1].item() == pytest.approx(1e-3 / (4 / 6), rel=1e-8)


def test_mac_solvers_agree_on_random_images():
    x = smoothed_noise(3, 20, seed=4).numpy() == 1
    kappa = np.array([0.02 / 20**2, 1e-3, 0.05])
    direct = np.stack([solve_dbs_direct(f, k) for f, k in zip(x, kappa)])
    chol = solve_dbs_cholesky(x, kappa)
    np.testing.assert_allclose(chol, direct, rtol=1e-9, atol=1e-12 * np.abs(direct).max())
    pcg = solve_dbs_pcg(torch.as_tensor(x), torch.as_tensor(kappa), rtol=1e-6).numpy()
    diag = [0, 1], [0, 1]
    # k is an energy functional: its error is about the square of the residual
    np.testing.assert_allclose(pcg[:, diag[0], diag[1]], direct[:, diag[0], diag[1]], rtol=1e-8)
    np.testing.assert_allclose(pcg, direct, rtol=0, atol=1e-5 * np.abs(direct).max())


def test_cholesky_path_is_thread_safe():
    # the reused CHOLMOD factor is overwritten by every numeric factorization: one per thread
    from concurrent.futures import ThreadPoolExecutor

    x = smoothed_noise(8, 16, seed=9).numpy() == 1
    kappa = np.full(8, 1e-3)
    serial = solve_dbs_cholesky(x, kappa)
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda i: solve_dbs_cholesky(x[i : i + 1], kappa[:1])[0],
                                 range(8)))
    np.testing.assert_allclose(np.stack(threaded), serial, rtol=1e-10, atol=0)


def test_interface_transmissibility_limits():
    n = 16
    assert interface_transmissibility(1e-20, n) == pytest.approx(2.0, rel=1e-8)  # ghost wall
    assert interface_transmissibility(1e4, n) == pytest.approx(1.0, rel=1e-4)  # plain stencil
    values = [interface_transmissibility(k, n) for k in (1e-6, 1e-4, 1e-2)]
    assert values[0] > values[1] > values[2]


# ------------------------------------------------------------------ convergence


@pytest.mark.parametrize("kappa", [0.02, 0.005])
def test_mac_along_layers_converges_to_the_cosh_profile(kappa):
    # three void rows out of eight, ℓ = √κ_s = 0.14 (0.07): resolved (κ_s >= 4 h²) after
    # refinement; the MAC error is second order (measured 2.02–2.08)
    x = layers(8, (2, 3, 4))
    exact = brinkman_layer_flux(3 / 8, kappa)
    errors = [
        permeability(x, refine=r, solid_permeability=kappa)[0, 0].item() / exact - 1
        for r in (2, 4, 8)
    ]
    assert abs(errors[-1]) < 5e-3
    for coarse, fine in zip(errors[:-1], errors[1:]):
        assert 1.8 < math.log2(abs(coarse / fine)) < 2.3


def test_extrapolation_passes_solid_permeability_through():
    # second-order MAC error along the layers: Richardson with p = 2 from refine (2, 4) removes
    # the leading term, κ_s staying fixed under refinement
    x = layers(8, (2, 3, 4))
    exact = brinkman_layer_flux(3 / 8, 0.02)
    k4 = permeability(x, refine=4, solid_permeability=0.02)[0, 0].item()
    k = extrapolate_permeability(x, refines=(2, 4), order=2, solid_permeability=0.02)
    assert abs(k[0, 0].item() / exact - 1) < 0.05 * abs(k4 / exact - 1)
    assert k[1, 1].item() == pytest.approx(0.02 / (5 / 8), rel=1e-9)  # across: exact at any r


def test_auto_solver_on_cpu_is_the_cholesky_path():
    x = smoothed_noise(2, 12, seed=6)
    auto = permeability(x, solid_permeability=1e-3)
    assert torch.equal(auto, permeability(x, solid_permeability=1e-3, solver="cholesky"))
    assert auto.dtype == torch.float64 and auto.device == x.device


def test_fem_along_layers_converges_to_the_cosh_profile():
    x = layers(8, (2, 3, 4))
    exact = brinkman_layer_flux(3 / 8, 0.02)
    errors = [
        permeability(x, refine=r, method="fem", solid_permeability=0.02)[0, 0].item() / exact - 1
        for r in (1, 2)
    ]
    assert abs(errors[-1]) < 1e-5
    assert math.log2(abs(errors[0] / errors[1])) > 3.0  # P2 velocity: fourth order in k


def test_kappa_to_zero_recovers_the_stokes_mac_values():
    # the interface transmissibility → 2 (ghost wall) and every face touching the solid → 0, so
    # the κ_s → 0 limit is the Stokes MAC discretization itself; the difference is the slip
    # length ℓ = √κ_s of the Brinkman layer: |Δk| / k ∝ √κ_s
    x = smoothed_noise(4, 16, seed=2)
    x = x[percolates(x).all(-1)][:1]
    assert x.shape[0] == 1
    k0 = permeability(x)[0]
    diffs = []
    for kappa in (1e-6, 1e-8, 1e-10):
        k = permeability(x, solid_permeability=kappa)[0]
        diffs.append((k - k0).abs().max().item() / k0.abs().max().item())
    assert diffs[-1] < 1e-3
    for coarse, fine in zip(diffs[:-1], diffs[1:]):
        assert 5.0 < coarse / fine < 20.0  # ×100 in κ_s: ×10 in the difference


def test_kappa_to_zero_blocked_direction_vanishes_like_kappa():
    x = layers(12, (3, 4, 5))  # blocked along y
    for kappa in (1e-6, 1e-9):
        k = permeability(x, solid_permeability=kappa)
        assert k[1, 1].item() == pytest.approx(kappa / 0.75, rel=1e-8)
    assert permeability(x)[1, 1].item() == 0.0


def test_fem_kappa_to_zero_recovers_the_stokes_fem_values():
    x = torch.ones(8, 8, dtype=torch.float64)
    x[2:6, 3:6] = 0.0  # obstacle without corner contacts
    k0 = permeability(x, method="fem")
    k = permeability(x, method="fem", solid_permeability=1e-9)
    assert torch.allclose(k, k0, rtol=1e-3, atol=0)


@pytest.mark.slow
def test_mac_and_taylor_hood_agree_after_refinement():
    x = smoothed_noise(2, 12, seed=7)
    kappa = 2e-3  # ℓ = 0.045: resolved at 12 × 8 = 96 cells
    mac = permeability(x, refine=8, solid_permeability=kappa)
    fem = permeability(x, refine=4, method="fem", solid_permeability=kappa)
    # measured: 0.3 % at MAC refine 4, 0.05 % (of max |k|) at refine 8
    assert float((mac - fem).abs().max() / fem.abs().max()) < 2e-3


# ------------------------------------------------------------------ symmetries


@pytest.mark.parametrize("method", ["mac", "fem"])
def test_transposition_swaps_the_tensor(method):
    x = smoothed_noise(2, 10, seed=3)
    k = permeability(x, method=method, solid_permeability=1e-3)
    kt = permeability(x.transpose(-1, -2), method=method, solid_permeability=1e-3)
    assert torch.allclose(kt, k.flip(-1).flip(-2), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("solver", MAC_SOLVERS)
def test_tensor_is_symmetric_positive_definite(solver):
    x = smoothed_noise(4, 16, seed=5)
    k = permeability(x, solid_permeability=0.02 / 16**2, solver=solver)
    assert torch.allclose(k, k.transpose(-1, -2), rtol=1e-8, atol=0)
    assert bool((torch.linalg.eigvalsh(k) > 0).all())


def test_per_image_kappa_matches_separate_calls():
    x = smoothed_noise(6, 12, seed=1).reshape(2, 3, 12, 12)
    kappa = torch.tensor([[0.0], [1e-3]]) + torch.tensor([0.0, 2e-4, 5e-3])  # (2, 3)
    k = permeability(x, solid_permeability=kappa)
    assert k.shape == (2, 3, 2, 2)
    for a in range(2):
        for b in range(3):
            single = permeability(x[a, b], solid_permeability=float(kappa[a, b]))
            assert torch.allclose(k[a, b], single, rtol=1e-12, atol=0)
    # broadcasting a (3,) array over the (2, 3) batch, numpy input
    k = permeability(x.numpy(), solid_permeability=np.array([1e-3, 2e-3, 3e-3]))
    assert torch.allclose(k[1, 2], permeability(x[1, 2], solid_permeability=3e-3), rtol=1e-12)


def test_log_permeability_keeps_void_percolation_flags_and_never_floors():
    x = torch.stack([layers(12, (3, 4, 5)), torch.zeros(12, 12, dtype=torch.float64)])
    kappa = 0.02 / 12**2
    m, flags = log_permeability(x, return_percolation=True, solid_permeability=kappa)
    assert flags.tolist() == percolates(x).tolist() == [[True, False], [False, False]]
    assert bool((m > -20.0).all())
    assert m[0, 1].item() == pytest.approx(math.log(kappa / 0.75), rel=1e-9)
    assert m[1].tolist() == pytest.approx([math.log(kappa)] * 2, rel=1e-9)
    # with κ_s = 0 the same images hit the floor where they are blocked
    m0 = log_permeability(x)
    assert m0[0, 1].item() == -20.0 and m0[1].tolist() == [-20.0, -20.0]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "bad", [-1e-3, float("nan"), float("inf"), [1e-3, -1.0], np.ones(4), np.ones((3, 1, 2)), "a",
            True]
)
def test_bad_solid_permeability_is_refused(bad):
    with pytest.raises(ValueError, match="solid_permeability"):
        permeability(torch.zeros(3, 6, 6), solid_permeability=bad)


def test_all_void_image_is_infinite_even_with_brinkman_solid():
    with pytest.raises(ValueError, match="all-fluid"):
        permeability(torch.ones(6, 6), solid_permeability=1e-3)


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="solver"):
        permeability(torch.zeros(6, 6), solid_permeability=1e-3, solver="lu")


@pytest.mark.parametrize("fn", [permeability, log_permeability, extrapolate_permeability])
def test_volume_is_refused_with_ndim_3(fn):
    with pytest.raises(ValueError, match="3-D volume"):
        fn(torch.zeros(6, 6, 6), ndim=3)
    with pytest.raises(ValueError, match="ndim"):
        fn(torch.zeros(6, 6), ndim=1)
