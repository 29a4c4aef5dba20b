r"""Effective permeability of periodic two-phase images by Stokes flow (the PSP-GEN property).

Phase 1 is fluid (void), phase 0 is impermeable solid (DESIGN §3, the PoreSpy convention).  In the
periodic unit cell Ω = [0, 1)² (pixel size h = 1/N) we solve, for a unit body force along
direction j and unit viscosity,

.. math::

    -\nabla^2 \mathbf{u}^{(j)} + \nabla p^{(j)} = \mathbf{e}_j, \qquad
    \nabla\cdot\mathbf{u}^{(j)} = 0 \quad\text{in the fluid}, \qquad
    \mathbf{u}^{(j)} = 0 \quad\text{on the solid},

with u and p periodic, and define the permeability tensor by Darcy's law,
:math:`k_{ij} = \langle u^{(j)}_i \rangle = \int_\Omega u^{(j)}_i\,dx` (the average over the *whole*
cell, velocity zero in the solid), in units of (cell length)².  The tensor is symmetric positive
semi-definite.  Axis -1 of an image is "x" (horizontal, index j), axis -2 is "y" (vertical, index i,
increasing with the row index), so ``k[..., 0, 0] = k_xx`` and transposing an image swaps
``k_xx``/``k_yy`` and ``k_xy``/``k_yx``.

Two discretizations (DESIGN §5: each property has two):

- ``method="mac"`` (default, :mod:`~psppyro.properties._stokes_mac`): staggered-grid (MAC) finite
  volumes, u on vertical faces, v on horizontal faces, p at cell centres; a face touching a solid
  cell carries zero velocity, a tangential wall half a cell away is imposed with a ghost value
  (−u); the discrete velocity is exactly divergence-free and pixels touching only at a corner never
  exchange fluid.  One sparse LU per image, reused for both force directions.
- ``method="fem"`` (:mod:`~psppyro.properties._stokes_fem`): scikit-fem Taylor–Hood P2/P1 on a
  periodic triangulation of the fluid pixels (two triangles per pixel), with mesh vertices split at
  corner-only contacts so that neither velocity nor pressure couples through them.

Connectivity and percolation.  Fluid pixels are grouped into *periodic face-connected components*
(pixels sharing an edge, across the periodic boundary too).  A component percolates along x if it
contains a closed path with non-zero winding number along x (:func:`percolates`).  A component
that percolates along no direction carries no flow under a uniform force (u = 0, p = f·x is its
exact solution, single-valued because the component does not wrap), so both solvers delete such
pockets first; this also removes the singular pressure modes they would bring.  A direction in
which nothing percolates gets k exactly 0 in its row and column (rather than round-off noise); an
all-fluid cell has infinite permeability and raises ``ValueError``; an all-solid cell gives 0.

Accuracy (measured; ``benchmarks/bench_permeability.py`` and the slow tests).

- Plane Poiseuille channel of m pixels (width w = m h): Taylor–Hood reproduces k = w³/12 to
  round-off (P2 holds the parabola); MAC gives exactly (w³/12)(1 + 2/m²), the flux of its
  half-cell ghost wall (< 1 % from m = 15; +200 % for a one-pixel channel).
- Both methods over-estimate k at pixel level and decrease monotonically under subdivision
  (``refine=r``).  The error has two parts: the re-entrant solid corners (Stokes corner singularity
  λ ≈ 0.5445 at 270°, flux error ~ h^(2λ) = h^1.09) and, for MAC only, the h² wall error that
  dominates in one- or two-pixel throats.  Observed orders from successive differences: MAC
  1.2–1.5 (median 1.28 on 10 pspgen36 samples at r = 1, 2, 4; drifting down towards ≈ 1.2 at
  r = 4, 8, 16), Taylor–Hood 1.1–1.3 at r = 2, 4, 8 (pre-asymptotic, 0.3–1.4, at r = 1, 2, 3).
  :data:`MAC_ORDER` = 1.25 and :data:`FEM_ORDER` = 1.1 are the effective orders used by two-level
  Richardson extrapolation; three-level extrapolation uses (:data:`CORNER_ORDER`, 2).
- Pixel-level MAC error against the extrapolated value: see the benchmark's accuracy table
  (tens of per cent on pspgen36 samples, more where throats are one pixel wide).
- Agreement of the two discretizations on 10 smoothed-noise 24² samples: raw at refine 3, median
  12 %, max 27 % (MAC above Taylor–Hood); after extrapolation (MAC from refine 2, 3, 4; Taylor–Hood
  from 2, 4) median 0.09 %, max 2.1 % (slow tests).

References:
    F. H. Harlow and J. E. Welch, "Numerical calculation of time-dependent viscous incompressible
    flow of fluid with free surface", Phys. Fluids 8 (1965) — the MAC grid.
    C. Taylor and P. Hood, "A numerical solution of the Navier–Stokes equations using the finite
    element technique", Comput. Fluids 1 (1973).
    T. Gustafsson and G. D. McBain, "scikit-fem: A Python package for finite element assembly",
    JOSS 5 (2020).

Example::

    >>> import torch
    >>> x = torch.zeros(32, 32); x[:16, :] = 1.0        # horizontal channel, width w = 1/2
    >>> k = permeability(x)
    >>> round(float(k[0, 0]) / (0.5 ** 3 / 12), 4)      # MAC: 1 + 2 (h/w)² = 1 + 2/256
    1.0078
    >>> float(k[1, 1])                                  # no vertical path: exactly zero
    0.0
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from scipy import ndimage

from .._validation import as_tensor, check_binary, check_choice, check_positive
from ._stokes_mac import solve_mac

__all__ = [
    "CORNER_ORDER",
    "FEM_ORDER",
    "LOG_PERMEABILITY_FLOOR",
    "MAC_ORDER",
    "extrapolate_permeability",
    "log_permeability",
    "percolates",
    "permeability",
]

#: Floor of ``ln k`` (k in cell units) used by :func:`log_permeability` for non-percolating (k = 0)
#: or vanishingly permeable directions.  The least permeable *straight* percolating structure at
#: the paper resolutions is a one-pixel channel at 128²: w = 1/128 gives k = w³/12 ≈ 4.0e-8,
#: ln k ≈ −17.0 (MAC at refine 1: ×(1 + 2/m²) = ×3, ln k ≈ −15.9).  A floor of −20 (k ≈ 2e-9) lies
#: three units below it and far below the data (200 pspgen36 samples at refine 1: percolating
#: ln k in [−8.7, −3.7], 13 of 400 directions blocked; the benchmark prints the range).  A
#: tortuous one-pixel path of tortuosity τ has k ≈ w³/(12 τ²), so at 128² only paths with
#: τ ≳ 4.5 could reach the floor; such values are floored like blocked directions (the
#: ``percolates`` flags still tell them apart).
LOG_PERMEABILITY_FLOOR = -20.0

#: Effective convergence order in h of the MAC permeability under pixel subdivision, measured (see
#: the module docstring and ``benchmarks/bench_permeability.py --order``).
MAC_ORDER = 1.25

#: Effective convergence order in h of the Taylor–Hood permeability under pixel subdivision,
#: measured (module docstring).
FEM_ORDER = 1.1

#: Order of the re-entrant-corner error: a 270° solid corner gives Stokes flow the singular
#: exponent λ ≈ 0.5445, and a flux error ~ h^(2λ) (used by three-level extrapolation).
CORNER_ORDER = 1.09

_METHODS = ("mac", "fem")


# --------------------------------------------------------------------------------------------
# input checks


def _check_images(x):
    x = as_tensor("x", x)
    if not isinstance(x, torch.Tensor):  # pragma: no cover - as_tensor always returns a tensor
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"x must have at least 2 dims (..., N, N) for a 2-D image, got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != x.shape[-2] or x.shape[-1] < 2:
        raise ValueError(
            f"x must hold square images (..., N, N) with N >= 2 (the unit cell is a square), "
            f"got shape {tuple(x.shape)}"
        )
    check_binary("x", x)
    return x


def _check_refine(refine):
    if isinstance(refine, bool) or not isinstance(refine, Integral) or refine < 1:
        raise ValueError(f"refine must be an integer >= 1 (pixels are split refine × refine), "
                         f"got {refine!r}")
    return int(refine)


def _as_numpy_fluid(x):
    """Flatten the batch of a checked tensor into a bool numpy array (B, N, N)."""
    return x.detach().reshape(-1, *x.shape[-2:]).to("cpu").numpy() == 1


# --------------------------------------------------------------------------------------------
# connectivity


def _periodic_components(fluid):
    """Periodic face-connected components of a bool image and their wrapping directions.

    ``scipy.ndimage.label`` labels the components of the non-periodic image; they are then joined
    across the right/left and bottom/top edges by a union–find that also tracks each label's
    lattice offset relative to its root (the "unwrapped" position).  Joining two labels that are
    already in one component with an inconsistent offset closes a loop whose winding vector is
    that offset mismatch: the component wraps along every axis where it is non-zero.

    Returns:
        labels: int array like ``fluid``: root label of each pixel's component (0 on solid).
        wraps: bool array (num_labels + 1, 2): (x, y) wrapping of each root label.
    """
    lab, num = ndimage.label(fluid)
    parent = list(range(num + 1))
    offset = [(0, 0)] * (num + 1)  # (dx, dy) of a label relative to its parent
    wraps = np.zeros((num + 1, 2), dtype=bool)

    def find(a):
        dx = dy = 0
        while parent[a] != a:
            ox, oy = offset[a]
            dx, dy = dx + ox, dy + oy
            a = parent[a]
        return a, dx, dy

    for first, second, (ex, ey) in (
        (lab[:, -1], lab[:, 0], (1, 0)),  # right edge -> left edge: one cell further along x
        (lab[-1, :], lab[0, :], (0, 1)),  # last row -> first row: one cell further along y
    ):
        both = (first > 0) & (second > 0)
        if not both.any():
            continue
        pairs = np.unique(np.stack([first[both], second[both]], axis=1), axis=0)
        for a, b in pairs.tolist():
            ra, ax, ay = find(a)
            rb, bx, by = find(b)
            wx, wy = ax + ex - bx, ay + ey - by  # position of rb relative to ra
            if ra != rb:
                parent[rb] = ra
                offset[rb] = (wx, wy)
                wraps[ra] |= wraps[rb]
            else:
                wraps[ra] |= (wx != 0, wy != 0)
    roots = np.array([find(a)[0] for a in range(num + 1)])
    return roots[lab], wraps


def _percolating_fluid(fluid):
    """(fluid restricted to components that wrap in some direction, labels, wraps per direction)."""
    labels, wraps = _periodic_components(fluid)
    keep = wraps[labels].any(axis=-1) & fluid
    return keep, np.where(keep, labels, 0), wraps[labels[keep]].any(axis=0)


def percolates(x):
    """Whether a face-connected fluid path wraps around the periodic cell, per direction.

    A direction percolates when some periodic face-connected component of the fluid (phase 1)
    contains a closed loop with non-zero winding number along it; pixels touching only at a corner
    are not connected.  This is exactly the condition for a non-zero permeability in that
    direction (see the module docstring).

    Args:
        x: binary images (..., N, N), 1 = fluid, 0 = solid.

    Returns:
        bool tensor (..., 2): (horizontal = along axis -1 = x, vertical = along axis -2 = y), on
        the device of ``x``.

    Raises:
        ValueError: ``x`` has fewer than 2 dims, non-square images, NaN or values other than 0/1.
        TypeError: ``x`` is not numeric.

    Example::

        >>> import torch
        >>> x = torch.zeros(6, 6); x[2, :] = 1.0            # one horizontal row of fluid
        >>> percolates(x).tolist()
        [True, False]
        >>> percolates(torch.eye(6)).tolist()               # diagonal chain: corners only
        [False, False]
    """
    x = _check_images(x)
    fluid = _as_numpy_fluid(x)
    out = np.zeros((fluid.shape[0], 2), dtype=bool)
    for b, image in enumerate(fluid):
        out[b] = _percolating_fluid(image)[2]
    return torch.as_tensor(out, device=x.device).reshape(*x.shape[:-2], 2)


# --------------------------------------------------------------------------------------------
# permeability


def _permeability_one(fluid, method):
    """Permeability tensor (2, 2) of one refined bool image (fluid = True)."""
    if fluid.all():
        raise ValueError(
            "x contains an all-fluid image (no solid pixel): its permeability is infinite; "
            "permeability needs at least one solid (0) pixel per image"
        )
    keep, labels, perc = _percolating_fluid(fluid)
    k = np.zeros((2, 2))
    if not perc.any():
        return k
    if method == "mac":
        k = solve_mac(keep, labels)
    else:
        from ._stokes_fem import solve_fem  # scikit-fem is imported only when asked for

        k = solve_fem(keep, labels)
    # a blocked direction carries exactly no flow: clear its row and column (k is symmetric)
    k[~perc, :] = 0.0
    k[:, ~perc] = 0.0
    return k


def permeability(x, refine=1, method="mac"):
    r"""Permeability tensor of periodic binary images by Stokes flow.

    ``k[..., a, b] = <u_a>`` (cell average over the whole unit cell, zero in the solid) for a unit
    body force along b, unit viscosity, pixel size 1/N; a = 0 is x (axis -1), a = 1 is y (axis -2).
    See the module docstring for the discretizations and their accuracy.

    Args:
        x: binary images (..., N, N) (tensor or array-like), 1 = fluid, 0 = solid; any leading batch
            dims.
        refine: split every pixel into ``refine × refine`` sub-pixels before solving (same
            geometry, finer grid); the error falls like h^1.1–1.3 (module docstring).
        method: ``"mac"`` (staggered finite volumes, fast, default) or ``"fem"`` (scikit-fem
            Taylor–Hood P2/P1, the independent check; roughly ten times slower).

    Returns:
        float64 tensor (..., 2, 2) on the device of ``x``; symmetric positive semi-definite; the
        row and column of a non-percolating direction are exactly 0; all-solid images give 0.

    Raises:
        ValueError: bad shape (fewer than 2 dims, non-square), NaN, values other than 0/1, an
            all-fluid image (infinite permeability), ``refine`` not an integer >= 1, unknown
            ``method``, ``method="fem"`` with fewer than 3 pixels per side after refinement.
        TypeError: ``x`` is not numeric.

    Example::

        >>> import torch
        >>> x = torch.zeros(2, 32, 32); x[..., :16] = 1.0   # two vertical channels, width 1/2
        >>> k = permeability(x, method="fem")
        >>> k.shape, round(float(k[0, 1, 1]) / (0.5 ** 3 / 12), 10)
        (torch.Size([2, 2, 2]), 1.0)
    """
    x = _check_images(x)
    refine = _check_refine(refine)
    check_choice("method", method, _METHODS)
    if method == "fem" and x.shape[-1] * refine < 3:
        # on a 2 × 2 periodic grid two different mesh edges join the same pair of vertices
        raise ValueError(
            f"method='fem' needs at least 3 pixels per side after refinement, got N = "
            f"{x.shape[-1]} with refine = {refine}; use refine >= 2 or method='mac'"
        )
    fluid = _as_numpy_fluid(x)
    if refine > 1:
        fluid = fluid.repeat(refine, axis=-2).repeat(refine, axis=-1)
    k = np.stack([_permeability_one(image, method) for image in fluid])
    return torch.as_tensor(k, dtype=torch.float64, device=x.device).reshape(*x.shape[:-2], 2, 2)


def log_permeability(
    x, floor=LOG_PERMEABILITY_FLOOR, return_percolation=False, refine=1, method="mac"
):
    """Natural log of the diagonal permeabilities, (ln k_xx, ln k_yy), floored.

    The PSP-GEN property vector m (DESIGN §3).  Entries with k <= exp(floor), in particular the
    exact zeros of non-percolating directions, are set to ``floor`` (nothing else is clipped).

    Args:
        x: binary images (..., N, N), 1 = fluid, 0 = solid.
        floor: finite lower bound for ln k; default :data:`LOG_PERMEABILITY_FLOOR` = −20 (see its
            documentation for why it sits below every percolating value at 36² … 128²).
        return_percolation: also return the per-direction percolation flags.
        refine: pixel subdivision passed to :func:`permeability`.
        method: ``"mac"`` or ``"fem"``, passed to :func:`permeability`.

    Returns:
        float64 tensor (..., 2); with ``return_percolation=True`` a pair ``(m, flags)`` with
        ``flags`` a bool tensor (..., 2) (x, y) as in :func:`percolates`.

    Raises:
        ValueError: as :func:`permeability`, or ``floor`` not finite.
        TypeError: ``floor`` not a real number.

    Example::

        >>> import torch
        >>> x = torch.zeros(16, 16); x[:, 4:12] = 1.0       # vertical channel, width 1/2
        >>> m, flags = log_permeability(x, return_percolation=True)
        >>> m.tolist()[0], flags.tolist()
        (-20.0, [False, True])
    """
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor):
        raise ValueError(f"floor must be a finite real number, got {floor!r}")
    k = permeability(x, refine=refine, method=method)
    diag = torch.diagonal(k, dim1=-2, dim2=-1)
    floored = torch.full_like(diag, float(floor))
    m = torch.where(diag > math.exp(floor), diag.clamp_min(1e-300).log(), floored)
    if return_percolation:
        return m, diag > 0
    return m


def extrapolate_permeability(x, refines=(1, 2), order=None, method="mac", return_error=False):
    r"""Richardson-extrapolated permeability from two or three pixel subdivisions.

    With k_r the result at ``refine=r`` and the error model
    :math:`k_r = k + \sum_m c_m r^{-p_m}` (one term for two refinements, two terms for three),
    the unknowns (k, c_m) are solved for entrywise; k is a fixed linear combination
    :math:`\sum_r w_r k_r` with weights summing to 1.

    Default orders: with two refinements the measured effective order of the method
    (:data:`MAC_ORDER` = 1.25, :data:`FEM_ORDER` = 1.1); with three, (:data:`CORNER_ORDER`, 2) —
    the re-entrant-corner singularity 2λ ≈ 1.09 and the h² error of the MAC half-cell wall, which
    dominates in one- or two-pixel throats.  On 10 smoothed-noise 24² samples MAC from (2, 3, 4)
    agrees with Taylor–Hood from (2, 4) to 0.1 % (median) and 2.1 % (max); MAC from (2, 4) with
    one term to 0.6 % and 6 %.

    Args:
        x: binary images (..., N, N), 1 = fluid, 0 = solid.
        refines: two or three increasing integers >= 1.
        order: the order p (a number, two refinements) or orders (a sequence of
            ``len(refines) - 1`` distinct positive numbers); ``None`` for the defaults above.
        method: ``"mac"`` or ``"fem"``.
        return_error: also return the error estimate |k_extrapolated − k_finest| (elementwise).

    Returns:
        float64 tensor (..., 2, 2) (and the error estimate of the same shape if asked for).

    Raises:
        ValueError: bad images (see :func:`permeability`), ``refines`` not two or three increasing
            integers >= 1, ``order`` not positive / of the wrong length / repeated.

    Example::

        >>> import torch
        >>> x = torch.ones(12, 12); x[4:8, 4:8] = 0.0       # square obstacle
        >>> k, err = extrapolate_permeability(x, refines=(1, 2), return_error=True)
        >>> bool(k[0, 0] < permeability(x, refine=2)[0, 0]), bool(err[0, 0] > 0)
        (True, True)
    """
    check_choice("method", method, _METHODS)
    if (
        not isinstance(refines, (tuple, list))
        or len(refines) not in (2, 3)
        or any(isinstance(r, bool) or not isinstance(r, Integral) or r < 1 for r in refines)
        or any(a >= b for a, b in zip(refines[:-1], refines[1:]))
    ):
        raise ValueError(f"refines must be two or three increasing integers >= 1, got {refines!r}")
    if order is None:
        if len(refines) == 2:
            orders = (MAC_ORDER if method == "mac" else FEM_ORDER,)
        else:
            orders = (CORNER_ORDER, 2.0)
    else:
        orders = tuple(order) if isinstance(order, (tuple, list)) else (order,)
        if len(orders) != len(refines) - 1:
            raise ValueError(
                f"order must give len(refines) - 1 = {len(refines) - 1} order(s), got {order!r}"
            )
        for p in orders:
            check_positive("order", p)
        if len(set(orders)) != len(orders):
            raise ValueError(f"order must not repeat a value, got {order!r}")
    # rows [1, r^-p_1, ...]; k = e_1ᵀ A⁻¹ (k_r)_r = Σ_r w_r k_r with w = A⁻ᵀ e_1
    design = np.array([[1.0] + [r ** -p for p in orders] for r in refines])
    weights = np.linalg.solve(design.T, np.eye(len(refines))[0])
    ks = [permeability(x, refine=r, method=method) for r in refines]
    k = sum(float(w) * k_r for w, k_r in zip(weights, ks))
    if return_error:
        return k, (k - ks[-1]).abs()
    return k
