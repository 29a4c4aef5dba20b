"""Batched preconditioned conjugate gradients against dense solves."""

import pytest
import torch

from psppyro.properties._krylov import batched_pcg, raise_if_not_converged


def _spd_batch(batch, n, cond_scale, seed, dtype=torch.float64):
    """Random SPD matrices Q diag(λ) Qᵀ with λ log-uniform in [1, cond_scale]."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(batch, n, n, generator=g, dtype=dtype))
    lam = cond_scale ** torch.rand(batch, n, generator=g, dtype=dtype)
    A = Q @ torch.diag_embed(lam) @ Q.mT
    b = torch.randn(batch, n, generator=g, dtype=dtype)
    return A, b


def _matvec(A):
    return lambda v: (A @ v.reshape(v.shape[0], -1, 1)).reshape(v.shape)


def test_matches_dense_solve_unpreconditioned():
    A, b = _spd_batch(4, 20, 100.0, seed=0)
    x, info = batched_pcg(_matvec(A), b, rtol=1e-12, maxiter=200)
    x_ref = torch.linalg.solve(A, b)
    assert info["converged"].all()
    assert torch.allclose(x, x_ref, rtol=0, atol=1e-9 * x_ref.abs().max())
    # The reported residual is the true one (up to round-off of the recursion).
    true_res = (b - _matvec(A)(x)).norm(dim=1) / b.norm(dim=1)
    assert (true_res <= 1e-11).all()
    assert torch.allclose(info["residual"], true_res, atol=1e-12)


def test_jacobi_preconditioner_and_trailing_unknown_shape():
    # Unknown of shape (4, 5) per sample: inner products must reduce over both trailing dims.
    A, b = _spd_batch(3, 20, 1e3, seed=1)
    scales = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=A.dtype).repeat_interleave(5)
    D = torch.diag_embed(scales)
    A = D.sqrt() @ A @ D.sqrt()  # badly scaled: Jacobi helps
    diag = torch.diagonal(A, dim1=-2, dim2=-1).reshape(3, 4, 5)
    b4 = b.reshape(3, 4, 5)
    x, info = batched_pcg(_matvec(A), b4, apply_M=lambda r: r / diag, rtol=1e-11, maxiter=500)
    _, info_plain = batched_pcg(_matvec(A), b4, rtol=1e-11, maxiter=500)
    assert x.shape == (3, 4, 5)
    assert torch.allclose(x.reshape(3, 20), torch.linalg.solve(A, b), atol=1e-8)
    assert (info["iterations"] < info_plain["iterations"]).all()


def test_per_sample_convergence_freezes_converged_samples():
    # Sample 0 is the identity (one iteration); sample 1 needs many. Sample 0's answer and iteration
    # count must not change while sample 1 keeps iterating.
    A, b = _spd_batch(2, 30, 1e4, seed=2)
    A[0] = torch.eye(30, dtype=A.dtype)
    x, info = batched_pcg(_matvec(A), b, rtol=1e-10, maxiter=500)
    assert info["iterations"][0] == 1
    assert info["iterations"][1] > 10
    assert torch.equal(x[0], b[0])
    assert info["converged"].all()


def test_zero_rhs_and_initial_guess():
    A, b = _spd_batch(2, 10, 10.0, seed=3)
    b[1] = 0.0
    x, info = batched_pcg(_matvec(A), b, rtol=1e-12)
    assert torch.equal(x[1], torch.zeros_like(x[1]))
    assert info["iterations"][1] == 0 and info["converged"].all()
    x_ref = torch.linalg.solve(A, b)
    x2, info2 = batched_pcg(_matvec(A), b, x0=x_ref, rtol=1e-8)
    assert (info2["iterations"] == 0).all() and torch.allclose(x2, x_ref)


def test_singular_consistent_system_periodic_laplacian():
    # 1-D periodic Laplacian: null space = constants; a mean-zero b is consistent and CG finds the
    # mean-zero solution (CG stays in the range when started from 0).
    n = 16
    lap = lambda v: 2 * v - v.roll(1, -1) - v.roll(-1, -1)  # noqa: E731
    g = torch.Generator().manual_seed(4)
    b = torch.randn(3, n, generator=g, dtype=torch.float64)
    b = b - b.mean(-1, keepdim=True)
    x, info = batched_pcg(lap, b, rtol=1e-12, maxiter=100)
    assert info["converged"].all()
    assert torch.allclose(lap(x), b, atol=1e-10)
    assert torch.allclose(x.mean(-1), torch.zeros(3, dtype=x.dtype), atol=1e-12)


def test_not_converged_is_reported_and_raises():
    A, b = _spd_batch(3, 40, 1e6, seed=5)
    x, info = batched_pcg(_matvec(A), b, rtol=1e-12, maxiter=2)
    assert not info["converged"].any()
    assert (info["iterations"] == 2).all()
    with pytest.raises(RuntimeError, match=r"maxiter=2.*sample 0: residual"):
        raise_if_not_converged(info, 1e-12, 2, what="test")
    with pytest.raises(RuntimeError, match=r"sample \(1, 0\)"):
        raise_if_not_converged(info, 1e-12, 2, sample_shape=(3, 1))
    with pytest.raises(RuntimeError, match="3 of 3 samples"):
        batched_pcg(_matvec(A), b, rtol=1e-12, maxiter=2, raise_on_failure=True)


def test_float32():
    A, b = _spd_batch(2, 10, 10.0, seed=6, dtype=torch.float32)
    x, info = batched_pcg(_matvec(A), b, rtol=1e-5)
    assert x.dtype == torch.float32 and info["converged"].all()
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"rtol": 0.0}, "rtol"), ({"maxiter": 0}, "maxiter"), ({"x0": torch.zeros(3)}, "x0")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        batched_pcg(lambda v: v, torch.ones(2, 3), **kwargs)
