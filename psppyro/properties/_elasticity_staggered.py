r"""Staggered-grid 2-D periodic elasticity, the lower side of the bracket (private).

The counterpart of the finite-volume conductivity scheme for plane elasticity (the staggered grid of
Schneider, Ospald & Kabel 2016, on the pixel grid). Unknowns: the fluctuation :math:`u_1` on the
faces normal to direction 1 (the right face of every pixel) and :math:`u_2` on the faces normal to
direction 2 (the upper face). With the forward difference :math:`D_a` along direction :math:`a`
(pixel units, periodic) and its adjoint :math:`D_a^{\mathsf T}`,

.. math::

    \varepsilon_{11} = -D_1^{\mathsf T}u_1,\quad \varepsilon_{22} = -D_2^{\mathsf T}u_2
    \ \text{(pixel centres)},\qquad
    \gamma_{12} = D_2 u_1 + D_1 u_2\ \text{(pixel corners)} .

The normal stresses use the pixel's moduli, the shear stress at a corner the *harmonic* mean of
the shear moduli of the four pixels that meet there (exact for laminates: the shear across a layer
interface is a series connection). The discrete energy
:math:`\tfrac12\sum_{\rm pixels}\big(\lambda(\varepsilon_{11} + \varepsilon_{22})^2 +
2\mu(\varepsilon_{11}^2 + \varepsilon_{22}^2)\big) + \tfrac12\sum_{\rm corners}\mu_c\gamma_{12}^2`
with the macroscopic strain added gives :math:`A u = b`; the effective stiffness is the mean stress
(normal stresses over pixels, shear over corners). Two stiff pixels that touch only at a corner
share no face and a soft corner modulus, so, like the finite volumes for conductivity, this scheme
under-estimates media with corner contacts, while the conforming Q1 elements over-estimate them
(``docs/architecture.md`` § "Verification and errors").

Solver: batched CG (:func:`~psppyro.properties._krylov.batched_pcg`) preconditioned with the exact
inverse of the same operator for a homogeneous reference medium, a Hermitian 2×2 block per wave
vector: with :math:`a = e^{\mathrm i\xi_1} - 1`, :math:`c = e^{\mathrm i\xi_2} - 1`,

.. math::

    \hat A(\xi) = \begin{pmatrix} (\lambda + 2\mu)|a|^2 + \mu|c|^2 & (\lambda + \mu)\,a\bar c \\
    (\lambda + \mu)\,\bar a c & (\lambda + 2\mu)|c|^2 + \mu|a|^2 \end{pmatrix},

whose determinant
:math:`(\lambda + 2\mu)\mu(|a|^4 + |c|^4) + (2\lambda\mu + 4\mu^2)|a|^2|c|^2` vanishes
only at :math:`\xi = 0` (rigid translations, set to zero).

Reference: M. Schneider, F. Ospald & M. Kabel, *Computational homogenization of elasticity on a
staggered grid*, Int. J. Numer. Methods Eng. 105 (2016) 693–720.
"""

from __future__ import annotations

import math

import torch

from ._krylov import batched_pcg
from .conductivity import _add_forward_diff_T_, _forward_diff

__all__ = ["elasticity_staggered"]


def _corner_harmonic(mu):
    """Harmonic mean of mu over the four pixels meeting at each pixel's upper-right corner."""
    inv = 1.0 / mu
    s = inv + inv.roll(-1, dims=-1) + inv.roll(-1, dims=-2) + inv.roll((-1, -1), dims=(-1, -2))
    return 4.0 / s


class _Staggered:
    """The operator for lam, mu of shape (B, rows, cols); vectors (B, L, 2, rows, cols)."""

    def __init__(self, lam, mu):
        self.lam = lam.unsqueeze(1)  # (B, 1, rows, cols)
        self.mu = mu.unsqueeze(1)
        self.mu_c = _corner_harmonic(mu).unsqueeze(1)

    def strains(self, u):
        """(e11, e22, g12) of fluctuations u (B, L, 2, rows, cols), each (B, L, rows, cols)."""
        u1, u2 = u[:, :, 0], u[:, :, 1]
        e11 = -_add_forward_diff_T_(torch.zeros_like(u1), u1, 0)
        e22 = -_add_forward_diff_T_(torch.zeros_like(u2), u2, 1)
        g12 = _forward_diff(u1, 1) + _forward_diff(u2, 0)
        return e11, e22, g12

    def stresses(self, e11, e22, g12):
        tr = self.lam * (e11 + e22)
        return tr + 2.0 * self.mu * e11, tr + 2.0 * self.mu * e22, self.mu_c * g12

    def forces(self, s11, s22, s12):
        """Adjoint of :meth:`strains` applied to the stresses: (B, L, 2, rows, cols)."""
        f1 = -_forward_diff(s11, 0)
        _add_forward_diff_T_(f1, s12, 1)
        f2 = -_forward_diff(s22, 1)
        _add_forward_diff_T_(f2, s12, 0)
        return torch.stack([f1, f2], dim=2)

    def apply(self, u):
        return self.forces(*self.stresses(*self.strains(u)))


