r"""Darcy–Brinkman–Stokes (DBS) MAC solvers on the whole periodic grid (private kernel).

The micro-continuum problem of :mod:`psppyro.properties.permeability` with a solid of finite
permeability κ_s > 0: every face of the n × n periodic grid carries a velocity unknown and every
cell a pressure, for every image the same sparsity pattern.  Unknowns as in
:mod:`~psppyro.properties._stokes_mac` (``u[i, j]`` on the left face, ``v[i, j]`` on the top face of
cell (i, j), ``q = h p`` at cell centres), momentum multiplied by h²:

.. math::

    \sum_{e \ni a} T_e\,(u_a - u_{b(e)}) + h^2 \beta_a u_a + (G q)_a = h^2 f_a,
    \qquad G^T u = 0,

with

- the face drag :math:`\beta_a = (1/κ_1 + 1/κ_2)/2`, the arithmetic mean of 1/κ of the two cells
  sharing face a (1/κ = 0 in the void, 1/κ_s in the solid).  A face inside the solid gets 1/κ_s,
  an interface face 1/(2 κ_s), a void face none: the drag is the exact cell-average of 1/κ over the
  face's control volume, which makes flow *across* a layered medium exact (k = κ_s / s) and sends
  every face touching a solid cell to zero velocity as κ_s → 0;
- edge transmissibilities :math:`T_e = 1` (the five-point stencil), except on a *tangential
  interface edge*, joining a face between two void cells to a parallel face between two solid
  cells, where

  .. math::  T_e = \frac{h}{h/2 + ℓ\,(1 - e^{-h/(2ℓ)})}, \qquad ℓ = \sqrt{κ_s}.

  This is the two-point flux of the interface shear stress through half a void cell (linear
  profile) in series with half a solid cell carrying a Brinkman boundary layer of length ℓ
  (velocity and shear stress continuous at the interface, Neale & Nader 1974).  For a resolved
  layer (ℓ ≫ h) T → 1, the plain stencil; for ℓ → 0, T → 2, which is exactly the ghost value
  −u of the no-slip wall half a cell away in the Stokes MAC solver.

Together the two rules make the κ_s → 0 limit of this scheme *the* Stokes MAC discretization of
:mod:`~psppyro.properties._stokes_mac` (void faces see the same stencil, all other faces vanish),
while the resolved regime is the standard second-order DBS finite-volume scheme.

Two solvers:

- :func:`solve_dbs_direct`: assembles the symmetric saddle-point matrix and solves it with
  SuperLU (shifted pressure block + iterative refinement, :func:`~._stokes_mac.solve_saddle`): the
  reference, exact to round-off.
- :func:`solve_dbs_pcg`: batched, matrix-free projected conjugate gradients in torch on the
  image's device; see its docstring.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ._stokes_mac import solve_saddle

__all__ = ["interface_transmissibility", "solve_dbs_direct"]


def interface_transmissibility(kappa, n):
    """T of a tangential void–solid interface edge for solid permeability κ_s (cell units), h = 1/n.

    Example::

        >>> t0, t1 = interface_transmissibility(1e-16, 10), interface_transmissibility(1e6, 10)
        >>> round(t0, 6), round(t1, 4)        # ℓ ≪ h: the ghost wall; ℓ ≫ h: the plain stencil
        (2.0, 1.0)
    """
    h = 1.0 / n
    ell = math.sqrt(kappa)
    return h / (0.5 * h - ell * math.expm1(-0.5 * h / ell))


@lru_cache(maxsize=8)
def _pattern(n):
    """Index arrays of the fixed DBS sparsity pattern on an n × n periodic grid.

    Returns flat cell indices ``up`` (cell (i-1, j)) and ``left`` (cell (i, j-1)) of every cell.
    """
    i, j = np.divmod(np.arange(n * n), n)
    return ((i - 1) % n) * n + j, i * n + (j - 1) % n


def _coefficients(fluid, kappa):
    """Face drags (h²-scaled) and the transmissibilities of the 'up' and 'left' edges of every face.

    Returns ``(drag_u, drag_v, t_u_up, t_v_left)`` flat arrays of length n² (the edges along the
    component always have T = 1).
    """
    n = fluid.shape[-1]
    h = 1.0 / n
    up, left = _pattern(n)
    cell = fluid.ravel()
    inv = np.where(cell, 0.0, 1.0 / kappa)
    drag_u = h * h * 0.5 * (inv + inv[left])
    drag_v = h * h * 0.5 * (inv + inv[up])
    void_u, solid_u = cell & cell[left], ~cell & ~cell[left]
    void_v, solid_v = cell & cell[up], ~cell & ~cell[up]
    t_int = interface_transmissibility(kappa, n)
    # u faces: tangential neighbours are vertical (u(i-1, j)); v faces: horizontal (v(i, j-1))
    t_u_up = np.where((void_u & solid_u[up]) | (solid_u & void_u[up]), t_int, 1.0)
    t_v_left = np.where((void_v & solid_v[left]) | (solid_v & void_v[left]), t_int, 1.0)
    return drag_u, drag_v, t_u_up, t_v_left


def solve_dbs_direct(fluid, kappa, return_velocity=False):
    """Permeability tensor of one periodic image with solid permeability ``kappa`` > 0, sparse LU.

    Args:
        fluid: bool array (n, n), True = void (κ = ∞), False = solid (κ = ``kappa``).
        kappa: solid permeability in (cell length)², > 0.
        return_velocity: also return the face velocities ``(u, v)``, arrays (2, n, n) indexed by
            force direction (u on the left face, v on the top face of each cell).

    Returns:
        float64 array (2, 2): ``k[a, b] = <u_a>`` for a unit body force along b.
    """
    n = fluid.shape[-1]
    size_f = n * n
    h = 1.0 / n
    up, left = _pattern(n)
    drag_u, drag_v, t_u_up, t_v_left = _coefficients(fluid, kappa)
    faces = np.arange(size_f)
    u_id, v_id = faces, size_f + faces
    nvel = 2 * size_f
    # pressures: all cells but cell 0 (the constant null space)
    p_id = np.full(size_f, -1, dtype=np.int64)
    p_id[1:] = nvel + np.arange(size_f - 1)
    size = nvel + size_f - 1

    rows, cols, vals = [], [], []
    diag = np.concatenate([drag_u, drag_v])
    for a, b, t in (
        (u_id, u_id[up], t_u_up),  # u: tangential edge to u(i-1, j)
        (u_id, u_id[left], np.ones(size_f)),  # u: edge along x to u(i, j-1)
        (v_id, v_id[left], t_v_left),  # v: tangential edge to v(i, j-1)
        (v_id, v_id[up], np.ones(size_f)),  # v: edge along y to v(i-1, j)
    ):
        np.add.at(diag, a, t)
        np.add.at(diag, b, t)
        rows += [a, b]
        cols += [b, a]
        vals += [-t, -t]
    rows.append(np.arange(nvel))
    cols.append(np.arange(nvel))
    vals.append(diag)
    # pressure gradient (G q)_u = q(c) - q(left), (G q)_v = q(c) - q(up), and continuity Gᵀ
    for fid, other in ((u_id, left), (v_id, up)):
        for cells, sign in ((faces, 1.0), (other, -1.0)):
            pc = p_id[cells]
            has = pc >= 0
            rows += [fid[has], pc[has]]
            cols += [pc[has], fid[has]]
            vals += [np.full(int(has.sum()), sign)] * 2
    epsilon = 1e-8 / (1.0 + float(max(drag_u.max(), drag_v.max())))
    rows.append(nvel + np.arange(size_f - 1))
    cols.append(nvel + np.arange(size_f - 1))
    vals.append(np.full(size_f - 1, -epsilon))
    matrix = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    rhs = np.zeros((size, 2))
    rhs[:size_f, 0] = h * h
    rhs[size_f:nvel, 1] = h * h
    sol = solve_saddle(matrix, rhs, nvel, epsilon=epsilon, shifted=True)
    k = np.empty((2, 2))
    k[0] = sol[:size_f].mean(axis=0)
    k[1] = sol[size_f:nvel].mean(axis=0)
    if not return_velocity:
        return k
    return k, sol[:size_f].T.reshape(2, n, n), sol[size_f:nvel].T.reshape(2, n, n)
