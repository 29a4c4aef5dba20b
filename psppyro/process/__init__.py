"""The process–structure link p(x | φ).

A *process* maps processing parameters φ to random two-phase microstructures x. Here a process is a
Gaussian random field (GRF) with a φ-dependent spectral density, normalized and thresholded,
optionally followed by a Cahn–Hilliard phase-separation step
(``docs/architecture.md`` § "Fields, thresholds and Cahn–Hilliard").

Example::

    >>> import torch, psppyro as pp
    >>> proc = pp.process.preset("rixner64")
    >>> x = proc.sample(torch.zeros(100), num_samples=2, seed=0)
    >>> x.shape
    torch.Size([2, 64, 64])
"""

from .cahn_hilliard import CahnHilliard
from .grf import GaussianRandomField, hard_threshold, relaxed_threshold
from .presets import PRESETS, from_config, preset
from .spectral import (
    GaussianFilterDensity,
    PSPGen10DDensity,
    PSPGenDensity,
    SpectralDensity,
    SpectralMixtureDensity,
    density_from_config,
    wavenumbers,
)
from .statistics import correlation_length, two_point_correlation

__all__ = [
    "CahnHilliard",
    "GaussianFilterDensity",
    "GaussianRandomField",
    "PRESETS",
    "PSPGen10DDensity",
    "PSPGenDensity",
    "SpectralDensity",
    "SpectralMixtureDensity",
    "correlation_length",
    "density_from_config",
    "hard_threshold",
    "relaxed_threshold",
    "wavenumbers",
    "from_config",
    "preset",
    "two_point_correlation",
]
