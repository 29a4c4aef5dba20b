"""Learned links of the Process–Structure–Property chain, as Pyro models.

Each method lives in one file; all of them satisfy the design protocol of
``docs/architecture.md`` § "The design protocol" (``phi_bounds``, ``latent_dim``,
``property_dist(phi, z)``).

- :class:`PSPGen` — PSP-GEN (Zang & Koutsourelakis 2025): z1 = g(φ), z0 ~ N(0, I),
  x ~ Bernoulli(D_x(z0, z1)), m ~ N(μ_m(z0, z1), σ_m²), amortized β-VAE guide, semi-supervised.
- :func:`principal_components_for_variance` — the d_z1 rule (PCA of two-point correlations).

Example::

    >>> import torch
    >>> from psppyro.models import PSPGen
    >>> gen = PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2)
    >>> gen.latent_dim
    3
"""

from .pspgen import PSPGen
from .two_point import explained_variance_ratio, principal_components_for_variance

__all__ = ["PSPGen", "explained_variance_ratio", "principal_components_for_variance"]
