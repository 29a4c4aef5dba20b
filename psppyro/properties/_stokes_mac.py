"""Staggered-grid (MAC) finite-volume Stokes solver for one periodic binary image (private kernel).

Unknowns on the n × n pixel grid (pixel size h = 1/n, row index i along axis -2 = "y", column index
j along axis -1 = "x"):

- ``u[i, j]`` on the vertical face between cells (i, j-1) and (i, j): active when both are fluid;
- ``v[i, j]`` on the horizontal face between cells (i-1, j) and (i, j): active when both are fluid;
- ``q[i, j] = h p[i, j]`` at the centre of every fluid cell, one value per component pinned to 0.

Momentum (multiplied by h²) on every active face, ``L u + G q = h² f``, with the five-point
stencil ``L`` (4 on the diagonal, −1 per neighbour).  A neighbouring face that is inactive carries
either a no-penetration value 0 at distance h (the face touches one solid cell: it *is* a wall
face), or, when both cells beside it are solid, a no-slip wall half a cell away, imposed by the
ghost value −u (diagonal +1).  Continuity ``Gᵀ u = 0`` holds cell by cell, so the discrete velocity
is exactly divergence-free; because faces, not corners, carry velocity, pixels that touch only at a
corner never exchange fluid.  The saddle-point matrix ``[[L, G], [Gᵀ, 0]]`` is symmetric; it is
factorized once (SuperLU) and solved for the two body forces.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

__all__ = ["solve_mac", "solve_saddle"]

_EPSILON = 1e-8  # shift of the pressure block (relative to the O(1) momentum stencil)


@lru_cache(maxsize=16)
def _neighbours(n):
    """Flat indices of the periodic neighbours of every cell of an n × n grid.

    Returns a dict ``{(axis, shift): index}`` such that ``a.ravel()[index]`` equals
    ``np.roll(a, shift, axis).ravel()`` (the value ``shift`` cells back along ``axis``).
    """
    i, j = np.divmod(np.arange(n * n), n)
    return {
        (0, 1): ((i - 1) % n) * n + j,
        (0, -1): ((i + 1) % n) * n + j,
        (1, 1): i * n + (j - 1) % n,
        (1, -1): i * n + (j + 1) % n,
    }


def _face_momentum(fid, both_solid, axis_along, nbr, rows, cols, vals, diag):
    """Append the five-point stencil of one velocity component to the COO lists.

    ``fid`` (flat) holds the unknown index of each face (−1 if inactive); ``both_solid`` (flat)
    marks face positions whose two adjacent cells are solid (a wall half a cell away from a
    tangential neighbour).  ``axis_along`` is the axis the component points along (neighbours along
    it are never ghosts: an inactive neighbour there is a wall face with value 0).
    """
    active = np.flatnonzero(fid >= 0)
    me = fid[active]
    axis_across = 1 - axis_along
    for (axis, _), index in nbr.items():
        nb = fid[index[active]]
        has = nb >= 0
        rows.append(me[has])
        cols.append(nb[has])
        vals.append(np.full(int(has.sum()), -1.0))
        if axis == axis_across:
            diag[me] += both_solid[index[active]]


def solve_mac(fluid, components, return_velocity=False):
    """Permeability tensor of one periodic image by MAC finite volumes.

    Args:
        fluid: bool array (n, n), True = fluid, already stripped of components that percolate in
            no direction (every remaining component must percolate in at least one).
        components: int array (n, n), periodic face-connected component label (> 0) of each fluid
            cell, 0 on solid.
        return_velocity: also return the face velocities (for tests and plots).

    Returns:
        float64 array (2, 2): ``k[a, b] = <u_a>`` for unit body force along b (a, b = x, y).
        With ``return_velocity`` also ``(u, v)``: arrays (2, n, n) indexed by force direction;
        ``u[b, i, j]`` lives on the left face and ``v[b, i, j]`` on the top face of cell (i, j)
        (0 on inactive faces).
    """
    n = fluid.shape[0]
    h = 1.0 / n
    nbr = _neighbours(n)
    cell = fluid.ravel()
    left = cell[nbr[(1, 1)]]  # cell (i, j-1)
    down = cell[nbr[(0, 1)]]  # cell (i-1, j)
    u_act = cell & left
    v_act = cell & down
    nu = int(u_act.sum())
    nv = int(v_act.sum())
    nvel = nu + nv

    uid = np.full(n * n, -1, dtype=np.int64)
    uid[u_act] = np.arange(nu)
    vid = np.full(n * n, -1, dtype=np.int64)
    vid[v_act] = nu + np.arange(nv)

    # one pinned pressure per component: its first cell in C order
    flat_cells = np.flatnonzero(cell)
    _, first = np.unique(components.ravel()[flat_cells], return_index=True)
    p_act = cell.copy()
    p_act[flat_cells[first]] = False
    npres = int(p_act.sum())
    pid = np.full(n * n, -1, dtype=np.int64)
    pid[p_act] = nvel + np.arange(npres)

    size = nvel + npres
    rows, cols, vals = [], [], []
    diag = np.full(nvel, 4.0)
    _face_momentum(uid, ~cell & ~left, 1, nbr, rows, cols, vals, diag)
    _face_momentum(vid, ~cell & ~down, 0, nbr, rows, cols, vals, diag)
    rows.append(np.arange(size))
    cols.append(np.arange(size))
    vals.append(np.concatenate([diag, np.full(npres, -_EPSILON)]))  # shifted: see solve_saddle

    # pressure gradient G (face rows, cell columns) and its transpose (continuity rows)
    for fid, axis in ((uid, 1), (vid, 0)):
        active = np.flatnonzero(fid >= 0)
        face = fid[active]
        for index, sign in ((active, 1.0), (nbr[(axis, 1)][active], -1.0)):
            pc = pid[index]
            has = pc >= 0
            rows += [face[has], pc[has]]
            cols += [pc[has], face[has]]
            vals += [np.full(int(has.sum()), sign)] * 2

    matrix = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    rhs = np.zeros((size, 2))
    rhs[:nu, 0] = h * h
    rhs[nu:nvel, 1] = h * h
    sol = solve_saddle(matrix, rhs, nvel, epsilon=_EPSILON, shifted=True)
    k = np.empty((2, 2))
    k[0] = sol[:nu].sum(axis=0) / (n * n)
    k[1] = sol[nu:nvel].sum(axis=0) / (n * n)
    if not return_velocity:
        return k
    u = np.zeros((2, n * n))
    v = np.zeros((2, n * n))
    u[:, u_act] = sol[:nu].T
    v[:, v_act] = sol[nu:nvel].T
    return k, u.reshape(2, n, n), v.reshape(2, n, n)


def solve_saddle(matrix, rhs, n_velocity, epsilon, shifted=False, max_iter=30,
                 backward_error=False):
    """Solve the symmetric saddle-point system exactly, factorizing a quasi-definite neighbour.

    SuperLU with a symmetric fill-reducing ordering needs nonzero pivots on the diagonal; the zero
    pressure block is therefore shifted to −ε I (ε ≈ 1e-8 of the Schur complement's scale: a
    symmetric quasi-definite matrix whose LDLᵀ-type factorization is stable without pivoting and
    has about half the fill of a pivoted COLAMD factorization).  Iterative refinement with the
    *exact* matrix then removes the O(ε) perturbation (each sweep gains about 5–8 digits; it stops
    when the residual reaches round-off), so the returned solution satisfies the unperturbed
    equations — in particular Gᵀ u = 0 — to round-off.

    ``matrix`` is the exact CSC matrix, or (``shifted=True``) the already shifted one.  With
    ``backward_error=True`` the residual is measured against max(|b|, |A| |x|) (the round-off
    level when the solution is much larger than the right-hand side, e.g. a very permeable
    Brinkman solid) instead of |b|.
    """
    if not shifted:
        shift = np.zeros(matrix.shape[0])
        shift[n_velocity:] = -epsilon
        matrix = (matrix + sp.diags(shift)).tocsc()
    lu = splu(
        matrix,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    sol = lu.solve(rhs)
    scale = np.abs(rhs).max()
    if backward_error:
        scale = max(scale, float((abs(matrix) @ np.abs(sol)).max()))
    previous = np.inf
    for _ in range(max_iter):
        residual = rhs - matrix @ sol  # the exact matrix is the shifted one + ε on pressures
        residual[n_velocity:] -= epsilon * sol[n_velocity:]
        size = np.abs(residual).max() / scale
        # stop at the round-off level of the residual, or when stagnating close to it
        if size <= 1e-13 or (size <= 1e-10 and size > 0.5 * previous):
            return sol
        sol += lu.solve(residual)
        previous = size
    raise RuntimeError(
        f"Stokes saddle-point solve did not converge: iterative refinement stalled after "
        f"{max_iter} sweeps (relative residual {size:.3g})"
    )
