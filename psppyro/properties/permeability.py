r"""Effective permeability of periodic two-phase images by Stokes flow (the PSP-GEN property).

Phase 1 is fluid (void), phase 0 is impermeable solid (the PoreSpy convention,
``docs/architecture.md`` § "Phases").  In the periodic unit cell Ω = [0, 1)² (pixel size h = 1/N) we
solve, for a unit body force along direction j and unit viscosity,

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

Micro-porous solid: Darcy–Brinkman–Stokes (``solid_permeability`` κ_s > 0).  The micro-continuum
model (Brinkman 1949; Soulaine & Tchelepi 2016) gives the solid a permeability κ_s (in (cell
length)², like k) and solves on the whole cell

.. math::

    -\nabla^2 \mathbf{u} + κ(x)^{-1}\mathbf{u} + \nabla p = \mathbf{e}_j, \qquad
    \nabla\cdot\mathbf{u} = 0, \qquad κ = ∞ \text{ in the void}, \; κ = κ_s \text{ in the solid},

with velocity and shear stress continuous across the interface (Brinkman viscosity = μ, Neale &
Nader 1974).  Use it for micro-porous solids, porosity below the pixel size, or to reproduce the
PSP-GEN paper's reconstruction, whose blocked directions have finite ln k: κ_s = 0.02 h² puts a
blocked direction at ln k ≈ −9.5 at 36² and ≈ −11.7 at 128² (k ≈ κ_s / (solid fraction) for flow
that must cross the solid).  κ_s = 0 is exactly the Stokes problem below; with κ_s > 0 there are
no pockets to remove, every direction has k > 0 and an all-solid cell has k = κ_s I.  κ_s is a
physical value: ``refine`` keeps it fixed (the drag per sub-pixel is the same).

- MAC (:mod:`~psppyro.properties._brinkman`): every face of the grid carries a velocity; the drag
  on a face is the arithmetic mean of 1/κ of the two cells sharing it (the exact average of 1/κ
  over the face's control volume, so flow *across* layers is exact, k = κ_s / s, and every face
  touching a solid cell goes to zero velocity as κ_s → 0); a tangential edge joining a void–void
  face to a solid–solid face gets the viscous transmissibility h / (h/2 + ℓ(1 − e^{−h/2ℓ})),
  ℓ = √κ_s (half a void cell in series with a Brinkman boundary layer), which is 1 (the plain
  stencil) for a resolved layer and 2 (the half-cell ghost wall of the Stokes MAC) for ℓ → 0.
  Hence κ_s → 0 recovers the Stokes MAC values below exactly (not a cruder wall a cell deeper, as
  the plain stencil would).  Same sparsity pattern for every image.
- Taylor–Hood (``method="fem"``): the whole periodic cell is meshed and ∫ κ⁻¹ u·v is added with
  the pixel values of 1/κ.
- MAC solvers (``solver``): ``"cholesky"`` (CPU default) eliminates the pressure exactly with a
  node stream function, leaving one SPD system per image with the same sparsity pattern for
  every image: CHOLMOD (through cvxopt) analyses it once per grid size and refactorizes only
  numerically; ``"pcg"`` (default for GPU inputs) is batched conjugate gradients on the
  divergence-free space in torch, preconditioned by the FFT-diagonal projection times a shifted
  Laplacian; ``"direct"`` is SuperLU on the velocity–pressure system, the reference.

Accuracy and speed of the Brinkman model (measured;
``tests/properties/test_permeability_brinkman.py`` and
``benchmarks/bench_permeability.py --brinkman-only``).

- Exact, for every solver and refinement: an all-solid cell gives κ_s I; flow across layers gives
  k = κ_s / s (s = solid fraction: the velocity is uniform and the face-mean drag averages 1/κ
  exactly); Taylor–Hood too.
- Along layers (void w = 3/8, closed-form 1-D cosh profile): MAC converges at second order
  (observed 2.02–2.08); κ_s = 0.02: 2.7 %, 0.65 %, 0.16 %, 0.04 % at 8², 16², 32², 64² cells;
  Taylor–Hood at fourth order (−8e-5 at 8²).  The interface transmissibility above cuts the MAC
  error 1.8× (κ_s = 0.02), 2.3× (0.005), 4.6× (1e-4) against the plain stencil (T = 1).
- κ_s → 0: |k(κ_s) − k_Stokes| / k ∝ √κ_s (the slip length of the Brinkman layer), MAC and
  Taylor–Hood; a blocked direction has k ∝ κ_s.
- MAC against Taylor–Hood (κ_s = 2e-3, two 12² smoothed-noise images): 0.2–0.3 % at MAC refine 4,
  0.05 % of max |k| at refine 8 (Taylor–Hood refine 4).
- κ_s = 0.02 h², blocked directions (the void does not percolate): ln k median −9.46, range
  [−9.62, −9.17] (15 of 400 directions, 200 pspgen36 samples); at 128² median −11.07, range
  [−11.45, −10.98] (10 of 800 directions, 400 pspgen128 samples).
- ``"cholesky"`` agrees with ``"direct"`` to 4e-12 (20 pspgen36 images).  ``"pcg"`` at
  :data:`PCG_RTOL` = 1e-5: k_xx, k_yy within 8e-9 (median 1e-9), k_xy within 4e-7 of max |k|,
  112 iterations on average at 36² (rtol 1e-4: 6e-8 and 7e-6, 94 iterations; 1e-3: 8e-7 and
  1.4e-4, 74).  A face-drag scaling of the preconditioner halves the iterations but triples the
  FFTs per iteration; neither makes CG competitive with the Cholesky path on a CPU.
- Speed at 36², κ_s = 0.02 h², both directions, 200 pspgen36 images, one run with a load average
  of 8 on 2 cores (other jobs running), wall clock (per CPU-second the process got): Cholesky
  211 images/s on 1 core (432), 218 with 2 worker processes (894 from their CPU time); the
  κ_s = 0 Stokes path 48 (97): 4.4× faster in both measures; SuperLU 28 (64); CG 20 (40).  At
  128²: Cholesky 0.135 s per image on 1 core (0.055 CPU-s; 0.033 s per image from the CPU time
  of 2 workers), 8.4× the κ_s = 0 path.

Two discretizations (each property has two: ``docs/architecture.md`` § "Verification and errors"):

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
    H. C. Brinkman, "A calculation of the viscous force exerted by a flowing fluid on a dense
    swarm of particles", Appl. Sci. Res. A1 (1949) — the Brinkman equation.
    G. Neale and W. Nader, "Practical significance of Brinkman's extension of Darcy's law: coupled
    parallel flows within a channel and a bounding porous medium", Can. J. Chem. Eng. 52 (1974) —
    the interface conditions.
    C. Soulaine and H. A. Tchelepi, "Micro-continuum approach for pore-scale simulation of
    subsurface processes", Transp. Porous Media 113 (2016) — Darcy–Brinkman–Stokes.
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
from ._brinkman import solve_dbs_cholesky, solve_dbs_direct, solve_dbs_pcg
from ._stokes_mac import solve_mac

__all__ = [
    "CORNER_ORDER",
    "FEM_ORDER",
    "LOG_PERMEABILITY_FLOOR",
    "MAC_ORDER",
    "PCG_RTOL",
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

#: Tolerance of ``solver="pcg"`` (κ_s > 0): the preconditioned residual norm of each system falls
#: by this factor.  k is an energy functional, so its error is about the square of the residual
#: (module docstring: measured error against the direct solve).
PCG_RTOL = 1e-5

_METHODS = ("mac", "fem")
_SOLVERS = ("auto", "cholesky", "pcg", "direct")


# --------------------------------------------------------------------------------------------
# input checks


def _check_ndim(ndim):
    """Only 2-D images are supported; a 3-D volume must be asked for and is refused clearly."""
    if isinstance(ndim, bool) or ndim not in (2, 3):
        raise ValueError(
            f"ndim must be 2 (the last two dims of x are one image) or 3, got {ndim!r}"
        )
    if ndim == 3:
        raise ValueError(
            "ndim=3: the permeability of a 3-D volume (..., N, N, N) is not implemented (the "
            "Stokes/Brinkman solvers are 2-D); with ndim=2 the last two dims are one image and "
            "all leading dims are batch dims, so a volume would be solved slice by slice"
        )


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


def _check_solid_permeability(value, batch_shape):
    """κ_s as a float64 numpy array (B,) over the flattened batch; ValueError if invalid."""
    if isinstance(value, bool):
        raise ValueError(
            f"solid_permeability must be a number >= 0 or an array of them, got {value!r}"
        )
    try:
        arr = np.asarray(
            value.detach().to("cpu").double().numpy() if isinstance(value, torch.Tensor) else value,
            dtype=np.float64,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"solid_permeability must be a number >= 0 or an array of them, got {value!r}"
        ) from err
    if not np.isfinite(arr).all() or (arr < 0).any():
        bad = arr[~np.isfinite(arr) | (arr < 0)].ravel()[:3].tolist()
        raise ValueError(
            f"solid_permeability must be finite and >= 0 (in cell length², 0 = impermeable "
            f"solid), got {bad}"
        )
    try:
        arr = np.broadcast_to(arr, tuple(batch_shape))
    except ValueError as err:
        raise ValueError(
            f"solid_permeability of shape {arr.shape} does not broadcast to the batch shape "
            f"x.shape[:-2] = {tuple(batch_shape)}"
        ) from err
    return np.ascontiguousarray(arr).reshape(-1)


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


def _solve_dbs(fluid, kappa, method, solver, device=None):
    """Permeability tensors (m, 2, 2) of bool images (m, n, n), solid permeabilities (m,) > 0."""
    if method == "fem":
        from ._stokes_fem import solve_fem_dbs  # scikit-fem is imported only when asked for

        return np.stack([solve_fem_dbs(f, float(kap)) for f, kap in zip(fluid, kappa)])
    if solver == "direct":
        return np.stack([solve_dbs_direct(f, float(kap)) for f, kap in zip(fluid, kappa)])
    if solver == "cholesky":
        return solve_dbs_cholesky(fluid, kappa)
    if solver == "pcg":
        device = torch.device("cpu") if device is None else device
        k = solve_dbs_pcg(torch.as_tensor(fluid, device=device),
                          torch.as_tensor(kappa, dtype=torch.float64, device=device),
                          rtol=PCG_RTOL)
        return k.to("cpu").numpy()
    raise AssertionError(solver)  # pragma: no cover - checked by the caller


def permeability(
    x,
    refine: int = 1,
    method: str = "mac",
    solid_permeability=0.0,
    ndim: int = 2,
    solver: str = "auto",
) -> torch.Tensor:
    r"""Permeability tensor of periodic binary images by Stokes or Darcy–Brinkman–Stokes flow.

    ``k[..., a, b] = <u_a>`` (cell average over the whole unit cell) for a unit body force along
    b, unit viscosity, pixel size 1/N; a = 0 is x (axis -1), a = 1 is y (axis -2).  With
    ``solid_permeability`` κ_s = 0 the solid is impermeable (Stokes in the void); with κ_s > 0 it
    is a Brinkman medium of permeability κ_s and the problem lives on the whole grid.  See the
    module docstring for the model, the discretizations and their accuracy.

    Args:
        x: binary images (..., N, N) (tensor or array-like), 1 = fluid (void), 0 = solid; any
            leading batch dims (the last two dims are one image, see ``ndim``).
        refine: split every pixel into ``refine × refine`` sub-pixels before solving (same
            geometry, finer grid; κ_s is a physical value and stays fixed); the Stokes error falls
            like h^1.1–1.3 (module docstring).
        method: ``"mac"`` (staggered finite volumes, fast, default) or ``"fem"`` (scikit-fem
            Taylor–Hood P2/P1, the independent check; roughly ten times slower).
        solid_permeability: κ_s >= 0 of the solid phase in (cell length)², a number or an array
            broadcastable to the batch shape ``x.shape[:-2]`` (one value per image).
        ndim: spatial dimension; only 2 is implemented — ``ndim=3`` (a volume) raises.
        solver: for ``method="mac"`` and κ_s > 0 only: ``"cholesky"`` (stream function,
            sparse Cholesky with one symbolic analysis per grid size; exact, the fast CPU path),
            ``"pcg"`` (batched FFT-preconditioned projected conjugate gradients in torch on the
            device of ``x``, relative tolerance :data:`PCG_RTOL`), ``"direct"`` (sparse LU of the
            velocity–pressure system, the reference) or ``"auto"`` (default: ``"pcg"`` for
            inputs on a GPU, ``"cholesky"`` otherwise).  κ_s = 0 and ``method="fem"`` always
            solve directly.

    Returns:
        float64 tensor (..., 2, 2) on the device of ``x``; symmetric positive semi-definite
        (definite for κ_s > 0); with κ_s = 0 the row and column of a non-percolating direction
        are exactly 0 and all-solid images give 0; with κ_s > 0 an all-solid image gives κ_s I.

    Raises:
        ValueError: bad shape (fewer than 2 dims, non-square), NaN, values other than 0/1, an
            all-fluid image (infinite permeability), ``refine`` not an integer >= 1, unknown
            ``method`` or ``solver``, ``method="fem"`` with fewer than 3 pixels per side after
            refinement, ``solid_permeability`` negative / not finite / not broadcastable to the
            batch shape, ``ndim`` other than 2.
        TypeError: ``x`` is not numeric.

    Example::

        >>> import torch
        >>> x = torch.zeros(2, 32, 32); x[..., :16] = 1.0   # two vertical channels, width 1/2
        >>> k = permeability(x, method="fem")
        >>> k.shape, round(float(k[0, 1, 1]) / (0.5 ** 3 / 12), 10)
        (torch.Size([2, 2, 2]), 1.0)
        >>> k = permeability(x[0], solid_permeability=1e-3)   # flow across the layers: κ_s / s
        >>> round(float(k[0, 0]) / (1e-3 / 0.5), 10)
        1.0
    """
    _check_ndim(ndim)
    x = _check_images(x)
    refine = _check_refine(refine)
    check_choice("method", method, _METHODS)
    check_choice("solver", solver, _SOLVERS)
    kappa = _check_solid_permeability(solid_permeability, x.shape[:-2])
    if method == "fem" and x.shape[-1] * refine < 3:
        # on a 2 × 2 periodic grid two different mesh edges join the same pair of vertices
        raise ValueError(
            f"method='fem' needs at least 3 pixels per side after refinement, got N = "
            f"{x.shape[-1]} with refine = {refine}; use refine >= 2 or method='mac'"
        )
    fluid = _as_numpy_fluid(x)
    all_fluid = fluid.reshape(fluid.shape[0], -1).all(axis=1)
    if all_fluid.any():
        raise ValueError(
            f"x contains an all-fluid image (no solid pixel; flat batch index "
            f"{int(np.flatnonzero(all_fluid)[0])}): its permeability is infinite; permeability "
            f"needs at least one solid (0) pixel per image"
        )
    if refine > 1:
        fluid = fluid.repeat(refine, axis=-2).repeat(refine, axis=-1)
    k = np.zeros((fluid.shape[0], 2, 2))
    stokes = kappa == 0
    for b in np.flatnonzero(stokes):
        k[b] = _permeability_one(fluid[b], method)
    if not stokes.all():
        brinkman = ~stokes
        if solver == "auto":
            solver = "pcg" if x.device.type != "cpu" else "cholesky"
        k[brinkman] = _solve_dbs(fluid[brinkman], kappa[brinkman], method, solver, x.device)
    return torch.as_tensor(k, dtype=torch.float64, device=x.device).reshape(*x.shape[:-2], 2, 2)


def log_permeability(
    x,
    floor: float = LOG_PERMEABILITY_FLOOR,
    return_percolation: bool = False,
    refine: int = 1,
    method: str = "mac",
    solid_permeability=0.0,
    ndim: int = 2,
    solver: str = "auto",
):
    """Natural log of the diagonal permeabilities, (ln k_xx, ln k_yy), floored.

    The PSP-GEN property vector m (docs/architecture.md).  Entries with k <= exp(floor), in
    particular the exact zeros of non-percolating directions at κ_s = 0, are set to ``floor``
    (nothing else is clipped).  With ``solid_permeability`` κ_s > 0 every direction has k > 0
    (k >= κ_s-scale flow through the solid) and the floor is never hit in practice.

    Args:
        x: binary images (..., N, N), 1 = fluid, 0 = solid.
        floor: finite lower bound for ln k; default :data:`LOG_PERMEABILITY_FLOOR` = −20 (see its
            documentation for why it sits below every percolating value at 36² … 128²).
        return_percolation: also return the per-direction percolation flags of the void phase.
        refine: pixel subdivision passed to :func:`permeability`.
        method: ``"mac"`` or ``"fem"``, passed to :func:`permeability`.
        solid_permeability: κ_s >= 0 (number or per-image array), passed to :func:`permeability`.
        ndim: spatial dimension, only 2 (see :func:`permeability`).
        solver: passed to :func:`permeability`.

    Returns:
        float64 tensor (..., 2); with ``return_percolation=True`` a pair ``(m, flags)`` with
        ``flags`` a bool tensor (..., 2) (x, y): whether the *void* phase percolates in that
        direction, as in :func:`percolates` (for κ_s = 0 the same as k > 0).

    Raises:
        ValueError: as :func:`permeability`, or ``floor`` not finite.

    Example::

        >>> import torch
        >>> x = torch.zeros(16, 16); x[:, 4:12] = 1.0       # vertical channel, width 1/2
        >>> m, flags = log_permeability(x, return_percolation=True)
        >>> m.tolist()[0], flags.tolist()
        (-20.0, [False, True])
        >>> m, flags = log_permeability(x, return_percolation=True, solid_permeability=1e-4)
        >>> round(m.tolist()[0], 4), flags.tolist()             # across the layers: ln(κ_s / s)
        (-8.5172, [False, True])
    """
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor):
        raise ValueError(f"floor must be a finite real number, got {floor!r}")
    k = permeability(
        x, refine=refine, method=method, solid_permeability=solid_permeability, ndim=ndim,
        solver=solver,
    )
    diag = torch.diagonal(k, dim1=-2, dim2=-1)
    floored = torch.full_like(diag, float(floor))
    m = torch.where(diag > math.exp(floor), diag.clamp_min(1e-300).log(), floored)
    if return_percolation:
        flags = diag > 0
        kappa = _check_solid_permeability(solid_permeability, k.shape[:-2])
        if (kappa > 0).any():
            void = percolates(x).reshape(-1, 2).to(flags.device)
            brinkman = torch.as_tensor(kappa > 0, device=flags.device)[:, None]
            flags = torch.where(brinkman, void, flags.reshape(-1, 2)).reshape(flags.shape)
        return m, flags
    return m


def extrapolate_permeability(
    x,
    refines=(1, 2),
    order=None,
    method: str = "mac",
    return_error: bool = False,
    solid_permeability=0.0,
    ndim: int = 2,
    solver: str = "auto",
):
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
        solid_permeability: κ_s >= 0, passed to :func:`permeability` (fixed under refinement).
            The default orders are those of the Stokes problem; for κ_s > 0 with a resolved
            Brinkman layer MAC converges like h² (module docstring), so pass ``order=2``.
        ndim: spatial dimension, only 2 (see :func:`permeability`).
        solver: passed to :func:`permeability`.

    Returns:
        float64 tensor (..., 2, 2) (and the error estimate of the same shape if asked for).

    Raises:
        ValueError: bad images or ``solid_permeability`` / ``ndim`` / ``solver`` (see
            :func:`permeability`), ``refines`` not two or three increasing integers >= 1,
            ``order`` not positive / of the wrong length / repeated.

    Example::

        >>> import torch
        >>> x = torch.ones(12, 12); x[4:8, 4:8] = 0.0       # square obstacle
        >>> k, err = extrapolate_permeability(x, refines=(1, 2), return_error=True)
        >>> bool(k[0, 0] < permeability(x, refine=2)[0, 0]), bool(err[0, 0] > 0)
        (True, True)
    """
    _check_ndim(ndim)
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
    ks = [
        permeability(x, refine=r, method=method, solid_permeability=solid_permeability,
                     solver=solver)
        for r in refines
    ]
    k = sum(float(w) * k_r for w, k_r in zip(weights, ks))
    if return_error:
        return k, (k - ks[-1]).abs()
    return k
