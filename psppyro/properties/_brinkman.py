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
import threading
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import torch

from ._stokes_mac import solve_saddle

__all__ = ["interface_transmissibility", "solve_dbs_cholesky", "solve_dbs_direct", "solve_dbs_pcg"]


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
    sol = solve_saddle(matrix, rhs, nvel, epsilon=epsilon, shifted=True, backward_error=True)
    k = np.empty((2, 2))
    k[0] = sol[:size_f].mean(axis=0)
    k[1] = sol[size_f:nvel].mean(axis=0)
    if not return_velocity:
        return k
    return k, sol[:size_f].T.reshape(2, n, n), sol[size_f:nvel].T.reshape(2, n, n)


# --------------------------------------------------------------------------------------------
# stream-function Cholesky with a reused symbolic factorization (CHOLMOD)


@lru_cache(maxsize=4)
def _stream_pattern(n):
    """Fixed structure of the stream-function system on an n × n periodic grid.

    Every discretely divergence-free face field is ``(U, V) + C ψ`` with constant means (U, V) and
    a node stream function ψ (node (i, j) = top-left corner of cell (i, j)):
    ``u(i, j) = ψ(i+1, j) − ψ(i, j)``, ``v(i, j) = ψ(i, j) − ψ(i, j+1)`` (C ψ has mean 0; ψ(0) is
    pinned: the constant ψ is the null space of C).  The velocity operator is
    ``A = Wᵀ diag(θ) W`` over rows r (face drags, then edges, each edge a difference of two faces)
    with weights θ, so ``K = Cᵀ A C`` has entries ``K_ij = Σ_r θ_r (WC)_ri (WC)_rj``, linear in θ:
    ``K.values = mapping @ θ`` with a fixed sparse ``mapping``.

    Returns:
        dict with ``rows``/``cols`` of the lower triangle of K (column-major order), ``mapping``
        (nnz × 6 n²) and ``curl_u``/``curl_v`` (the u and v rows of C, (n², n² − 1)).
    """
    size = n * n
    cells = np.arange(size)
    i, j = np.divmod(cells, n)
    down, right = ((i + 1) % n) * n + j, i * n + (j + 1) % n
    up, left = _pattern(n)
    ones = np.ones(size)
    curl = sp.csr_matrix(
        (np.concatenate([ones, -ones, ones, -ones]),
         (np.concatenate([cells, cells, size + cells, size + cells]),
          np.concatenate([down, cells, cells, right]))),
        shape=(2 * size, size),
    )[:, 1:]
    u_id, v_id = cells, size + cells
    # rows of W: drag u, drag v, then the four edge families in the order of _theta
    pairs = [(u_id, u_id[up]), (u_id, u_id[left]), (v_id, v_id[left]), (v_id, v_id[up])]
    w = sp.vstack(
        [sp.eye(2 * size, format="csr")]
        + [sp.csr_matrix((np.concatenate([ones, -ones]),
                          (np.concatenate([cells, cells]), np.concatenate([a, b]))),
                         shape=(size, 2 * size)) for a, b in pairs]
    ).tocsr()
    wc = (w @ curl).tocsr()
    wc.sum_duplicates()
    wc.eliminate_zeros()
    # all products (WC)_ri (WC)_rj of one row, lower triangle (i >= j)
    counts = np.diff(wc.indptr)
    width = int(counts.max())
    nrows = wc.shape[0]
    col = np.full((nrows, width), -1, dtype=np.int64)
    val = np.zeros((nrows, width))
    slot = np.arange(wc.nnz) - np.repeat(wc.indptr[:-1], counts)
    row_of = np.repeat(np.arange(nrows), counts)
    col[row_of, slot] = wc.indices
    val[row_of, slot] = wc.data
    ci, cj = col[:, :, None], col[:, None, :]
    ok = (ci >= 0) & (cj >= 0) & (ci >= cj)
    r_idx = np.broadcast_to(np.arange(nrows)[:, None, None], ok.shape)[ok]
    ii, jj = np.broadcast_to(ci, ok.shape)[ok], np.broadcast_to(cj, ok.shape)[ok]
    prod = (val[:, :, None] * val[:, None, :])[ok]
    keys = jj * (size - 1) + ii  # column-major order of the lower triangle
    unique, entry = np.unique(keys, return_inverse=True)
    mapping = sp.csr_matrix((prod, (entry, r_idx)), shape=(len(unique), nrows))
    mapping.sum_duplicates()
    return {
        "rows": (unique % (size - 1)).astype(np.int64),
        "cols": (unique // (size - 1)).astype(np.int64),
        "mapping": mapping,
        "curl_u": curl[:size].tocsc(),
        "curl_v": curl[size:].tocsc(),
    }


def _theta(fluid, kappa):
    """Weights θ (6 n²,) of the rows of W for one image: drags, then the four edge families."""
    drag_u, drag_v, t_u_up, t_v_left = _coefficients(fluid, kappa)
    ones = np.ones_like(drag_u)
    return np.concatenate([drag_u, drag_v, t_u_up, ones, t_v_left, ones])


# per thread: n -> (cvxopt sparse matrix with the pattern of K, CHOLMOD factor object); the factor
# is overwritten by every numeric factorization, so threads must not share it
_SYMBOLIC_LOCAL = threading.local()


def _symbolic_cache():
    cache = getattr(_SYMBOLIC_LOCAL, "cache", None)
    if cache is None:
        cache = _SYMBOLIC_LOCAL.cache = {}
    return cache


def solve_dbs_cholesky(fluid, kappa):
    """Permeability tensors of a batch of images with Brinkman solid: stream function + CHOLMOD.

    Eliminating the pressure exactly with the stream function (see :func:`_stream_pattern`)
    leaves, per image, the SPD system ``K ψ = −(c_U U + c_V V)`` (n² − 1 unknowns, the same
    sparsity pattern for every image) coupled to the mean flow (U, V): with
    ``c_U = C_uᵀ β_u``, ``c_V = C_vᵀ β_v`` (β the face drags) and the 2 × 2 Schur complement
    ``S = diag(Σ β_u, Σ β_v) − [c_U c_V]ᵀ K⁻¹ [c_U c_V]``, the unit force gives ``(U, V) = S⁻¹ e_j``
    and, since C ψ has mean zero, ``k = S⁻¹``.  The values of K of the whole batch are one sparse
    product; the CHOLMOD symbolic analysis (fill-reducing ordering, supernodes) is done once per
    grid size and only the numeric factorization is repeated per image.

    Args:
        fluid: bool array (m, n, n), True = void.
        kappa: float array (m,) of solid permeabilities > 0.

    Returns:
        float64 array (m, 2, 2).
    """
    try:
        from cvxopt import cholmod, matrix, spmatrix
    except ImportError as err:  # pragma: no cover - cvxopt is a dependency
        raise ImportError(
            "solver='cholesky' (the default for solid_permeability > 0 on the CPU) needs cvxopt "
            "(CHOLMOD): pip install cvxopt, or pass solver='direct' (SuperLU, slower)"
        ) from err

    m, n = fluid.shape[0], fluid.shape[-1]
    pattern = _stream_pattern(n)
    theta = np.stack([_theta(f, float(kap)) for f, kap in zip(fluid, kappa)], axis=1)
    values = pattern["mapping"] @ theta  # (nnz, m)
    size = n * n
    c_u = pattern["curl_u"].T @ theta[:size]
    c_v = pattern["curl_v"].T @ theta[size : 2 * size]
    cache = _symbolic_cache()
    if n not in cache:
        base = spmatrix(values[:, 0].tolist(), pattern["rows"].tolist(),
                        pattern["cols"].tolist(), (size - 1, size - 1))
        if list(base.I) != pattern["rows"].tolist():  # pragma: no cover - cvxopt storage order
            raise RuntimeError("unexpected cvxopt storage order of the stream-function matrix")
        cache[n] = (base, cholmod.symbolic(base, uplo="L"))
    base, factor = cache[n]
    k = np.empty((m, 2, 2))
    for b in range(m):
        base.V = matrix(values[:, b])
        cholmod.numeric(base, factor)
        rhs = matrix(np.stack([c_u[:, b], c_v[:, b]], axis=1))
        cholmod.solve(factor, rhs)
        y = np.asarray(rhs)
        schur = np.diag([theta[:size, b].sum(), theta[size : 2 * size, b].sum()])
        schur -= np.stack([c_u[:, b], c_v[:, b]]) @ y
        schur = 0.5 * (schur + schur.T)
        k[b] = np.linalg.inv(schur)
    return k


# --------------------------------------------------------------------------------------------
# batched matrix-free projected conjugate gradients (torch)


def _coefficients_torch(fluid, kappa, n):
    """Per-image stencil coefficients for :func:`solve_dbs_pcg`, shapes (m, 1, n, n).

    Returns ``(diag_u, t_up, t_down, diag_v, t_left, t_right)``: the diagonals of the u and v rows
    and the tangential-edge transmissibilities (u: to u(i∓1, j); v: to v(i, j∓1)).
    """
    h = 1.0 / n
    dtype = kappa.dtype
    inv = torch.where(fluid, torch.zeros((), dtype=dtype, device=fluid.device),
                      (1.0 / kappa)[:, None, None])
    drag_u = (h * h * 0.5) * (inv + inv.roll(1, -1))
    drag_v = (h * h * 0.5) * (inv + inv.roll(1, -2))
    void_u, solid_u = fluid & fluid.roll(1, -1), ~fluid & ~fluid.roll(1, -1)
    void_v, solid_v = fluid & fluid.roll(1, -2), ~fluid & ~fluid.roll(1, -2)
    ell = kappa.sqrt()
    t_int = (h / (0.5 * h - ell * torch.expm1(-0.5 * h / ell)))[:, None, None]
    one = torch.ones((), dtype=dtype, device=fluid.device)
    t_up = torch.where((void_u & solid_u.roll(1, -2)) | (solid_u & void_u.roll(1, -2)), t_int, one)
    t_left = torch.where((void_v & solid_v.roll(1, -1)) | (solid_v & void_v.roll(1, -1)), t_int,
                         one)
    t_down, t_right = t_up.roll(-1, -2), t_left.roll(-1, -1)
    diag_u = drag_u + t_up + t_down + 2.0
    diag_v = drag_v + t_left + t_right + 2.0
    return tuple(c.unsqueeze(1) for c in (diag_u, t_up, t_down, diag_v, t_left, t_right))


def _fourier_symbols(n, dtype, device):
    """rfft2 symbols on an n × n grid: gradients (g_x, g_y) of the MAC faces and |g|²."""
    ty = 2.0 * math.pi * torch.fft.fftfreq(n, dtype=dtype, device=device)[:, None]
    tx = 2.0 * math.pi * torch.fft.rfftfreq(n, dtype=dtype, device=device)[None, :]
    gx = 1.0 - torch.exp(-1j * tx).expand(n, tx.shape[1])
    gy = 1.0 - torch.exp(-1j * ty).expand(n, tx.shape[1])
    lap = (4.0 * torch.sin(0.5 * tx) ** 2 + 4.0 * torch.sin(0.5 * ty) ** 2)
    return gx, gy, lap


def solve_dbs_pcg(fluid, kappa, rtol=1e-6, maxiter=2000, sigma_factor=1.0, return_info=False):
    r"""Permeability tensors of a batch of images with Brinkman solid, projected PCG (torch).

    The discrete problem of :func:`solve_dbs_direct`, for every image and both force directions
    at once.  On the full periodic grid the MAC divergence and gradient have constant
    coefficients, so the orthogonal projection onto discretely divergence-free face fields,
    :math:`P = I - G (G^T G)^{-1} G^T`, is diagonal in Fourier space.  Conjugate gradients on
    :math:`P A P u = P h^2 f` (SPD on the divergence-free space; the pressure never appears) are
    preconditioned by :math:`M = P (L + σ)^{-1}` with :math:`L = G^T G`-shaped five-point
    Laplacian symbol (L commutes with P on the uniform grid, so M is SPD on the divergence-free
    space and one FFT pair per iteration applies both).  The drag is 0 in the void and
    d = h²/κ_s in the solid: σ balances the two extremes of the preconditioned spectrum,
    :math:`σ = c\sqrt{d\,λ_{min}}` with :math:`λ_{min} = 4\sin^2(π/n)` (``sigma_factor`` c).

    Args:
        fluid: bool tensor (m, n, n), True = void.
        kappa: float64 tensor (m,), solid permeabilities > 0 (cell units).
        rtol: stop when the preconditioned residual norm :math:`\sqrt{r^T M r}` has fallen by
            ``rtol`` (per system).
        maxiter: iteration limit; systems not converged by then raise ``RuntimeError``.
        sigma_factor: the constant c above.
        return_info: also return a dict with ``iterations`` (m, 2).

    Returns:
        float64 tensor (m, 2, 2) on the device of ``fluid``: ``k[:, a, b] = <u_a>`` for force b.
    """
    m, n = fluid.shape[0], fluid.shape[-1]
    device, dtype = fluid.device, kappa.dtype
    h = 1.0 / n
    diag_u, t_up, t_down, diag_v, t_left, t_right = _coefficients_torch(fluid, kappa, n)
    gx, gy, lap = _fourier_symbols(n, dtype, device)
    lam_min = 4.0 * math.sin(math.pi / n) ** 2
    sigma = (sigma_factor * torch.sqrt(h * h / kappa * lam_min))[:, None, None, None]
    inv_shift = 1.0 / (lap + sigma)  # (m, 1, n, n//2+1)
    inv_lap = torch.where(lap > 0, 1.0 / torch.where(lap > 0, lap, 1.0), 0.0)
    cgx, cgy = gx.conj(), gy.conj()

    def apply_a(x):
        u, v = x[:, :, 0], x[:, :, 1]
        au = (diag_u * u - t_up * u.roll(1, -2) - t_down * u.roll(-1, -2)
              - u.roll(1, -1) - u.roll(-1, -1))
        av = (diag_v * v - t_left * v.roll(1, -1) - t_right * v.roll(-1, -1)
              - v.roll(1, -2) - v.roll(-1, -2))
        return torch.stack([au, av], dim=2)

    def apply_m(r):
        rh = torch.fft.rfft2(r)
        uh, vh = rh[:, :, 0], rh[:, :, 1]
        div = (cgx * uh + cgy * vh) * inv_lap
        zu = (uh - gx * div) * inv_shift
        zv = (vh - gy * div) * inv_shift
        return torch.fft.irfft2(torch.stack([zu, zv], dim=2), s=(n, n))

    def dot(a, b):
        return (a * b).sum(dim=(-3, -2, -1))

    x = torch.zeros(m, 2, 2, n, n, dtype=dtype, device=device)
    r = torch.zeros_like(x)
    r[:, 0, 0] = h * h  # force along x drives u, along y drives v (constants: divergence-free)
    r[:, 1, 1] = h * h
    z = apply_m(r)
    p = z.clone()
    rz = dot(r, z)
    target = (rtol * rtol) * rz
    active = rz > target
    iterations = torch.zeros(m, 2, dtype=torch.int64, device=device)
    check_every = 8
    for it in range(maxiter):
        ap = apply_a(p)
        pap = dot(p, ap)
        alpha = torch.where(active, rz / torch.where(active, pap, 1.0), 0.0)
        x.add_(alpha[..., None, None, None] * p)
        r.sub_(alpha[..., None, None, None] * ap)
        z = apply_m(r)
        rz_new = dot(r, z)
        beta = torch.where(active, rz_new / torch.where(active, rz, 1.0), 0.0)
        p.mul_(beta[..., None, None, None]).add_(z)
        rz = torch.where(active, rz_new, rz)
        iterations += active.to(torch.int64)
        active = active & (rz > target)
        if (it + 1) % check_every == 0 and not bool(active.any()):
            break
    if bool(active.any()):
        bad = active.any(dim=1).nonzero().flatten().tolist()[:8]
        raise RuntimeError(
            f"Brinkman projected CG did not reach rtol={rtol:g} within maxiter={maxiter} "
            f"iterations for images {bad}"
        )
    k = x.mean(dim=(-2, -1)).transpose(1, 2)  # (m, force b, component a) -> (m, a, b)
    k = 0.5 * (k + k.transpose(1, 2))  # the exact tensor is symmetric; k_xy converges like r
    if return_info:
        return k, {"iterations": iterations}
    return k
