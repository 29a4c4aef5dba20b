r"""Batched preconditioned conjugate gradients (shared by the matrix-free homogenization solvers).

Many independent symmetric positive (semi-)definite systems :math:`A_s x_s = b_s`, one per sample
:math:`s` of a batch, are solved together with the preconditioned conjugate gradient method
(Hestenes & Stiefel 1952; Saad, *Iterative Methods for Sparse Linear Systems*, 2003, Alg. 9.1):

.. math::

    r_0 = b - A x_0,\quad z_0 = M r_0,\quad p_0 = z_0, \\
    \alpha_k = \frac{\langle r_k, z_k\rangle}{\langle p_k, A p_k\rangle},\quad
    x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k A p_k, \\
    z_{k+1} = M r_{k+1},\quad
    \beta_k = \frac{\langle r_{k+1}, z_{k+1}\rangle}{\langle r_k, z_k\rangle},\quad
    p_{k+1} = z_{k+1} + \beta_k p_k .

Every quantity carries the batch in dimension 0; inner products reduce over all trailing dimensions,
so the unknown may be an image, a stack of images, a displacement field … of any shape. Each
sample stops on its own relative residual :math:`\|r_s\|_2 / \|b_s\|_2 \le` ``rtol``: once
converged its step length is set to zero, so its iterate is frozen while the others continue (the
operator is still applied to the whole batch, which keeps the kernels large and the shapes static).
A sample with :math:`b_s = 0` has the exact solution :math:`x_s = 0` and is converged at once.

Singular operators (the periodic problems have the constants in their null space) are fine as long
as :math:`b` is consistent (orthogonal to the null space) and the preconditioner maps into the
range.

Example::

    >>> import torch
    >>> A = torch.tensor([[[4.0, 1.0], [1.0, 3.0]]], dtype=torch.float64)
    >>> b = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    >>> x, info = batched_pcg(lambda v: (A @ v.unsqueeze(-1)).squeeze(-1), b)
    >>> torch.allclose(x, torch.linalg.solve(A, b)), info["converged"].tolist()
    (True, [True])
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_int

__all__ = ["batched_pcg", "raise_if_not_converged"]


def _dot(u, v):
    """Per-sample inner product over all trailing dims: (B, ...) x (B, ...) -> (B,)."""
    batch = u.shape[0]
    return (u.reshape(batch, 1, -1) @ v.reshape(batch, -1, 1)).reshape(batch)


def raise_if_not_converged(info, rtol, maxiter, what="batched_pcg", sample_shape=None):
    """Raise ``RuntimeError`` naming the samples that did not reach ``rtol`` within ``maxiter``.

    Args:
        info: the ``info`` dict returned by :func:`batched_pcg`.
        rtol: the relative tolerance that was asked for.
        maxiter: the iteration limit that was used.
        what: the name of the calling solver, for the message.
        sample_shape: optional batch shape; flat sample indices are unravelled into it so the
            message names samples by their position in the caller's input.

    Raises:
        RuntimeError: if any entry of ``info["converged"]`` is False.

    Example::

        >>> info = {"converged": torch.tensor([True]), "residual": torch.tensor([1e-9]),
        ...         "iterations": torch.tensor([3])}
        >>> raise_if_not_converged(info, rtol=1e-8, maxiter=10)
    """
    failed = (~info["converged"]).nonzero().flatten().tolist()
    if not failed:
        return
    res = info["residual"]
    shown = failed[:8]
    if sample_shape is not None and len(sample_shape) > 0:
        idx = np.unravel_index(shown, tuple(sample_shape))
        names = [tuple(int(i[k]) for i in idx) for k in range(len(shown))]
    else:
        names = shown
    details = ", ".join(f"sample {n}: residual {float(res[i]):.3g}" for n, i in zip(names, shown))
    more = f" (and {len(failed) - len(shown)} more)" if len(failed) > len(shown) else ""
    raise RuntimeError(
        f"{what}: conjugate gradients did not reach the relative residual rtol={rtol:g} within "
        f"maxiter={maxiter} iterations for {len(failed)} of {res.shape[0]} samples: "
        f"{details}{more}. "
        f"Increase maxiter, loosen rtol, or use float64."
    )


def batched_pcg(
    apply_A, b, apply_M=None, x0=None, rtol=1e-8, maxiter=1000, raise_on_failure=False
):
    r"""Solve a batch of SPD systems ``A_s x_s = b_s`` by preconditioned conjugate gradients.

    Args:
        apply_A: callable mapping a tensor of shape ``b.shape`` to ``A x`` of the same shape, acting
            sample-wise along dimension 0 (each sample's operator symmetric positive semi-definite).
        b: right-hand sides, shape ``(B, *unknown_shape)``.
        apply_M: optional preconditioner ``r -> M r`` (SPD, same shape convention); identity if
            None.
        x0: optional initial guess, shape ``b.shape``; zeros if None.
        rtol: relative tolerance on ``||b - A x|| / ||b||`` per sample (> 0).
        maxiter: maximum number of iterations (>= 1).
        raise_on_failure: if True, raise ``RuntimeError`` (via :func:`raise_if_not_converged`) when
            some sample did not converge; otherwise report it in ``info`` only.

    Returns:
        ``(x, info)`` with ``x`` of shape ``b.shape`` and ``info`` a dict of tensors of shape
        ``(B,)``:
        ``iterations`` (int64, iterations each sample took), ``converged`` (bool) and ``residual``
        (the final relative residual of the recursively updated residual vector).

    Raises:
        ValueError: if ``b`` has no batch dimension, ``x0`` has the wrong shape, ``rtol <= 0`` or
            ``maxiter < 1``.
        RuntimeError: only with ``raise_on_failure=True``, naming the unconverged samples.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> Q = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
        >>> A = Q @ Q.mT + 5 * torch.eye(5, dtype=torch.float64)
        >>> b = torch.randn(3, 5, generator=g, dtype=torch.float64)
        >>> x, info = batched_pcg(lambda v: (A @ v[..., None])[..., 0], b, rtol=1e-12)
        >>> bool(torch.allclose(x, torch.linalg.solve(A, b), atol=1e-10))
        True
    """
    if not isinstance(b, torch.Tensor) or b.dim() < 1:
        raise ValueError("b must be a tensor of shape (B, *unknown_shape) with a batch dimension 0")
    if not (isinstance(rtol, (int, float)) and rtol > 0):
        raise ValueError(f"rtol must be a number > 0, got {rtol!r}")
    maxiter = check_int("maxiter", maxiter, minimum=1)
    if apply_M is None:
        def apply_M(r):
            return r

    batch = b.shape[0]
    view = (batch,) + (1,) * (b.dim() - 1)  # broadcast per-sample scalars over the unknown
    b_norm = _dot(b, b).sqrt()
    safe_b_norm = torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))

    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        if x0.shape != b.shape:
            raise ValueError(f"x0 must have shape {tuple(b.shape)} like b, got {tuple(x0.shape)}")
        x = x0.clone()
        r = b - apply_A(x)

    residual = _dot(r, r).sqrt() / safe_b_norm
    residual = torch.where(b_norm > 0, residual, torch.zeros_like(residual))
    active = residual > rtol
    iterations = torch.zeros(batch, dtype=torch.int64, device=b.device)

    z = apply_M(r)
    p = z.clone()
    rz = _dot(r, z)
    for _ in range(maxiter):
        if not bool(active.any()):
            break
        Ap = apply_A(p)
        pAp = _dot(p, Ap)
        ok = active & (pAp > 0)
        alpha = torch.where(ok, rz / torch.where(ok, pAp, torch.ones_like(pAp)), 0.0)
        x.addcmul_(alpha.view(view), p)
        r.addcmul_(alpha.view(view), Ap, value=-1)
        iterations = iterations + active.to(torch.int64)
        residual = torch.where(active, _dot(r, r).sqrt() / safe_b_norm, residual)
        active = active & (residual > rtol) & (pAp > 0)
        z = apply_M(r)
        rz_new = _dot(r, z)
        beta = torch.where(rz != 0, rz_new / torch.where(rz != 0, rz, torch.ones_like(rz)), 0.0)
        p.mul_(beta.view(view)).add_(z)
        rz = rz_new

    info = {"iterations": iterations, "converged": residual <= rtol, "residual": residual}
    if raise_on_failure:
        raise_if_not_converged(info, rtol, maxiter)
    return x, info
