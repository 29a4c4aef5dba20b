"""Network blocks of the learned links: residual MLPs and periodic convolutional stacks.

A residual block keeps the width and adds a two-layer correction to its input (pre-activation form,
He et al. 2016, "Identity mappings in deep residual networks")::

    h ← h + W₂ ELU(W₁ ELU(h) + b₁) + b₂

:class:`ResidualMLP` is ``Linear(d_in → width)``, ``num_blocks`` residual blocks, ``ELU`` and
``Linear(width → d_out)``. The convolutional stacks use circular padding because every
microstructure in this package lives on a periodic cell
(``docs/architecture.md`` § "Cell and units"): a feature leaving the right edge comes back on the
left, and the networks see it that way.

:class:`ConvEncoder` halves the image :func:`downsampling_levels` times with stride-2 convolutions
(channels 16, 32, 64, … up to 128) and maps the flattened features to ``d_out`` with a
:class:`ResidualMLP`; :class:`ConvDecoder` mirrors it (linear map to the coarsest grid, then
nearest-neighbour upsampling followed by a 3×3 circular convolution per level) and returns one logit
per pixel.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvDecoder", "ConvEncoder", "ResidualBlock", "ResidualMLP", "downsampling_levels"]


class ResidualBlock(nn.Module):
    """One pre-activation residual block ``h + W₂ ELU(W₁ ELU(h))`` of constant width.

    Args:
        width (int): feature size of input and output.
        dropout (float): dropout probability on the hidden features (training mode only);
            0 (default) adds nothing and leaves the state dict unchanged.

    Example::

        >>> import torch
        >>> ResidualBlock(8)(torch.zeros(3, 8)).shape
        torch.Size([3, 8])
    """

    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.linear2 = nn.Linear(width, width)
        self.dropout = float(dropout)

    def forward(self, h: Tensor) -> Tensor:
        g = nn.functional.elu(self.linear1(nn.functional.elu(h)))
        if self.dropout > 0:
            g = nn.functional.dropout(g, self.dropout, self.training)
        return h + self.linear2(g)


class ResidualMLP(nn.Module):
    """``Linear(d_in → width)``, ``num_blocks`` :class:`ResidualBlock`, ELU, ``Linear(→ d_out)``.

    Args:
        d_in (int): input features (last dimension; leading dimensions are batch dimensions).
        d_out (int): output features.
        width (int): hidden width.
        num_blocks (int): number of residual blocks.
        dropout (float): dropout probability inside each block (see :class:`ResidualBlock`).

    Example::

        >>> import torch
        >>> ResidualMLP(2, 5, width=16, num_blocks=2)(torch.zeros(4, 3, 2)).shape
        torch.Size([4, 3, 5])
    """

    def __init__(self, d_in: int, d_out: int, width: int = 64, num_blocks: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.input = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout) for _ in range(num_blocks)])
        self.output = nn.Linear(width, d_out)

    def forward(self, h: Tensor) -> Tensor:
        return self.output(nn.functional.elu(self.blocks(self.input(h))))


def downsampling_levels(shape: tuple[int, int], coarsest: int = 8) -> int:
    """How many times a 2-D image can be halved while both sides stay even and ≥ ``coarsest``.

    Args:
        shape (tuple[int, int]): image shape ``(ny, nx)``.
        coarsest (int): smallest side allowed after halving.

    Returns:
        int: the number of stride-2 levels used by :class:`ConvEncoder` / :class:`ConvDecoder`.

    Example::

        >>> downsampling_levels((36, 36)), downsampling_levels((128, 128))
        (2, 4)
    """
    ny, nx = shape
    levels = 0
    while ny % 2 == 0 and nx % 2 == 0 and ny // 2 >= coarsest and nx // 2 >= coarsest:
        ny, nx, levels = ny // 2, nx // 2, levels + 1
    return levels


def _channels(level: int) -> int:
    return min(16 * 2**level, 128)


class ConvEncoder(nn.Module):
    """Periodic convolutional encoder: image ``(..., ny, nx)`` → features ``(..., d_out)``.

    Args:
        shape (tuple[int, int]): image shape.
        d_out (int): output features.
        width (int): width of the final :class:`ResidualMLP`.

    Example::

        >>> import torch
        >>> ConvEncoder((36, 36), 10)(torch.zeros(2, 36, 36)).shape
        torch.Size([2, 10])
    """

    def __init__(self, shape: tuple[int, int], d_out: int, width: int = 256):
        super().__init__()
        self.shape = tuple(shape)
        levels = downsampling_levels(self.shape)
        layers, c_in = [], 1
        for level in range(levels):
            c_out = _channels(level)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, padding_mode="circular"),
                nn.ELU(),
            ]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        coarse = (self.shape[0] >> levels) * (self.shape[1] >> levels)
        self.head = ResidualMLP(c_in * coarse, d_out, width=width, num_blocks=1)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-2]
        h = self.convs(x.reshape(-1, 1, *self.shape))
        return self.head(h.flatten(1)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """Periodic convolutional decoder: features ``(..., d_in)`` → logits ``(..., ny, nx)``.

    Args:
        d_in (int): input features.
        shape (tuple[int, int]): image shape.

    Example::

        >>> import torch
        >>> ConvDecoder(10, (36, 36))(torch.zeros(2, 10)).shape
        torch.Size([2, 36, 36])
    """

    def __init__(self, d_in: int, shape: tuple[int, int]):
        super().__init__()
        self.shape = tuple(shape)
        self.levels = downsampling_levels(self.shape)
        self.coarse = (self.shape[0] >> self.levels, self.shape[1] >> self.levels)
        self.c0 = _channels(self.levels)
        self.input = nn.Linear(d_in, self.c0 * self.coarse[0] * self.coarse[1])
        layers, c_in = [], self.c0
        for level in reversed(range(self.levels)):
            c_out = _channels(level)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular"),
                nn.ELU(),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1, padding_mode="circular"))
        self.convs = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        batch = h.shape[:-1]
        g = nn.functional.elu(self.input(h.reshape(-1, h.shape[-1])))
        g = g.reshape(-1, self.c0, *self.coarse)
        return self.convs(g).reshape(*batch, *self.shape)
