r"""Two-point statistics of periodic microstructures.

For an image :math:`x` on a periodic grid of :math:`n` pixels the two-point correlation is the
circular autocorrelation

.. math::

    S_2(r) = \frac1n \sum_j x_j\, x_{j+r}
           = \frac1n\,\mathcal F^{-1}\big[\,|\mathcal F x|^2\,\big](r)
    \qquad (\text{Wiener–Khinchin}),

computed with one real FFT pair per image (:math:`O(n\log n)`). For a binary image,
:math:`S_2(r)` is the probability that two pixels a lag :math:`r` apart both belong to phase 1,
:math:`S_2(0)` is the volume fraction, and :math:`S_2(r)\to vf^2` for uncorrelated pixels. Lags
are in FFT order (0, 1, …, −1), like :func:`psppyro.process.spectral.wavenumbers`.

The correlation length along an axis is read off the normalized autocovariance
:math:`C(r) = (S_2(r) - \bar x^2)/(S_2(0) - \bar x^2)` along that axis: the first lag where
:math:`C` drops below :math:`1/e`, linearly interpolated between the two neighbouring integer lags.

References:
    Torquato, S. (2002). Random Heterogeneous Materials. Springer, ch. 2.
"""

from __future__ import annotations

import math

import torch

from .._validation import as_tensor, check_finite, check_int

__all__ = ["correlation_length", "two_point_correlation"]


def _check_image(x, ndim):
    check_int("ndim", ndim, minimum=1, maximum=3)
    x = as_tensor("x", x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() < ndim:
        raise ValueError(f"x must have at least ndim={ndim} dimensions, got shape {tuple(x.shape)}")
    check_finite("x", x)
    return x


def two_point_correlation(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Periodic two-point (auto)correlation S2(r) of images, batched.

    Args:
        x (torch.Tensor): images ``(..., *shape)`` (binary or real-valued).
        ndim (int): number of trailing spatial dimensions (2 for images, 3 for volumes).

    Returns:
        torch.Tensor: ``S2`` of shape ``x.shape`` (lags in FFT order), ``S2[..., 0, 0]`` equal to
        the mean of ``x**2`` (the volume fraction for binary images).

    Raises:
        ValueError: if ``x`` has fewer than ``ndim`` dimensions, non-finite values, or ``ndim``
            is not 1, 2 or 3.

    Example::

        >>> x = torch.zeros(4, 4); x[:, :2] = 1.0          # vertical stripes
        >>> S2 = two_point_correlation(x)
        >>> S2[0, 0].item(), S2[0, 2].item(), S2[2, 0].item()
        (0.5, 0.0, 0.5)
    """
    x = _check_image(x, ndim)
    dims = tuple(range(-ndim, 0))
    shape = x.shape[x.dim() - ndim :]
    X = torch.fft.rfftn(x, dim=dims)
    return torch.fft.irfftn(X.real**2 + X.imag**2, s=shape, dim=dims) / math.prod(shape)


def correlation_length(x: torch.Tensor, axis: int = -1, ndim: int = 2) -> torch.Tensor:
    """Correlation length (in pixels) along one spatial axis, per sample.

    The first lag where the normalized autocovariance along ``axis`` falls below 1/e, linearly
    interpolated between integer lags. A field that stays above 1/e up to half the period is
    censored at ``N/2`` (the largest distinct periodic lag); a constant image gives NaN.

    Args:
        x (torch.Tensor): images ``(..., *shape)``.
        axis (int): spatial axis, ``-ndim … -1`` (or the equivalent non-negative index of ``x``).
        ndim (int): number of trailing spatial dimensions.

    Returns:
        torch.Tensor: shape ``x.shape[:-ndim]``, lengths in pixels.

    Raises:
        ValueError: if ``axis`` is not one of the last ``ndim`` axes, or as
            :func:`two_point_correlation`.

    Example::

        >>> x = torch.zeros(8, 8); x[:, :4] = 1.0          # vertical stripes, period 8
        >>> L = correlation_length(x, axis=-2), correlation_length(x, axis=-1)
        >>> round(float(L[0]), 4), round(float(L[1]), 4)
        (4.0, 1.2642)
    """
    x = _check_image(x, ndim)
    axis = check_int("axis", axis, minimum=None)
    ax = axis if axis < 0 else axis - x.dim()
    if not (-ndim <= ax <= -1):
        raise ValueError(
            f"axis must be one of the spatial axes {tuple(range(-ndim, 0))} of x with shape "
            f"{tuple(x.shape)}, got {axis!r}"
        )
    S2 = two_point_correlation(x, ndim)
    # restrict to lags along `axis` (all other lags zero)
    index = [0] * ndim
    index[ndim + ax] = slice(None)
    line = S2[(Ellipsis, *index)]  # (..., N)
    mean = x.mean(tuple(range(-ndim, 0)))
    cov = line - mean.unsqueeze(-1) ** 2
    c = cov / cov[..., :1]
    n_half = x.shape[ax] // 2
    c = c[..., : n_half + 1]
    below = c < math.exp(-1.0)
    has = below.any(-1)
    first = torch.where(has, below.float().argmax(-1), torch.full_like(mean, n_half).long())
    first = first.clamp_min(1)
    c_hi = c.gather(-1, (first - 1).unsqueeze(-1)).squeeze(-1)
    c_lo = c.gather(-1, first.unsqueeze(-1)).squeeze(-1)
    frac = (c_hi - math.exp(-1.0)) / (c_hi - c_lo)
    length = (first - 1).to(c.dtype) + frac
    length = torch.where(has, length, torch.full_like(length, float(n_half)))
    return torch.where(cov[..., 0] > 0, length, torch.full_like(length, math.nan))
