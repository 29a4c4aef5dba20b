r"""Cross-check discretization of 2-D periodic elasticity with scikit-fem (private).

Each pixel of an (N2, N1) image is split into two triangles; the displacement fluctuation is
continuous piecewise quadratic (``ElementVector(ElementTriP2())``), the Lamé constants are constant
per pixel. Periodicity is imposed by identifying the dofs whose coordinates coincide modulo the unit
cell (a 0/1 prolongation matrix :math:`P`, :math:`K_{\rm per} = P^\top K P`); the rigid translations
are removed by fixing the fluctuation at the origin (it does not change strains). One sparse LU
factorization serves all load cases. The effective stiffness is the domain average of the stress,
:math:`\langle\sigma\rangle = \int_\Omega \mathbb{C}(\bar\varepsilon + \varepsilon(\tilde u))\,dx`
(|Ω| = 1), computed by exact (order-4) quadrature.

This is a second, independent discretization (different element, mesh, assembly and solver) used to
verify :func:`psppyro.properties.elasticity` (``method="fft"``); it is slower and not batched.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from skfem import Basis, BilinearForm, ElementTriP2, ElementVector, Functional, LinearForm, MeshTri
from skfem.helpers import ddot, sym_grad, trace

__all__ = ["elasticity_fem"]

# Voigt index -> (i, j) tensor component, with engineering shear: unit gamma_12 means eps_12 = 1/2.
_VOIGT_2D = ((0, 0), (1, 1), (0, 1))


def _macro_strain(k):
    """2x2 strain tensor of the unit Voigt strain e_k (engineering shear)."""
    E = np.zeros((2, 2))
    i, j = _VOIGT_2D[k]
    if i == j:
        E[i, i] = 1.0
    else:
        E[i, j] = E[j, i] = 0.5
    return E


@BilinearForm
def _stiffness(u, v, w):
    eu, ev = sym_grad(u), sym_grad(v)
    return w.lam * trace(eu) * trace(ev) + 2.0 * w.mu * ddot(eu, ev)


@LinearForm
def _macro_load(v, w):
    # -eps(v) : C : E with E stored as constants e11, e22, e12 (tensor components)
    ev = sym_grad(v)
    tr_E = w.e11 + w.e22
    E_ddot_ev = w.e11 * ev[0, 0] + w.e22 * ev[1, 1] + 2.0 * w.e12 * ev[0, 1]
    return -(w.lam * tr_E * trace(ev) + 2.0 * w.mu * E_ddot_ev)


def _mean_stress_forms():
    def component(i, j):
        @Functional
        def form(w):
            eps = sym_grad(w.u)
            e = [[w.e11 + eps[0, 0], w.e12 + eps[0, 1]], [w.e12 + eps[1, 0], w.e22 + eps[1, 1]]]
            tr = e[0][0] + e[1][1]
            return w.lam * tr * (1.0 if i == j else 0.0) + 2.0 * w.mu * e[i][j]

        return form

    return [component(i, j) for i, j in _VOIGT_2D]


def _periodic_prolongation(basis, n_cells, ncomp=2):
    """0/1 matrix P (n_dofs, n_periodic) mapping periodic dofs to the dofs of the open mesh."""
    # P2 dofs sit on a lattice of spacing h/2: integer keys after scaling by 2 N.
    coords = np.rint(basis.doflocs * 2 * np.asarray(n_cells)[:, None]).astype(np.int64)
    coords[0] %= 2 * n_cells[0]
    coords[1] %= 2 * n_cells[1]
    component = np.empty(basis.N, dtype=np.int64)
    for c, idx in enumerate(basis.split_indices()):
        component[idx] = c
    keys = (component * (2 * n_cells[1]) + coords[1]) * (2 * n_cells[0]) + coords[0]
    unique, periodic_index = np.unique(keys, return_inverse=True)
    P = sp.csr_matrix(
        (np.ones(basis.N), (np.arange(basis.N), periodic_index)), shape=(basis.N, unique.size)
    )
    # periodic dofs at the origin (one per component) are pinned to remove rigid translations
    origin = (coords[0] == 0) & (coords[1] == 0)
    pinned = np.unique(periodic_index[origin])
    if pinned.size != ncomp:
        raise RuntimeError(f"expected {ncomp} origin dofs, found {pinned.size}")
    return P, pinned


def _solve_one(image, lams, mus, columns):
    """Effective Voigt stiffness columns (3, len(columns)) of one 2-D binary image (NumPy)."""
    n2, n1 = image.shape
    mesh = MeshTri.init_tensor(np.linspace(0.0, 1.0, n1 + 1), np.linspace(0.0, 1.0, n2 + 1))
    basis = Basis(mesh, ElementVector(ElementTriP2()), intorder=4)
    # pixel of each triangle from its centroid: direction 1 = axis -1 (column j), 2 = axis -2 (row)
    centroid = mesh.p[:, mesh.t].mean(axis=1)
    col = np.minimum((centroid[0] * n1).astype(np.int64), n1 - 1)
    row = np.minimum((centroid[1] * n2).astype(np.int64), n2 - 1)
    phase = image[row, col].astype(np.int64)
    nqp = basis.X.shape[1]
    lam = np.repeat(np.asarray(lams)[phase][:, None], nqp, axis=1)
    mu = np.repeat(np.asarray(mus)[phase][:, None], nqp, axis=1)

    K = _stiffness.assemble(basis, lam=lam, mu=mu)
    P, pinned = _periodic_prolongation(basis, (n1, n2))
    free = np.setdiff1d(np.arange(P.shape[1]), pinned)
    Pf = P[:, free]
    # symmetric (minimum degree on A^T + A) ordering: ~5x faster than COLAMD on this SPD system
    lu = spla.splu(
        (Pf.T @ K @ Pf).tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}
    )
    forms = _mean_stress_forms()
    out = np.zeros((3, len(columns)))
    for c, k in enumerate(columns):
        E = _macro_strain(k)
        consts = {"e11": E[0, 0], "e22": E[1, 1], "e12": E[0, 1]}
        f = _macro_load.assemble(basis, lam=lam, mu=mu, **consts)
        u = Pf @ lu.solve(Pf.T @ f)
        field = basis.interpolate(u)
        for r, form in enumerate(forms):
            out[r, c] = form.assemble(basis, u=field, lam=lam, mu=mu, **consts)
    return out


def elasticity_fem(xs, lams, mus, columns):
    """Effective 2-D stiffness by P2 finite elements for a flat batch ``xs`` (B, N2, N1).

    Args:
        xs: binary tensor (B, N2, N1) (already refined).
        lams: in-plane Lamé lambda of phases 0 and 1 (plane-stress value for plane stress).
        mus: shear moduli of phases 0 and 1.
        columns: Voigt indices of the load cases.

    Returns:
        float64 CPU tensor (B, 3, len(columns)).

    Example::

        >>> C = elasticity_fem(torch.zeros(1, 2, 2), (0.5, 0.5), (0.25, 0.25), (0, 1, 2))
        >>> [round(v, 12) for v in C[0].diagonal().tolist()]
        [1.0, 1.0, 0.25]
    """
    images = xs.detach().to("cpu").numpy()
    return torch.as_tensor(
        np.stack([_solve_one(img, lams, mus, tuple(columns)) for img in images]),
        dtype=torch.float64,
    )
