r"""Computable style statistics of microstructures: Gram matrices of a fixed feature bank, two-point
correlations, and the style losses built on them.

The VAE-Regression paper (Sardeshmukh et al.) replaces the pixel-wise reconstruction loss by the
*style loss* of Gatys et al. (2016): the squared difference of Gram matrices of the feature maps of
a pretrained VGG19, on 2-D slices along all three axes of a 3-D volume. Pretrained weights cannot be
downloaded here, so this module computes the same kind of statistic from networks and quantities we
own (``docs/architecture.md`` § "Cell and units": every image lives on a periodic cell).

**Fixed feature bank** (:class:`FeatureBank`). ``levels`` layers of ``channels`` 3×3 filters drawn
once from a seeded generator (entries N(0, 1/9) with each filter's mean removed, so a constant
image gives zero response), applied with circular padding and followed by ReLU; between layers the
maps are average-pooled by 2. The first layer also keeps the image itself as one more feature map,
so that G¹ carries the volume fraction (G¹₀₀ = ⟨x²⟩ = vf for a binary x) and the correlation of
each phase with the edge responses: zero-mean filters alone see only interfaces, and a decoder
trained with such a bank left every decoded volume at vf 0.53–0.56 whatever the target
(``docs/results/inversion.md``); VGG's first-layer filters are not zero-mean, so its Gram matrices
carry the mean intensity too. Layer l has C_l feature maps of M_l pixels, flattened to F^l
(C_l × M_l), and

.. math::

    G^l = \frac{1}{M_l} F^l (F^l)^\top, \qquad
    \mathcal L_{\rm gram}(x, \hat x)
        = \sum_l \frac{1}{4 C_l^2} \sum_{ij} (G^l_{ij} - \hat G^l_{ij})^2,

which is the paper's ``1/(4 C_l² M_l²) Σ (G − Ĝ)²`` with the unnormalized Gram matrix. Random,
untrained convolutional features carry texture statistics well (Ustyuzhaninov et al. 2017, "What
does it take to generate natural textures?"); the bank is fixed (never trained), so the loss cannot
collapse. In 3-D the bank runs on every 2-D slice along each of the three axes (3 N slices of an
N³ volume; the paper matches all 3 · 51 slices of its volumes) and the losses are averaged, so
elongation along any axis is matched.

**Two-point correlations** (:func:`two_point`). The periodic autocorrelation of phase 1,
:math:`S_2(r) = \frac{1}{|Ω|}\sum_u x(u) x(u + r)`, by FFT. Averaged over the 2-D slices
perpendicular to axis a, the slice autocorrelation equals the 3-D one restricted to the plane
r_a = 0, so the three slice statistics of a volume are the three coordinate planes through the
origin of its 3-D S_2 (one FFT). :func:`two_point_style_loss` compares the statistics within a
window of lags ``|r_i| ≤ max_lag``.

:func:`style_loss` multiplies the Gram and two-point losses by :data:`STYLE_SCALES` (1000) so that
they are of order one between unrelated microstructures, on the scale of the regression NLL and
the KL (the paper normalizes its three loss terms to one order of magnitude, its appendix A).

**Bernoulli** (:func:`bernoulli_loss`): the pixel-wise alternative, −Σ log Bernoulli(x | p̂).

Every loss takes a target ``x`` in {0, 1} (or [0, 1]) and a prediction ``x_hat`` of probabilities in
[0, 1] (``bernoulli_loss`` takes logits), of shape ``(B, *image)``, and returns a ``(B,)`` tensor.

References:
    Gatys, L. A., Ecker, A. S. and Bethge, M. (2016). Image style transfer using convolutional
    neural networks. CVPR.
    Sardeshmukh, A., Reddy, S., Gautham, B. P. and Bhattacharyya, P. Material microstructure design
    using VAE-Regression with multimodal prior.
    Torquato, S. (2002). Random Heterogeneous Materials. Springer (two-point correlations).

Example::

    >>> import torch
    >>> bank = FeatureBank(ndim=2, seed=0)
    >>> x = (torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    >>> gram_style_loss(x, x, bank).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._random import make_generator
from .._validation import check_choice, check_int, check_seed

__all__ = [
    "STYLE_LOSSES",
    "STYLE_SCALES",
    "FeatureBank",
    "bernoulli_loss",
    "gram_style_loss",
    "slices",
    "style_loss",
    "two_point",
    "two_point_style_loss",
]

#: Reconstruction losses :func:`style_loss` accepts by name.
STYLE_LOSSES = ("gram", "two_point", "bernoulli")
#: Multipliers :func:`style_loss` applies so that ``"gram"`` and ``"two_point"`` are of order one
#: between unrelated microstructures of one family (measured on ``filtered3d`` at 16³: raw values
#: ≈ 1e-3); the Bernoulli NLL is left as it is.
STYLE_SCALES = {"gram": 1000.0, "two_point": 1000.0, "bernoulli": 1.0}


def _check_pair(x: Tensor, x_hat: Tensor, ndim: int) -> None:
    for name, t in (("x", x), ("x_hat", x_hat)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.shape != x_hat.shape or x.dim() != ndim + 1:
        raise ValueError(
            f"x and x_hat must both have shape (B, *image) with {ndim} image dims, got "
            f"{tuple(x.shape)} and {tuple(x_hat.shape)}"
        )


def slices(x: Tensor) -> list[Tensor]:
    """The 2-D slices of a batch along every axis: ``[x]`` in 2-D, three stacks in 3-D.

    Args:
        x (Tensor): ``(B, ny, nx)`` or ``(B, n0, n1, n2)``.

    Returns:
        list[Tensor]: in 2-D ``[x]``; in 3-D the slices perpendicular to axes 0, 1 and 2, each of
        shape ``(B · n_a, ·, ·)``.

    Raises:
        ValueError: if ``x`` is not 3- or 4-dimensional.

    Example::

        >>> [s.shape for s in slices(torch.zeros(2, 3, 4, 5))]
        [torch.Size([6, 4, 5]), torch.Size([8, 3, 5]), torch.Size([10, 3, 4])]
    """
    if x.dim() == 3:
        return [x]
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, ny, nx) or (B, n0, n1, n2), got {tuple(x.shape)}")
    out = []
    for axis in (1, 2, 3):
        s = x.movedim(axis, 1)
        out.append(s.reshape(-1, *s.shape[2:]))
    return out


class FeatureBank(nn.Module):
    """A fixed, seeded bank of random 3×3 periodic convolutions whose Gram matrices define a style.

    Args:
        ndim (int): image dimension, 2 or 3 (3-D volumes are processed slice by slice).
        channels (int): filters per layer (C_l).
        levels (int): number of layers; layer l + 1 sees the average-pooled (by 2) ReLU maps of
            layer l.
        seed (int): seed of the filter weights (the bank is a deterministic function of it).

    Raises:
        ValueError: if ``ndim`` is not 2 or 3, or ``channels`` / ``levels`` are not positive.

    Example::

        >>> bank = FeatureBank(ndim=3, channels=4, levels=2, seed=1)
        >>> [g.shape for g in bank.gram(torch.zeros(2, 8, 8))]  # the image is channel 0 of layer 1
        [torch.Size([2, 5, 5]), torch.Size([2, 4, 4])]
    """

    def __init__(self, ndim: int = 2, channels: int = 8, levels: int = 2, seed: int = 0):
        super().__init__()
        check_choice("ndim", ndim, (2, 3))
        self.ndim = ndim
        self.channels = check_int("channels", channels, minimum=1)
        self.levels = check_int("levels", levels, minimum=1)
        self.seed = check_seed("seed", seed)
        gen = make_generator(self.seed)
        weights = []
        c_in = 1
        for _ in range(self.levels):
            w = torch.randn(self.channels, c_in, 3, 3, generator=gen) / 3.0
            w = w - w.mean(dim=(-2, -1), keepdim=True)
            weights.append(w)
            c_in = self.channels
        for i, w in enumerate(weights):
            self.register_buffer(f"weight{i}", w)

    def gram(self, images: Tensor) -> list[Tensor]:
        """Gram matrices ``G^l = F^l F^lᵀ / M_l`` of 2-D images ``(B, ny, nx)``, one per layer
        (layer 1's features are the image and its ``channels`` filter responses)."""
        h = images.unsqueeze(1)
        out = []
        for i in range(self.levels):
            if i > 0:
                h = nn.functional.avg_pool2d(h, 2, ceil_mode=True)
            x_in = h
            h = nn.functional.pad(h, (1, 1, 1, 1), mode="circular")
            h = torch.relu(nn.functional.conv2d(h, getattr(self, f"weight{i}")))
            f = (torch.cat([x_in, h], dim=1) if i == 0 else h).flatten(2)
            out.append(f @ f.transpose(1, 2) / f.shape[-1])
        return out


def gram_style_loss(x: Tensor, x_hat: Tensor, bank: FeatureBank) -> Tensor:
    r"""Style loss :math:`\sum_l \frac{1}{4C_l^2}\sum_{ij}(G^l_{ij}-\hat G^l_{ij})^2` per sample.

    In 3-D the loss is averaged over the slices along each axis and summed over the three axes.

    Args:
        x (Tensor): target images ``(B, *image)`` in [0, 1].
        x_hat (Tensor): predicted probabilities, same shape.
        bank (FeatureBank): the fixed features (its ``ndim`` must match the images).

    Returns:
        Tensor: ``(B,)``.

    Raises:
        TypeError: if ``bank`` is not a :class:`FeatureBank`.
        ValueError: on shape mismatch.

    Example::

        >>> bank = FeatureBank(ndim=3, seed=0)
        >>> x = torch.zeros(1, 8, 8, 8); x[..., :4] = 1.0
        >>> bool(gram_style_loss(x, x.transpose(1, 3), bank) > 0)
        True
    """
    if not isinstance(bank, FeatureBank):
        raise TypeError(f"bank must be a FeatureBank, got {type(bank).__name__}")
    _check_pair(x, x_hat, bank.ndim)
    batch = x.shape[0]
    total = x.new_zeros(batch)
    for s, s_hat in zip(slices(x), slices(x_hat)):
        for g, g_hat in zip(bank.gram(s), bank.gram(s_hat)):
            per_slice = ((g - g_hat) ** 2).sum((-2, -1)) / (4 * g.shape[-1] ** 2)
            total = total + per_slice.reshape(batch, -1).mean(-1)
    return total


def two_point(x: Tensor, ndim: int | None = None) -> Tensor:
    r"""Periodic two-point autocorrelation :math:`S_2(r)` of phase 1, lag 0 at index 0.

    Args:
        x (Tensor): ``(..., *image)`` values in [0, 1].
        ndim (int, optional): number of trailing image dims (default ``x.dim() - 1``).

    Returns:
        Tensor: same shape as ``x``; ``S_2(0)`` is the volume fraction (of a binary image).

    Example::

        >>> x = torch.zeros(1, 4, 4); x[:, :, :2] = 1.0
        >>> two_point(x)[0, 0].tolist()
        [0.5, 0.25, 0.0, 0.25]
    """
    ndim = x.dim() - 1 if ndim is None else ndim
    dims = tuple(range(-ndim, 0))
    f = torch.fft.rfftn(x, dim=dims)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return torch.fft.irfftn(f * f.conj(), s=x.shape[-ndim:], dim=dims) / n


def _window(s2: Tensor, ndim: int, max_lag: int) -> Tensor:
    # lags -max_lag..max_lag on every axis (periodic)
    for d in range(-ndim, 0):
        n = s2.shape[d]
        k = min(max_lag, (n - 1) // 2)
        idx = torch.cat([torch.arange(0, k + 1), torch.arange(n - k, n)]).to(s2.device)
        s2 = s2.index_select(d, idx)
    return s2


def two_point_style_loss(x: Tensor, x_hat: Tensor, max_lag: int = 8) -> Tensor:
    r"""Squared difference of slice two-point correlations within ``|r_i| ≤ max_lag``, per sample.

    2-D: the mean of ``(S_2(r) − Ŝ_2(r))²`` over the window. 3-D: the same mean over the three
    coordinate planes of the 3-D S_2 (the slice-averaged 2-D statistics along each axis, see the
    module docstring).

    Args:
        x (Tensor): target images ``(B, *image)`` (2-D or 3-D).
        x_hat (Tensor): predicted probabilities, same shape.
        max_lag (int): half-width of the lag window (≥ 1).

    Returns:
        Tensor: ``(B,)``.

    Raises:
        ValueError: on shape mismatch or a bad ``max_lag``.

    Example::

        >>> x = torch.zeros(1, 8, 8); x[..., :4] = 1.0
        >>> bool(two_point_style_loss(x, x.transpose(1, 2)) > 0)
        True
    """
    max_lag = check_int("max_lag", max_lag, minimum=1)
    if not isinstance(x, Tensor) or x.dim() not in (3, 4):
        raise ValueError(f"x must be a tensor of shape (B, ny, nx) or (B, n0, n1, n2), got {x!r}")
    ndim = x.dim() - 1
    _check_pair(x, x_hat, ndim)
    diff = _window(two_point(x) - two_point(x_hat), ndim, max_lag)
    if ndim == 2:
        return (diff**2).flatten(1).mean(-1)
    planes = (diff[:, 0], diff[:, :, 0], diff[:, :, :, 0])
    return torch.cat([(p**2).flatten(1) for p in planes], dim=1).mean(-1)


def bernoulli_loss(x: Tensor, logits: Tensor) -> Tensor:
    """Pixel-wise negative Bernoulli log-likelihood ``−Σ log Bern(x | sigmoid(logits))`` per sample.

    Args:
        x (Tensor): targets ``(B, *image)`` in [0, 1].
        logits (Tensor): logits, same shape.

    Returns:
        Tensor: ``(B,)``.

    Example::

        >>> round(float(bernoulli_loss(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))), 4)
        2.7726
    """
    if not isinstance(x, Tensor) or not isinstance(logits, Tensor) or x.shape != logits.shape:
        raise ValueError("x and logits must be tensors of the same shape (B, *image)")
    nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(-1)


def style_loss(
    kind: str, x: Tensor, logits: Tensor, bank: FeatureBank | None = None, max_lag: int = 8
) -> Tensor:
    """Dispatch on ``kind`` (one of :data:`STYLE_LOSSES`) with decoder ``logits``; ``(B,)``.

    The result is multiplied by :data:`STYLE_SCALES` ``[kind]``.

    Args:
        kind (str): ``"gram"``, ``"two_point"`` or ``"bernoulli"``.
        x (Tensor): targets ``(B, *image)``.
        logits (Tensor): decoder logits, same shape.
        bank (FeatureBank, optional): required for ``"gram"``.
        max_lag (int): lag window of ``"two_point"``.

    Returns:
        Tensor: ``(B,)``.

    Raises:
        ValueError: on an unknown ``kind`` or a missing bank.

    Example::

        >>> style_loss("bernoulli", torch.ones(1, 2, 2), torch.zeros(1, 2, 2)).shape
        torch.Size([1])
    """
    check_choice("kind", kind, STYLE_LOSSES)
    if kind == "bernoulli":
        return bernoulli_loss(x, logits)
    probs = torch.sigmoid(logits)
    if kind == "gram":
        if bank is None:
            raise ValueError("style_loss('gram', ...) needs bank=FeatureBank(...)")
        return STYLE_SCALES["gram"] * gram_style_loss(x, probs, bank)
    return STYLE_SCALES["two_point"] * two_point_style_loss(x, probs, max_lag=max_lag)
