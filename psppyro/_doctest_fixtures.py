"""Toy models for the docstring examples, which run as doctests in the default test suite.

The design examples need a model of the design protocol (``docs/architecture.md`` § "The design
protocol") and the evaluation examples a process to simulate. Writing them out in every docstring
repeated the same ten lines; the examples import them from here instead::

    >>> from psppyro._doctest_fixtures import CoinProcess, ToyChain, white_fraction

Both are exact and cheap, so an example's expected output can be derived by hand:

- :class:`ToyChain`: m = φ + slope · z + N(0, noise²) with z ~ N(0, 1), so
  m | φ ~ N(φ, slope² + noise²); with the defaults, P(m ∈ [0.9, 1.1] | φ) is largest at φ = 1.
- :class:`CoinProcess`: 1 × 1-pixel "images" that are phase 1 with probability φ; with
  :func:`white_fraction` as the property, P(m ∈ [0.5, 1.5] | φ) = φ.

This module is not part of the public API; it imports only torch, so every layer's examples may
use it.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent, Normal

__all__ = ["CoinProcess", "ToyChain", "white_fraction"]


class ToyChain:
    """The smallest model of the design protocol: m = φ + slope · z + N(0, noise²), φ ∈ [low, high].

    Args:
        slope: weight of the nuisance latent z ~ N(0, 1) in m.
        noise: standard deviation of the observation noise.
        low, high: bounds of the single process parameter φ.

    Example::

        >>> model = ToyChain()
        >>> model.phi_bounds, model.latent_dim
        (tensor([[-3.,  3.]]), 1)
        >>> model.property_dist(torch.zeros(5, 1), torch.zeros(5, 1)).batch_shape
        torch.Size([5])
    """

    latent_dim = 1

    def __init__(
        self, slope: float = 0.3, noise: float = 0.3, low: float = -3.0, high: float = 3.0
    ):
        self.slope, self.noise = float(slope), float(noise)
        self.phi_bounds = torch.tensor([[float(low), float(high)]])

    def property_dist(self, phi: torch.Tensor, z: torch.Tensor) -> Distribution:
        """p(m | φ, z) = N(φ + slope · z, noise²), event shape (1,)."""
        return Independent(Normal(phi + self.slope * z, self.noise), 1)


class CoinProcess:
    """A process of 1 × 1-pixel images, phase 1 with probability φ ∈ [0, 1].

    Example::

        >>> x = CoinProcess().sample(torch.tensor([0.25]), num_samples=4000, seed=0)
        >>> x.shape, round(float(x.mean()), 2)
        (torch.Size([4000, 1, 1]), 0.25)
    """

    def __init__(self):
        self.phi_bounds = torch.tensor([[0.0, 1.0]])

    def sample(self, phi: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        """``num_samples`` float64 0./1. images (num_samples, 1, 1), reproducible from ``seed``."""
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(num_samples, 1, 1, generator=g, dtype=torch.float64) < phi).double()


def white_fraction(x: torch.Tensor) -> torch.Tensor:
    """The fraction of phase-1 pixels of images ``x`` (..., H, W), as a property (..., 1).

    Example::

        >>> white_fraction(torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]))
        tensor([[0.7500]])
    """
    return x.mean((-1, -2))[..., None]