def _preconditioner(lam0, mu0, grid, dtype, device):
    rows, cols = grid
    xi1 = 2.0 * math.pi * torch.fft.rfftfreq(cols, dtype=dtype, device=device)
    xi2 = 2.0 * math.pi * torch.fft.fftfreq(rows, dtype=dtype, device=device)[:, None]
    a = torch.exp(1j * xi1) - 1.0
    c = torch.exp(1j * xi2) - 1.0
    a2, c2 = (a.abs() ** 2).expand(rows, -1), (c.abs() ** 2).expand(-1, a.shape[0])
    A11 = (lam0 + 2.0 * mu0) * a2 + mu0 * c2
    A22 = (lam0 + 2.0 * mu0) * c2 + mu0 * a2
    A12 = (lam0 + mu0) * a * c.conj()
    det = A11 * A22 - A12.abs() ** 2
    ok = det > 1e-12 * (lam0 + 2.0 * mu0) ** 2
    inv_det = torch.where(ok, 1.0 / torch.where(ok, det, 1.0), 0.0)
    M11, M22, M12 = A22 * inv_det, A11 * inv_det, -A12 * inv_det

    def apply(r):
        r1 = torch.fft.rfft2(r[:, 0])
        r2 = torch.fft.rfft2(r[:, 1])
        z1 = M11 * r1 + M12 * r2
        z2 = M12.conj() * r1 + M22 * r2
        return torch.stack([torch.fft.irfft2(z1, s=grid), torch.fft.irfft2(z2, s=grid)], dim=1)

    return apply


def elasticity_staggered(xs, lams, mus, reference, columns, rtol, maxiter):
    """Staggered-grid effective stiffness columns of a flat batch of 2-D images.

    Args:
        xs: float tensor (B, rows, cols) of 0/1 (already refined), in the solve's dtype.
        lams: in-plane Lamé lambda of phases 0 and 1.
        mus: shear moduli of phases 0 and 1.
        reference: ``(lam_0, mu_0)`` of the homogeneous preconditioner.
        columns: Voigt indices of the macroscopic strain load cases.
        rtol: relative residual of CG.
        maxiter: CG iteration limit.

    Returns:
        ``(C, info)``: C (B, 3, len(columns)); info tensors (B, len(columns)).

    Example::

        >>> import torch
        >>> C, _ = elasticity_staggered(torch.zeros(1, 4, 4, dtype=torch.float64), (0.5, 1.0),
        ...                             (0.25, 1.0), (0.5, 0.5), (0, 1, 2), 1e-10, 100)
        >>> [round(v, 12) for v in C[0].diagonal().tolist()]
        [1.0, 1.0, 0.25]
    """
    batch, grid = xs.shape[0], tuple(xs.shape[1:])
    opts = {"dtype": xs.dtype, "device": xs.device}
    L = len(columns)
    lam = lams[0] + (lams[1] - lams[0]) * xs
    mu = mus[0] + (mus[1] - mus[0]) * xs
    op = _Staggered(lam, mu)
    macro = torch.eye(3, **opts)[list(columns)]  # (L, 3)
    ones = torch.ones((batch, L) + grid, **opts)
    E = [macro[:, k].view(1, L, 1, 1) * ones for k in range(3)]
    b = -op.forces(*op.stresses(*E))
    shape = (batch, L, 2) + grid

    def apply_A(v):
        return op.apply(v.reshape(shape)).reshape((batch * L, 2) + grid)

    precond = _preconditioner(*reference, grid, **opts)
    u, info = batched_pcg(apply_A, b.reshape((batch * L, 2) + grid), precond, rtol=rtol,
                          maxiter=maxiter)
    e = op.strains(u.reshape(shape))
    s = op.stresses(*(ek + Ek for ek, Ek in zip(e, E)))
    C = torch.stack([sk.reshape(batch, L, -1).mean(-1) for sk in s], dim=1)  # (B, 3, L)
    return C, {key: value.reshape(batch, L) for key, value in info.items()}
