r"""Effective conductivity of two-phase periodic media: FFT-preconditioned CG, scikit-fem check.

Problem
-------
A binary image ``x`` (values 0/1) fills the periodic cell with a conductivity
:math:`k(\mathbf r) = k_0` where ``x == 0`` and :math:`k_1` where ``x == 1``
(``phases=(k_0, k_1)``).
For a macroscopic gradient :math:`E` the temperature is :math:`E\cdot\mathbf r + \varphi` with a
periodic fluctuation :math:`\varphi` solving

.. math::

    \nabla\cdot\big(k\,(E + \nabla\varphi)\big) = 0, \qquad
    K_{\mathrm{eff}}\,E = \big\langle k\,(E + \nabla\varphi)\big\rangle ,

and the :math:`d` load cases :math:`E = e_j` give the columns of the effective tensor
:math:`K_{\mathrm{eff}}` (``K[..., a, j]`` = mean flux along axis component ``a`` for ``E = e_j``).

Tensor components follow the image axes of ``docs/architecture.md`` § "Arrays and axes": component 0
is "x" = image axis -1 (horizontal), component 1 is "y" = axis -2 (vertical, row index increasing),
component 2 is "z" = axis -3 in 3-D. Pixels are square (or cubic); the result does not depend on the
cell size, so rectangular images of square pixels are accepted as well.

Finite-volume scheme (``method="fft"``, 2-D and 3-D)
-----------------------------------------------------
Cell-centred temperatures on the pixel grid, one flux per face (a staggered / MAC arrangement). The
face conductivity between neighbouring pixels :math:`p, q` is the harmonic mean
:math:`k_{pq} = 2k_pk_q/(k_p + k_q)` (exact for a 1-D series connection), and with the forward
difference :math:`D_a\varphi = \varphi(\cdot + e_a) - \varphi` (pixel units) the discrete problem is

.. math::

    A\varphi := \sum_a D_a^{\mathsf T}\big(k_a \odot D_a\varphi\big)
    = -\sum_a D_a^{\mathsf T}(k_a E_a),
    \qquad K_{\mathrm{eff}}E = \big\langle k_a\,(E_a + D_a\varphi)\big\rangle_a .

:math:`A` is symmetric positive semi-definite with the constants as null space; the right-hand side
is mean-free, so the problem is consistent. It is solved for all samples and all :math:`d` load
cases at once by conjugate gradients (:func:`~psppyro.properties._krylov.batched_pcg`),
preconditioned with the same operator for a homogeneous reference medium :math:`k_{\mathrm{ref}}`,
:math:`M^{-1} = k_{\mathrm{ref}}\sum_a D_a^{\mathsf T}D_a`, which the FFT diagonalizes with the
eigenvalues :math:`k_{\mathrm{ref}}\sum_a (2 - 2\cos(2\pi\xi_a/N_a))`; the zero mode is set to zero
(mean-free fluctuation). The spectrum of :math:`MA` lies in
:math:`[k_{\min}, k_{\max}]/k_{\mathrm{ref}}`, so CG needs :math:`O(\sqrt{k_{\max}/k_{\min}})`
iterations independent of the resolution (Zeman et al. 2010). This is the conductivity analogue of
the staggered-grid FFT scheme of Schneider, Ospald & Kabel (2016); unlike Moulinec & Suquet's basic
scheme it does not stall at high contrast.

Exact properties of the discrete scheme (tested): a homogeneous cell gives the phase value; a
laminate gives the arithmetic mean along the layers and the harmonic mean across them; the effective
eigenvalues lie within the Wiener bounds of the pixel values (the harmonic mean of the face
conductivities equals that of the pixels); transposing the image swaps ``K_00`` and ``K_11``.

Finite-element check (``method="fem"``, 2-D)
--------------------------------------------
Bilinear Q1 elements (scikit-fem, ``MeshQuad``/``ElementQuad1``) on the pixel grid, one element per
(sub)pixel with its constant conductivity, periodic by identifying opposite boundary nodes, one node
pinned; the two load cases share one sparse LU factorization, and ``K_eff`` comes from the same flux
average. It is a different discretization (continuous, nodal temperatures) that converges to the
same continuum limit.

Q1 elements, matrix-free (``method="q1"``, 2-D)
------------------------------------------------
The same Q1 discretization as ``"fem"``, applied matrix-free in torch and solved by the same
batched CG. Nodes sit at the pixel corners; with the edge differences :math:`d_a = D_a u` the exact
element energy is :math:`k_e[(a^2 + ab + b^2) + (c^2 + cd + d^2)]/3` (a, b the element's two edges
along x, c, d along y), which gives a 9-point stencil whose coefficients are the two elements that
share an edge. The preconditioner is the homogeneous Q1 operator, symbol
:math:`((2 - 2c_0)(2 + c_1) + (2 - 2c_1)(2 + c_0))/3`, :math:`c_a = \cos(2\pi\xi_a/N_a)`, so the
iteration count is again resolution independent. It matches ``"fem"`` to the CG tolerance (tested)
and is ~20× faster at 64².

Corner contacts and the converged value (``method="extrapolated"``, 2-D)
------------------------------------------------------------------------
The two discretizations *bracket* the effective conductivity of the pixelated medium: Q1 is
conforming, so its energy is an upper bound; the finite volumes minimize a (trapezoidal,
over-estimating) complementary energy over exactly divergence-free Raviart–Thomas fluxes, so they
are a lower bound (electrical-network duality). Where two pixels of the good conductor touch only at
a corner the bracket is wide: finite volumes let no current through the contact, Q1 lets it pass
through a shared node. Near such a point the potential behaves like :math:`r^\alpha`,
:math:`\alpha = \frac4\pi\arctan\sqrt{k_{\min}/k_{\max}}`, so *both* schemes converge only like
:math:`h^{2\alpha}` (:func:`corner_exponent`: 0.358 at contrast 50). Measured on a checkerboard
(Dykhne's exact :math:`K = \sqrt{k_0k_1}`): the finite volumes are 45 % low at 8-pixel squares
(3.88 vs 7.07) and Q1 63 % high, and their observed orders approach 0.358 from either side (0.25
and 0.48 at refine 8/16/32). Refining one scheme alone is therefore hopeless, and a first-order
Richardson step of one scheme misses the slow part.

``method="extrapolated"`` returns :math:`2\bar K(2r) - \bar K(r)`, :math:`\bar K(r)` the mean of the
two schemes at ``refine=r`` (four solves, ~8× the cost of one finite-volume solve at ``r``): the
opposite-signed errors cancel in the mean and the first-order step removes the rest of the leading
error. Against converged values (a joint fit of both schemes at refine 2, 4, 8 with the shared limit
and the terms :math:`h^{2\alpha}` and :math:`h`) it is within 1 % on ``rixner64`` structures where
each scheme alone is 8–19 % off at refine 1, and within 0.1 % of √50 on the 8-pixel checkerboard
(``benchmarks/bench_property_accuracy.py``, ``docs/results/property_accuracy.md``). It is what the
``rixner_o1`` / ``rixner_o2`` property maps use. The exact value is reached only in the limit; the
extrapolation is an empirical cancellation, verified on those data, not a bound.

Accuracy and speed
------------------
``refine=r`` splits every pixel into :math:`r^d` sub-pixels. Both discretizations converge to the
continuum value of the pixelated medium, the finite volumes from below and Q1 from above (a
conforming method over-estimates the energy). Observed orders in :math:`h`,
:math:`\log_2\frac{K(1) - K(2)}{K(2) - K(4)}` at contrast 50: finite volumes 1.2–1.3, Q1 1.3–1.55
(medians; 20 ``pspgen36`` samples and 10 thresholded Gaussian-noise samples of 36²). Extrapolated
with these orders, the two methods agree to 0.1 % (max) on the ``pspgen36`` samples. Against those
extrapolated values the finite-volume error is 2.1 % median (4.5 % max) at ``refine=1`` and 0.8 %
(1.9 %) at ``refine=2``. Media that connect only through pixel corners converge more slowly (their
pixel-level error can reach ~20 %, see the Keller-duality test, and the section above).

Speed (``benchmarks/bench_conductivity.py``, contrast 50, batched): one NVIDIA H100 does
~81,000 images/s at 36² in float32 (~35,000 in float64) with 33 (48) CG iterations per load case,
and a 32³ volume in ~1 ms; one busy CPU core ~300 images/s at 36² in float32.

References:
    Zeman, Vondřejc, Novák & Marek (2010), Accelerating a FFT-based solver for numerical
    homogenization of periodic media by conjugate gradients, J. Comput. Phys. 229, 8065–8071.
    Schneider, Ospald & Kabel (2016), Computational homogenization of elasticity on a staggered
    grid, Int. J. Numer. Methods Eng. 105, 693–720.
    Hashin & Shtrikman (1962), A variational approach to the theory of the effective magnetic
    permeability of multiphase materials, J. Appl. Phys. 33, 3125–3131.

Example::

    >>> import torch
    >>> x = torch.zeros(8, 8); x[:4] = 1.0            # horizontal layers (stacked along y)
    >>> K = conductivity(x, phases=(1.0, 3.0))
    >>> [round(v, 6) for v in (K[0, 0].item(), K[1, 1].item())]   # arithmetic 2, harmonic 1.5
    [2.0, 1.5]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import as_tensor, check_binary, check_choice, check_int, check_positive
from ._krylov import batched_pcg, raise_if_not_converged

__all__ = ["conductivity", "corner_exponent", "hashin_shtrikman_bounds", "wiener_bounds"]

_DEFAULT_RTOL = {torch.float64: 1e-8, torch.float32: 1e-5}


def _check_args(x, phases, method, refine, ndim, dtype, rtol, maxiter):
    check_choice("ndim", ndim, (2, 3))
    if x.dim() < ndim:
        raise ValueError(
            f"x must have at least ndim={ndim} dims (..., {', '.join('N' * ndim)}), "
            f"got shape {tuple(x.shape)}"
        )
    if any(n < 1 for n in x.shape):
        raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")
    if not (isinstance(phases, (tuple, list)) and len(phases) == 2):
        raise ValueError(
            f"phases must be a pair (value of phase 0, value of phase 1), got {phases!r}"
        )
    for i, k in enumerate(phases):
        check_positive(f"phases[{i}]", k)
    check_choice("method", method, ("fft", "q1", "fem", "extrapolated"))
    if method != "fft" and ndim != 2:
        raise ValueError(
            f"method={method!r} is available for 2-D images only (ndim=2), got ndim={ndim}"
        )
    check_int("refine", refine, minimum=1)
    check_choice("dtype", dtype, (torch.float32, torch.float64))
    if rtol is not None:
        check_positive("rtol", rtol)
    check_int("maxiter", maxiter, minimum=1)
    check_binary("x", x)


def _refine(x, refine, ndim):
    for axis in range(-ndim, 0):
        x = x.repeat_interleave(refine, dim=axis)
    return x


def _forward_diff(u, c):
    """D_c u: difference to the next pixel along component c (image axis -1 - c), periodic.

    Written with slices rather than ``torch.roll`` (which concatenates copies): one pass over u.
    """
    dim = u.dim() - 1 - c
    n = u.shape[dim]
    out = torch.empty_like(u)
    torch.sub(u.narrow(dim, 1, n - 1), u.narrow(dim, 0, n - 1), out=out.narrow(dim, 0, n - 1))
    torch.sub(u.narrow(dim, 0, 1), u.narrow(dim, n - 1, 1), out=out.narrow(dim, n - 1, 1))
    return out


def _add_forward_diff_T_(out, g, c):
    """out += D_c^T g, the adjoint of :func:`_forward_diff`: (D^T g)_i = g_{i-1} - g_i. In place."""
    dim = g.dim() - 1 - c
    n = g.shape[dim]
    out.sub_(g)
    out.narrow(dim, 1, n - 1).add_(g.narrow(dim, 0, n - 1))
    out.narrow(dim, 0, 1).add_(g.narrow(dim, n - 1, 1))
    return out


def _inverse_laplacian_symbol(shape, dtype, device):
    """1 / sum_a (2 - 2 cos(2 pi xi_a / N_a)) on the rfftn grid of ``shape``; 0 at the zero mode."""
    ndim = len(shape)
    symbol = torch.zeros((), dtype=dtype, device=device)
    for pos, n in enumerate(shape):
        if pos == ndim - 1:
            xi = torch.arange(n // 2 + 1, dtype=dtype, device=device)
        else:
            xi = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
        lam = 2.0 - 2.0 * torch.cos(2.0 * math.pi * xi / n)
        symbol = symbol + lam.reshape((lam.numel(),) + (1,) * (ndim - 1 - pos))
    inv = torch.where(symbol > 0, 1.0 / torch.where(symbol > 0, symbol, 1.0), 0.0)
    return inv


def _conductivity_fv(x, phases, dtype, rtol, maxiter, ndim):
    """Finite-volume homogenization of a flat batch x (B, *image) -> (K (B, d, d), info)."""
    batch, image = x.shape[0], tuple(x.shape[1:])
    d = ndim
    k0, k1 = (float(v) for v in phases)
    k = k0 + (k1 - k0) * x.to(dtype)  # (B, *image)
    # Face conductivities, harmonic means: kf[:, c] sits on the face between a pixel and its
    # neighbour along component c. Shape (B, 1, d, *image): the 1 broadcasts over load cases.
    kf = torch.stack([2.0 * k * k.roll(-1, dims=-1 - c) / (k + k.roll(-1, dims=-1 - c))
                      for c in range(d)], dim=1).unsqueeze(1)
    loads = (batch, d) + image  # unknown: one fluctuation field per sample and load case

    def apply_A(phi):
        phi = phi.reshape(loads)
        out = torch.zeros_like(phi)
        for c in range(d):
            _add_forward_diff_T_(out, _forward_diff(phi, c).mul_(kf[:, :, c]), c)
        return out.reshape((batch * d,) + image)

    k_ref = math.sqrt(k0 * k1)
    inv_symbol = _inverse_laplacian_symbol(image, dtype, x.device) / k_ref
    fft_dims = tuple(range(-d, 0))

    def apply_M(r):
        r_hat = torch.fft.rfftn(r, dim=fft_dims).mul_(inv_symbol)
        return torch.fft.irfftn(r_hat, s=image, dim=fft_dims)

    # Right-hand side for E = e_j: -D_j^T(k_j), placed in load slot j.
    b = torch.zeros(loads, dtype=dtype, device=x.device)
    for j in range(d):
        _add_forward_diff_T_(b[:, j], kf[:, 0, j], j).neg_()
    phi, info = batched_pcg(apply_A, b.reshape((batch * d,) + image), apply_M,
                            rtol=rtol, maxiter=maxiter)
    phi = phi.reshape(loads)
    # Mean flux: K[:, a, j] = < kf_a (delta_aj + D_a phi_j) >.
    eye = torch.eye(d, dtype=dtype, device=x.device)
    flux = torch.stack([
        (kf[:, :, a] * (eye[a].reshape((1, d) + (1,) * d) + _forward_diff(phi, a)))
        .reshape(batch, d, -1).mean(-1)
        for a in range(d)], dim=1)
    info = {key: value.reshape(batch, d) for key, value in info.items()}
    return flux, info


def _q1_inverse_symbol(shape, dtype, device):
    r"""1 / symbol of the homogeneous (k = 1) periodic Q1 operator on the rfft2 grid; 0 at xi = 0.

    With :math:`c_a = \cos(2\pi\xi_a/N_a)` the 9-point Q1 stencil has the symbol
    :math:`\big((2 - 2c_0)(2 + c_1) + (2 - 2c_1)(2 + c_0)\big)/3`.
    """
    rows, cols = shape
    cx = torch.cos(2.0 * math.pi * torch.arange(cols // 2 + 1, dtype=dtype, device=device) / cols)
    cy = torch.cos(2.0 * math.pi * torch.fft.fftfreq(rows, d=1.0 / rows, dtype=dtype,
                                                       device=device) / rows)[:, None]
    symbol = ((2.0 - 2.0 * cx) * (2.0 + cy) + (2.0 - 2.0 * cy) * (2.0 + cx)) / 3.0
    return torch.where(symbol > 1e-300, 1.0 / torch.where(symbol > 1e-300, symbol, 1.0), 0.0)


def _conductivity_q1(x, phases, dtype, rtol, maxiter):
    r"""Matrix-free periodic Q1 elements on a flat batch x (B, rows, cols) -> (K (B, 2, 2), info).

    Nodes sit at the pixel corners, node ``(i, j)`` at the lower-left corner of pixel ``(i, j)``.
    With the edge differences :math:`d_0 = D_0u` (node to its right neighbour) and
    :math:`d_1 = D_1u` (to the node above), the exact Q1 energy of element :math:`e` is
    :math:`k_e\,[(a^2 + ab + b^2) + (c^2 + cd + d^2)]/3` (a, b its bottom/top ``d_0``, c, d its
    left/right ``d_1``), so :math:`A u = \sum_a D_a^{\mathsf T} g_a` with
    :math:`g_a = \tfrac13 (k^+ + k^-)\,d_a + \tfrac16 (k^+ S^+ d_a + k^- S^- d_a)` (the two
    elements that share the edge, :math:`S^\pm` the shift to the parallel edges). The load and
    the mean flux use the arithmetic mean of those two elements, :math:`\bar k_a`:
    :math:`b = -\sum_a D_a^{\mathsf T}(\bar k_a E_a)`, :math:`K E = \langle k\rangle E +
    \langle \bar k_a\, d_a\rangle`.
    """
    batch, image = x.shape[0], tuple(x.shape[1:])
    k0, k1 = (float(v) for v in phases)
    k = k0 + (k1 - k0) * x.to(dtype)  # (B, rows, cols): element (= pixel) conductivity
    # Edges along component c at node n: the elements on either side are pixel n and the pixel
    # one step back along the *other* axis.
    k_minus = [k.roll(1, dims=-2), k.roll(1, dims=-1)]  # element below (c=0) / to the left (c=1)
    k_plus = [k, k]
    other_dim = [-2, -1]
    loads = (batch, 2) + image
    coef = [(k_plus[c] + k_minus[c]).unsqueeze(1) for c in range(2)]  # (B, 1, rows, cols)
    c3 = [v / 3.0 for v in coef]
    kp6 = [k_plus[c].unsqueeze(1) / 6.0 for c in range(2)]
    km6 = [k_minus[c].unsqueeze(1) / 6.0 for c in range(2)]

    def apply_A(u):
        u = u.reshape(loads)
        out = torch.zeros_like(u)
        for c in range(2):
            d = _forward_diff(u, c)
            od = other_dim[c]
            g = c3[c] * d
            g.addcmul_(kp6[c], d.roll(-1, dims=od)).addcmul_(km6[c], d.roll(1, dims=od))
            _add_forward_diff_T_(out, g, c)
        return out.reshape((batch * 2,) + image)

    k_ref = math.sqrt(k0 * k1)
    inv_symbol = _q1_inverse_symbol(image, dtype, x.device) / k_ref

    def apply_M(r):
        r_hat = torch.fft.rfftn(r, dim=(-2, -1)).mul_(inv_symbol)
        return torch.fft.irfftn(r_hat, s=image, dim=(-2, -1))

    kbar = [0.5 * coef[c][:, 0] for c in range(2)]  # (B, rows, cols)
    b = torch.zeros(loads, dtype=dtype, device=x.device)
    for j in range(2):
        _add_forward_diff_T_(b[:, j], kbar[j], j).neg_()
    phi, info = batched_pcg(apply_A, b.reshape((batch * 2,) + image), apply_M,
                            rtol=rtol, maxiter=maxiter)
    phi = phi.reshape(loads)
    mean_k = k.reshape(batch, -1).mean(-1)
    flux = torch.stack([
        (kbar[a].unsqueeze(1) * _forward_diff(phi, a)).reshape(batch, 2, -1).mean(-1)
        for a in range(2)], dim=1)
    flux = flux + mean_k[:, None, None] * torch.eye(2, dtype=dtype, device=x.device)
    info = {key: value.reshape(batch, 2) for key, value in info.items()}
    return flux, info


def _periodic_q1_problem(shape):
    """The scikit-fem Q1 basis on a rows x cols pixel grid and the periodic node map."""
    import scipy.sparse as sp
    from skfem import Basis, ElementQuad1, MeshQuad

    rows, cols = shape
    mesh = MeshQuad.init_tensor(np.arange(cols + 1, dtype=float), np.arange(rows + 1, dtype=float))
    basis = Basis(mesh, ElementQuad1())
    # Element -> pixel (row = y, column = x) from the element centroids.
    centre = mesh.p[:, mesh.t].mean(axis=1)
    pixel = np.floor(centre[1]).astype(int) * cols + np.floor(centre[0]).astype(int)
    # Node -> periodic node: coordinates modulo the cell.
    node = (np.rint(mesh.p[1]).astype(int) % rows) * cols + (np.rint(mesh.p[0]).astype(int) % cols)
    P = sp.csr_matrix(
        (np.ones(node.size), (np.arange(node.size), node)), shape=(node.size, rows * cols)
    )
    return basis, pixel, P


def _conductivity_fem(x, phases):
    """Q1 finite elements (scikit-fem) on a flat batch x (B, rows, cols) -> K (B, 2, 2)."""
    import scipy.sparse.linalg as spla
    from skfem import BilinearForm, ElementQuad0, LinearForm, asm

    @BilinearForm
    def stiffness(u, v, w):
        return w["k"] * (u.grad[0] * v.grad[0] + u.grad[1] * v.grad[1])

    @LinearForm
    def load_x(v, w):
        return w["k"] * v.grad[0]

    @LinearForm
    def load_y(v, w):
        return w["k"] * v.grad[1]

    xs = x.detach().cpu().to(torch.float64).numpy().reshape(x.shape[0], -1)
    basis, pixel, P = _periodic_q1_problem(tuple(x.shape[1:]))
    basis0 = basis.with_element(ElementQuad0())
    area = float(np.prod(x.shape[1:]))
    k0, k1 = (float(v) for v in phases)
    out = np.empty((x.shape[0], 2, 2))
    for s in range(x.shape[0]):
        k_pixel = k0 + (k1 - k0) * xs[s]
        k = basis0.interpolate(k_pixel[pixel])
        A = (P.T @ asm(stiffness, basis, k=k) @ P).tocsc()
        # g_a = int k dv/dx_a; the load case E = e_j solves A phi = -g_j (phi pinned at node 0).
        g = np.stack([P.T @ asm(load_x, basis, k=k), P.T @ asm(load_y, basis, k=k)], axis=1)
        lu = spla.splu(A[1:, 1:])
        phi = np.zeros_like(g)
        phi[1:] = lu.solve(-g[1:])
        mean_k = float(k_pixel.mean())
        # <k (e_j + grad phi_j)>_a = <k> delta_aj + g_a . phi_j / |cell|
        out[s] = mean_k * np.eye(2) + g.T @ phi / area
    return torch.as_tensor(out)


def conductivity(
    x,
    phases=(1.0, 50.0),
    method="fft",
    refine=1,
    ndim=2,
    dtype=torch.float64,
    rtol=None,
    maxiter=1000,
    return_info=False,
):
    r"""Effective conductivity tensor of binary periodic images.

    Args:
        x: tensor (or NumPy array) of shape ``(..., N_y, N_x)`` (``ndim=2``) or
            ``(..., N_z, N_y, N_x)`` (``ndim=3``) with values 0./1. only; leading dims are batch
            dims. Pixels are square.
        phases: ``(k_0, k_1)``, the conductivity of phase 0 and of phase 1 (both > 0).
        method: ``"fft"`` (finite volumes, FFT-preconditioned batched CG in torch, 2-D and 3-D, runs
            on ``x``'s device; a lower bound), ``"q1"`` (Q1 elements, matrix-free, the same batched
            CG, 2-D; an upper bound), ``"fem"`` (scikit-fem Q1 elements with a sparse LU, 2-D, CPU;
            the check of ``"q1"``) or ``"extrapolated"`` (2-D: the mean of ``"fft"`` and ``"q1"``
            at ``refine`` and ``2 * refine``, extrapolated at first order, the converged value to
            ~1 % on corner-rich media; module docstring).
        refine: split every pixel into ``refine**ndim`` sub-pixels before solving (integer >= 1);
            for ``"extrapolated"`` the coarser of its two levels.
        ndim: spatial dimension of the images, 2 or 3: the last ``ndim`` dims of ``x`` are the
            image.
        dtype: ``torch.float64`` (default) or ``torch.float32`` for the ``"fft"`` solver.
        rtol: relative residual at which CG stops, per sample and load case; ``None`` means 1e-8 in
            float64 and 1e-5 in float32. Ignored by ``"fem"`` (direct solve).
        maxiter: CG iteration limit.
        return_info: also return a dict with ``iterations``, ``converged`` and ``residual`` of shape
            ``(..., ndim)`` (one entry per load case; ``None`` for ``"fem"``; for ``"extrapolated"``
            the iterations summed and the worst residual over its four solves).

    Returns:
        ``K`` of shape ``(..., ndim, ndim)`` in ``dtype`` on ``x``'s device (component 0 = image
        axis -1 "x", component 1 = axis -2 "y", component 2 = axis -3 "z"); ``(K, info)`` with
        ``return_info=True``. ``K`` is symmetric to the solver tolerance (not symmetrized).

    Raises:
        TypeError: if ``x`` is not a tensor, array or sequence of numbers, or ``refine`` /
            ``maxiter`` is not an integer.
        ValueError: for NaN or non-binary ``x``, too few dims, ``phases`` not two positive numbers,
            an unknown ``method``, a 2-D-only method with ``ndim=3``, or a bad ``refine``/``dtype``/
            ``rtol``/``maxiter``.
        RuntimeError: if CG does not converge for some sample; the message names the samples (their
            index in the batch dims) and their residuals.

    Example::

        >>> i = torch.arange(16)
        >>> board = ((i[:, None] // 8 + i[None, :] // 8) % 2).float()   # exact: sqrt(50) = 7.071
        >>> [round(conductivity(board, method=m)[0, 0].item(), 2)
        ...  for m in ("fft", "q1", "extrapolated")]
        [3.88, 11.54, 7.07]
        >>> x = torch.zeros(2, 16, 16); x[:, 4:12, 4:12] = 1.0   # square inclusions
        >>> K = conductivity(x, phases=(1.0, 10.0))
        >>> K.shape, bool(torch.allclose(K[:, 0, 0], K[:, 1, 1]))
        (torch.Size([2, 2, 2]), True)
    """
    x = as_tensor("x", x)  # numpy arrays and nested sequences too, as permeability
    _check_args(x, phases, method, refine, ndim, dtype, rtol, maxiter)
    refine, maxiter = int(refine), int(maxiter)
    if method == "extrapolated":
        return _conductivity_extrapolated(x, phases, refine, dtype, rtol, maxiter, return_info)
    batch_shape = tuple(x.shape[:-ndim])
    flat = x.reshape((-1,) + tuple(x.shape[-ndim:]))
    flat = _refine(flat, refine, ndim)
    if method == "fem":
        K = _conductivity_fem(flat, phases).to(dtype=dtype, device=x.device)
        K = K.reshape(batch_shape + (ndim, ndim))
        return (K, None) if return_info else K
    if rtol is None:
        rtol = _DEFAULT_RTOL[dtype]
    if method == "q1":
        K, info = _conductivity_q1(flat, phases, dtype, rtol, maxiter)
    else:
        K, info = _conductivity_fv(flat, phases, dtype, rtol, maxiter, ndim)
    if not bool(info["converged"].all()):
        flat_info = {key: value.reshape(-1) for key, value in info.items()}
        raise_if_not_converged(flat_info, rtol, maxiter, what="conductivity",
                               sample_shape=batch_shape + (ndim,))
    K = K.reshape(batch_shape + (ndim, ndim))
    if return_info:
        return K, {key: value.reshape(batch_shape + (ndim,)) for key, value in info.items()}
    return K


def _conductivity_extrapolated(x, phases, refine, dtype, rtol, maxiter, return_info):
    """Bracket mean at refine r and 2r, first-order Richardson: 2 K_mean(2r) - K_mean(r)."""
    means, infos = [], []
    for r in (refine, 2 * refine):
        pair = [conductivity(x, phases, method=m, refine=r, dtype=dtype, rtol=rtol,
                             maxiter=maxiter, return_info=True) for m in ("fft", "q1")]
        means.append(0.5 * (pair[0][0] + pair[1][0]))
        infos.extend(info for _, info in pair)
    K = 2.0 * means[1] - means[0]
    if not return_info:
        return K
    info = {
        "iterations": sum(i["iterations"] for i in infos),
        "converged": torch.stack([i["converged"] for i in infos]).all(0),
        "residual": torch.stack([i["residual"] for i in infos]).amax(0),
    }
    return K, info


def corner_exponent(phases):
    r"""Order in h at which point (corner) contacts make a discretization converge.

    Near a point where two pixels of each phase meet diagonally (a checkerboard corner) the
    potential behaves like :math:`r^{\alpha}` with
    :math:`\alpha = \frac4\pi\arctan\sqrt{k_{\min}/k_{\max}}`, so the energy (and the effective
    conductivity) of a discretization of mesh size h is off by :math:`O(h^{2\alpha})`: 0.358 at
    contrast 50, 2 for equal phases.

    Args:
        phases: ``(k_0, k_1)``, both > 0.

    Returns:
        float, :math:`2\alpha \in (0, 2]` (2 for equal phases: no singularity, the regular
        :math:`h^2` of the energy).

    Raises:
        ValueError: if ``phases`` is not a pair of positive numbers.

    Example::

        >>> round(corner_exponent((1.0, 50.0)), 4)
        0.3578
    """
    if not (isinstance(phases, (tuple, list)) and len(phases) == 2):
        raise ValueError(
            f"phases must be a pair (value of phase 0, value of phase 1), got {phases!r}"
        )
    for i, k in enumerate(phases):
        check_positive(f"phases[{i}]", k)
    k0, k1 = sorted(float(v) for v in phases)
    return 8.0 / math.pi * math.atan(math.sqrt(k0 / k1))


def wiener_bounds(volume_fraction, phases):
    r"""Wiener bounds: harmonic and arithmetic means of the phase values.

    Every eigenvalue of the effective conductivity of any two-phase medium with phase-1 fraction
    :math:`f` lies in :math:`[(\frac{1-f}{k_0} + \frac{f}{k_1})^{-1},\ (1-f)k_0 + f k_1]`.

    Args:
        volume_fraction: fraction of phase 1 (float or tensor, in [0, 1]).
        phases: ``(k_0, k_1)``.

    Returns:
        ``(lower, upper)``, of the type and shape of ``volume_fraction``.

    Example::

        >>> wiener_bounds(0.5, (1.0, 3.0))
        (1.5, 2.0)
    """
    k0, k1 = phases
    f = volume_fraction
    return 1.0 / ((1 - f) / k0 + f / k1), (1 - f) * k0 + f * k1


def hashin_shtrikman_bounds(volume_fraction, phases, ndim=2):
    r"""Hashin–Shtrikman bounds for the conductivity of a statistically isotropic two-phase medium.

    With :math:`k_0 \le k_1` (swapped otherwise), phase fractions :math:`f_0 = 1 - f`,
    :math:`f_1 = f` and dimension :math:`d`,

    .. math::

        k_{HS}^- = k_0 + \frac{f_1}{1/(k_1 - k_0) + f_0/(d\,k_0)},\qquad
        k_{HS}^+ = k_1 + \frac{f_0}{1/(k_0 - k_1) + f_1/(d\,k_1)} .

    Args:
        volume_fraction: fraction of phase 1 (float or tensor).
        phases: ``(k_0, k_1)``.
        ndim: spatial dimension d (2 or 3).

    Returns:
        ``(lower, upper)``.

    Example::

        >>> lo, hi = hashin_shtrikman_bounds(0.5, (1.0, 3.0))
        >>> round(lo, 6), round(hi, 6)
        (1.666667, 1.8)
    """
    k0, k1 = phases
    f0, f1 = 1 - volume_fraction, volume_fraction
    if k0 > k1:
        k0, k1, f0, f1 = k1, k0, f1, f0
    if k0 == k1:
        return k0 + 0 * f1, k0 + 0 * f1
    lower = k0 + f1 / (1.0 / (k1 - k0) + f0 / (ndim * k0))
    upper = k1 + f0 / (1.0 / (k0 - k1) + f1 / (ndim * k1))
    return lower, upper
