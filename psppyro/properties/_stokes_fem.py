"""Taylor–Hood (P2/P1) Stokes solver for one periodic binary image with scikit-fem (private kernel).

The independent discretization of :mod:`psppyro.properties.permeability`.  Only fluid pixels are
meshed (two triangles per pixel, diagonal from the top-left to the bottom-right corner); the mesh is
made periodic with :meth:`skfem.MeshTri1DG.periodic`, which keeps element-wise coordinates and a
periodic topology.  Boundary facets of the fluid mesh are exactly the fluid/solid interfaces, where
all velocity dofs (vertices and edge midpoints) are set to 0.

Corner-only contacts.  Where two fluid pixels touch only at a corner (the other two pixels around
that grid point are solid), a shared mesh vertex would couple their continuous P1 pressures and,
across the periodic boundary, could even close a spurious loop.  We give each of the two pixels its
own copy of that vertex, so the mesh — and with it velocity and pressure — is disconnected there,
as the physical domain is.  Components that do not percolate are removed before meshing by the
caller, and one pressure dof per remaining component is pinned to 0 (the constant null space).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from skfem import Basis, BilinearForm, ElementTriP1, ElementTriP2, ElementVector, LinearForm, asm
from skfem.helpers import ddot, div, dot, grad
from skfem.mesh import MeshTri1, MeshTri1DG

from ._stokes_mac import solve_saddle

__all__ = ["solve_fem", "solve_fem_dbs"]


@BilinearForm
def _viscous(u, v, _):
    return ddot(grad(u), grad(v))


@BilinearForm
def _divergence(u, q, _):
    return div(u) * q


@BilinearForm
def _drag(u, v, w):
    return w["inv_kappa"] * dot(u, v)


@LinearForm
def _force_x(v, _):
    return v[0]


@LinearForm
def _force_y(v, _):
    return v[1]


@contextmanager
def _quiet_skfem_mesh():
    """Silence scikit-fem's "Transforming over 1000 vertices to C_CONTIGUOUS" log line."""
    logger = logging.getLogger("skfem.mesh.mesh")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fluid_mesh(fluid):
    """Periodic triangulation of the fluid pixels, split at corner-only contacts.

    Returns the mesh and, per element, the (row, column) of its pixel.
    """
    n = fluid.shape[0]
    rows, cols = np.nonzero(fluid)
    # the four pixels around grid point (a, b), which is the top-left corner of pixel (a, b)
    nw = np.roll(fluid, (1, 1), axis=(0, 1))
    ne = np.roll(fluid, 1, axis=0)
    sw = np.roll(fluid, 1, axis=1)
    se = fluid
    split_a = nw & se & ~ne & ~sw  # NW and SE touch at the corner only
    split_b = ne & sw & ~nw & ~se  # NE and SW touch at the corner only

    # corners of pixel (i, j): (grid point offset, role of the pixel at that grid point)
    corners = {}
    for name, (da, db) in {"tl": (0, 0), "tr": (0, 1), "bl": (1, 0), "br": (1, 1)}.items():
        a, b = rows + da, cols + db
        pa, pb = a % n, b % n
        # the copy of a split grid point goes to the NW pixel (split_a) or the SW pixel (split_b)
        copy = (name == "br") & split_a[pa, pb] | (name == "tr") & split_b[pa, pb]
        corners[name] = (a, b, pa * n + pb + n * n * copy)

    geometric = {name: a * (n + 1) + b + (n + 1) ** 2 * (per >= n * n)
                 for name, (a, b, per) in corners.items()}
    periodic_of = {name: per for name, (_, _, per) in corners.items()}
    t_geo = np.stack([np.concatenate([geometric["tl"], geometric["tl"]]),
                      np.concatenate([geometric["tr"], geometric["br"]]),
                      np.concatenate([geometric["br"], geometric["bl"]])])
    t_per = np.stack([np.concatenate([periodic_of["tl"], periodic_of["tl"]]),
                      np.concatenate([periodic_of["tr"], periodic_of["br"]]),
                      np.concatenate([periodic_of["br"], periodic_of["bl"]])])

    used, t_new = np.unique(t_geo, return_inverse=True)
    t_new = t_new.reshape(t_geo.shape)
    grid = used % (n + 1) ** 2
    points = np.stack([grid % (n + 1), grid // (n + 1)]).astype(np.float64) / n  # (x, y)
    per_of_used = np.empty(len(used), dtype=np.int64)
    per_of_used[t_new.ravel()] = t_per.ravel()
    _, first, group = np.unique(per_of_used, return_index=True, return_inverse=True)
    representative = first[group]
    eliminate = np.flatnonzero(representative != np.arange(len(used)))

    base = MeshTri1(points, t_new.astype(np.int32), sort_t=False)
    with _quiet_skfem_mesh():
        mesh = MeshTri1DG.periodic(
            base, eliminate.astype(np.int32), representative[eliminate].astype(np.int32)
        )
    pixel = (np.concatenate([rows, rows]), np.concatenate([cols, cols]))
    return mesh, pixel


def solve_fem(fluid, components):
    """Permeability tensor of one periodic image by Taylor–Hood finite elements.

    Args:
        fluid: bool array (n, n), True = fluid, every component percolating in some direction.
        components: int array (n, n), periodic face-connected component label of each fluid cell.

    Returns:
        float64 array (2, 2): ``k[a, b] = ∫ u_a`` (cell area 1) for unit body force along b.
    """
    n = fluid.shape[0]
    mesh, pixel = _fluid_mesh(fluid)
    basis_u = Basis(mesh, ElementVector(ElementTriP2()), intorder=4)
    basis_p = basis_u.with_element(ElementTriP1())
    viscous = asm(_viscous, basis_u)
    divergence = asm(_divergence, basis_u, basis_p)
    loads = np.stack([asm(_force_x, basis_u), asm(_force_y, basis_u)], axis=1)

    # free velocity dofs: all but the wall; free pressure dofs: all but one per component
    wall = basis_u.get_dofs(mesh.boundary_facets()).all()
    free_u = np.setdiff1d(np.arange(basis_u.N), wall)
    labels = components[pixel]
    _, first_element = np.unique(labels, return_index=True)
    pinned = np.unique(basis_p.element_dofs[0, first_element])
    free_p = np.setdiff1d(np.arange(basis_p.N), pinned)

    a = viscous[free_u][:, free_u]
    b = divergence[free_p][:, free_u]
    matrix = sp.bmat([[a, b.T], [b, None]], format="csc")
    rhs = np.zeros((matrix.shape[0], 2))
    rhs[: len(free_u)] = loads[free_u]
    # the pressure block of the Schur complement scales like h², so does the regularization
    sol = solve_saddle(matrix, rhs, len(free_u), epsilon=1e-8 / n**2)
    velocity = sol[: len(free_u)]
    return loads[free_u].T @ velocity


def solve_fem_dbs(fluid, kappa):
    """Permeability tensor of one periodic image with a Brinkman solid, Taylor–Hood elements.

    The whole periodic cell is meshed (two triangles per pixel); the Darcy drag
    ``∫ κ⁻¹ u·v`` uses the pixel value of 1/κ (0 in the void, 1/``kappa`` in the solid) exactly,
    element by element.  No wall dofs; one pressure dof is pinned (the constant null space).

    Args:
        fluid: bool array (n, n), True = void, False = solid of permeability ``kappa`` > 0.
        kappa: solid permeability in (cell length)².

    Returns:
        float64 array (2, 2): ``k[a, b] = ∫ u_a`` for unit body force along b.
    """
    n = fluid.shape[0]
    mesh, pixel = _fluid_mesh(np.ones_like(fluid, dtype=bool))
    basis_u = Basis(mesh, ElementVector(ElementTriP2()), intorder=4)
    basis_p = basis_u.with_element(ElementTriP1())
    inv_kappa = np.where(fluid[pixel], 0.0, 1.0 / kappa)
    nqp = basis_u.X.shape[1]
    matrix_u = asm(_viscous, basis_u) + asm(
        _drag, basis_u, inv_kappa=np.repeat(inv_kappa[:, None], nqp, axis=1)
    )
    divergence = asm(_divergence, basis_u, basis_p)
    loads = np.stack([asm(_force_x, basis_u), asm(_force_y, basis_u)], axis=1)
    free_p = np.arange(1, basis_p.N)
    b = divergence[free_p]
    matrix = sp.bmat([[matrix_u, b.T], [b, None]], format="csc")
    rhs = np.zeros((matrix.shape[0], 2))
    rhs[: basis_u.N] = loads
    drag_scale = 1.0 + float(inv_kappa.max()) / n**2  # drag relative to the stiffness, per element
    sol = solve_saddle(matrix, rhs, basis_u.N, epsilon=1e-8 / (n**2 * drag_scale))
    return loads.T @ sol[: basis_u.N]
