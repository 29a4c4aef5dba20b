"""Learned links of the Process–Structure–Property chain, as Pyro models.

Each method lives in one file; all of them satisfy the design protocol of
``docs/architecture.md`` § "The design protocol" (``phi_bounds``, ``latent_dim``,
``property_dist(phi, z)``).

- :class:`PSPGen` — PSP-GEN (Zang & Koutsourelakis 2025): z1 = g(φ), z0 ~ N(0, I),
  x ~ Bernoulli(D_x(z0, z1)), m ~ N(μ_m(z0, z1), σ_m²), amortized β-VAE guide, semi-supervised.
- :class:`ProbabilisticCNN` — Rixner & Koutsourelakis (2022): p(κ | x) = N(m_θ(x), diag S_θ(x)).
- :class:`SurrogateChain` — the true GRF process (white-noise latent) followed by a surrogate.
- :func:`principal_components_for_variance` — the d_z1 rule (PCA of two-point correlations).
- :class:`VAERegression` — Sardeshmukh et al.: p(c) p(z | c) p(x | z) with a Gaussian-mixture
  conditional prior, regressor and encoder on one trunk, one-shot inverse; :class:`RegressionCNN`
  its regression-only baseline; style statistics in :mod:`psppyro.models.style`.
- :class:`GANMDN` — Mao et al.: DCGAN on binary microstructures + mixture density network p(z | y).

Example::

    >>> import torch
    >>> from psppyro.models import PSPGen
    >>> gen = PSPGen(2, (8, 8), 2, d_z0=3, d_z1=2)
    >>> gen.latent_dim
    3
"""

from .gan_mdn import GANMDN, MDN
from .probabilistic_cnn import ProbabilisticCNN
from .pspgen import PSPGen
from .surrogate_chain import SurrogateChain
from .two_point import explained_variance_ratio, principal_components_for_variance
from .vae_regression import RegressionCNN, VAERegression

__all__ = [
    "GANMDN",
    "MDN",
    "PSPGen",
    "ProbabilisticCNN",
    "RegressionCNN",
    "SurrogateChain",
    "VAERegression",
    "explained_variance_ratio",
    "principal_components_for_variance",
]
