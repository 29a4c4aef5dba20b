r"""The design protocol and Monte Carlo estimators of the objectives O1 and O2.

**Protocol** (DESIGN §4). A model is any object with

- ``phi_bounds``: Tensor (d_φ, 2) of lower/upper bounds (±inf allowed only with ``phi_prior``),
- ``latent_dim``: int ≥ 0, the size of a standard-normal nuisance latent z,
- ``property_dist(phi, z)``: a ``torch.distributions.Distribution`` with event shape (d_m,) and
batch
  shape the broadcast of ``phi.shape[:-1]`` and ``z.shape[:-1]``,
- optionally ``phi_prior``: a distribution over φ with event shape (d_φ,) (e.g. Rixner's N(0, I)),
  used instead of the uniform prior on the box, and ``phi_names``: a sequence of d_φ names.

**O1** (``Box`` / ``TargetValue``): with z_j ~ N(0, I), j = 1..M,

.. math::

    \hat P(φ) = \frac1M \sum_j u(φ, z_j), \qquad \mathrm{SE} = \mathrm{sd}_j(u(φ, z_j)) / \sqrt{M},

unbiased for P(m ∈ M_d | φ) (or E[u]). Its log, used by SGA, is biased low by ≈ SE² / (2 P̂²).

**O2** (``TargetDensity``): with target draws m_k ~ p_target, k = 1..K,

.. math::

    \widehat{KL}(φ) = -H(p_{target}) - \frac1K\sum_k \log \frac1M \sum_j p(m_k \mid φ, z_j).

The inner log-mean-exp is a consistent but biased estimator of log p(m_k | φ): by Jensen,
E[log p̂] ≤ log p, with bias ≈ −Var_z[p(m|φ,z)] / (2 M p(m|φ)²) (delta method). The KL is therefore
over-estimated by that amount; it vanishes as M grows and matters most where the target puts
mass in the
tails of p(m | φ). The reported standard error covers the outer (target) average only. When the
target
distribution has no ``entropy()``, the cross-entropy −E_target[log p(m|φ)] is reported instead
(the KL up
to a φ-independent constant; same minimizer).
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
from pyro.distributions import TorchDistribution, Uniform

from .._random import make_generator
from .._validation import as_tensor, check_last_dim
from .targets import TargetDensity, as_target

__all__ = [
    "check_model",
    "estimate_objective",
    "log_marginal_density",
    "objective_name",
    "phi_names",
    "phi_prior",
    "sample_latents",
]


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_model(model):
    """Validate a design-protocol model and return ``(bounds, latent_dim)``.

    Args:
        model: object with ``phi_bounds``, ``latent_dim`` and ``property_dist`` (module docstring).

    Returns:
        ``(bounds, latent_dim)`` with ``bounds`` a float Tensor (d_φ, 2).

    Raises:
        TypeError: a protocol attribute is missing or has the wrong type.
        ValueError: bounds are NaN, not (d_φ, 2), ``low >= high``, or infinite without
        ``phi_prior``.

    Example::

        >>> class M:
        ...     phi_bounds = torch.tensor([[0.0, 1.0]]); latent_dim = 0
        ...     def property_dist(self, phi, z): ...
        >>> check_model(M())[0].shape
        torch.Size([1, 2])
    """
    for attr in ("phi_bounds", "latent_dim", "property_dist"):
        if not hasattr(model, attr):
            raise TypeError(
                f"model must satisfy the design protocol (phi_bounds, latent_dim, property_dist); "
                f"{type(model).__name__} has no attribute {attr!r}"
            )
    if not callable(model.property_dist):
        raise TypeError("model.property_dist must be callable (phi, z) -> Distribution")
    bounds = as_tensor("model.phi_bounds", model.phi_bounds)
    if not bounds.is_floating_point():
        bounds = bounds.to(torch.get_default_dtype())
    if bounds.dim() != 2 or bounds.shape[-1] != 2 or bounds.shape[0] == 0:
        raise ValueError(f"model.phi_bounds must have shape (d_phi, 2), got {tuple(bounds.shape)}")
    if bool(torch.isnan(bounds).any()):
        raise ValueError(f"model.phi_bounds must not contain NaN, got {bounds.tolist()}")
    if bool((bounds[:, 0] >= bounds[:, 1]).any()):
        raise ValueError(
            f"model.phi_bounds must have low < high in every row, got {bounds.tolist()}"
        )
    if not bool(torch.isfinite(bounds).all()) and getattr(model, "phi_prior", None) is None:
        raise ValueError(
            "model.phi_bounds must be finite unless the model defines phi_prior "
            f"(a distribution over phi); got {bounds.tolist()}"
        )
    latent_dim = _check_int("model.latent_dim", model.latent_dim, minimum=0)
    return bounds, latent_dim


def phi_names(model):
    """The model's ``phi_names`` if present (length d_φ), else ``phi_0, phi_1, ...``.

    Example::

        >>> class M: phi_bounds = torch.zeros(2, 2)
        >>> phi_names(M())
        ['phi_0', 'phi_1']
    """
    d = int(torch.as_tensor(model.phi_bounds).shape[0])
    names = getattr(model, "phi_names", None)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != d:
            raise ValueError(f"model.phi_names must have {d} entries, got {names!r}")
        return names
    return [f"phi_{i}" for i in range(d)]


class _AsPyro(TorchDistribution):
    """Wrap a plain ``torch.distributions`` prior so Pyro's inference (autoguides) can use it."""

    def __init__(self, base):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self):
        return self.base.has_rsample

    @property
    def mean(self):
        return self.base.mean

    def expand(self, batch_shape, _instance=None):
        return _AsPyro(self.base.expand(batch_shape))

    def sample(self, sample_shape=()):
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape=()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)


def phi_prior(model):
    """p(φ): the model's ``phi_prior`` or Uniform on the ``phi_bounds`` box (event shape (d_φ,)).

    Example::

        >>> class M: phi_bounds = torch.tensor([[0.0, 2.0]])
        >>> float(phi_prior(M()).log_prob(torch.tensor([1.0])).exp())
        0.5
    """
    prior = getattr(model, "phi_prior", None)
    bounds = torch.as_tensor(model.phi_bounds).to(torch.get_default_dtype())
    if prior is not None:
        if tuple(prior.event_shape) != (bounds.shape[0],):
            raise ValueError(
                f"model.phi_prior must have event shape ({bounds.shape[0]},), got "
                f"{tuple(prior.event_shape)}"
            )
        return prior if isinstance(prior, TorchDistribution) else _AsPyro(prior)
    return Uniform(bounds[:, 0], bounds[:, 1]).to_event(1)


def sample_latents(model, num_samples, generator, like):
    """z ~ N(0, I): Tensor (num_samples, latent_dim) with dtype/device of ``like``."""
    z = torch.randn(num_samples, model.latent_dim, generator=generator, dtype=torch.float64)
    return z.to(dtype=like.dtype, device=like.device)


def objective_name(target):
    """'probability' (Box), 'expected_utility' (TargetValue) or 'kl' (TargetDensity)."""
    from .targets import Box

    if isinstance(target, TargetDensity):
        return "kl"
    return "probability" if isinstance(target, Box) else "expected_utility"


def _prepare_phi(model, phi):
    bounds, _ = check_model(model)
    phi = as_tensor("phi", phi, dtype=bounds.dtype)
    if phi.dim() == 0:
        raise ValueError(f"phi must have shape (..., {bounds.shape[0]}), got a scalar")
    check_last_dim("phi", phi, bounds.shape[0])
    return phi


def log_marginal_density(model, phi, m, num_samples=1000, seed=None, batch_size=1000):
    r"""log p(m | φ) ≈ log (1/M) Σ_j p(m | φ, z_j) (biased low, see module docstring).

    Args:
        model: design-protocol model.
        phi: Tensor (..., d_φ).
        m: Tensor (K, d_m) of property values.
        num_samples: M, z draws; batch_size: z draws per model call.
        seed: int, ``torch.Generator`` or None.

    Returns:
        Tensor (K, ...) of log densities (differentiable in φ).

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> class M:
        ...     phi_bounds = torch.tensor([[-1.0, 1.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + z, 1.0), 1)
        >>> lp = log_marginal_density(M(), torch.zeros(1), torch.zeros(1, 1), 20000, seed=0)
        >>> abs(float(lp) - Normal(0.0, 2 ** 0.5).log_prob(torch.tensor(0.0)).item()) < 0.01
        True
    """
    num_samples = _check_int("num_samples", num_samples)
    batch_size = _check_int("batch_size", batch_size)
    g = make_generator(seed)
    batch_nd = phi.dim() - 1
    m = m.reshape(m.shape[0], *([1] * batch_nd), 1, m.shape[-1])
    acc = None
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = sample_latents(model, n, g, phi)
        dist = model.property_dist(phi.unsqueeze(-2), z)
        lp = torch.logsumexp(dist.log_prob(m.to(phi)), -1)
        acc = lp if acc is None else torch.logaddexp(acc, lp)
        done += n
    return acc - math.log(num_samples)


def estimate_objective(
    model, target, phi, num_samples=10000, seed=None, batch_size=1000, num_target_samples=1000
):
    r"""Model-predicted objective at φ with its Monte Carlo standard error.

    Box → P(m ∈ M_d | φ); TargetValue → E[u(m) | φ]; TargetDensity → KL(p_target ‖ p(m | φ))
    (or the cross-entropy when the target has no entropy); estimators in the module docstring.

    Args:
        model: design-protocol model.
        target: a :class:`~psppyro.design.Box`, :class:`~psppyro.design.TargetValue` or
            :class:`~psppyro.design.TargetDensity`.
        phi: Tensor (..., d_φ).
        num_samples: M, number of z draws.
        seed: int, ``torch.Generator`` or None.
        batch_size: z draws per model call.
        num_target_samples: K, target draws (O2 only).

    Returns:
        ``(value, se)``: tensors of shape ``phi.shape[:-1]``.

    Raises:
        ValueError: bad sizes or a φ of the wrong dimension.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> from psppyro.design import Box
        >>> class M:
        ...     phi_bounds = torch.tensor([[-1.0, 1.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi + z, 1.0), 1)
        >>> p, se = estimate_objective(M(), Box([-1.0], [1.0]), torch.zeros(1), 4000, seed=0)
        >>> abs(float(p) - 0.5205) < 4 * float(se)      # P(|N(0, 2)| < 1)
        True
    """
    target = as_target(target)
    phi = _prepare_phi(model, phi)
    num_samples = _check_int("num_samples", num_samples)
    batch_size = _check_int("batch_size", batch_size)
    g = make_generator(seed)
    with torch.no_grad():
        if isinstance(target, TargetDensity):
            k = _check_int("num_target_samples", num_target_samples, minimum=2)
            m = target.sample(k, seed=g).to(phi)
            lp = log_marginal_density(model, phi, m, num_samples, g, batch_size)
            cross = -lp.mean(0)
            se = lp.std(0) / math.sqrt(k)
            h = target.entropy()
            value = cross if h is None else cross - h
            return value, se
        total = torch.zeros(phi.shape[:-1], dtype=phi.dtype, device=phi.device)
        total_sq = torch.zeros_like(total)
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = sample_latents(model, n, g, phi)
            u = target.log_utility(model.property_dist(phi.unsqueeze(-2), z)).exp()
            total = total + u.sum(-1)
            total_sq = total_sq + (u**2).sum(-1)
            done += n
        mean = total / num_samples
        var = (
            (total_sq / num_samples - mean**2).clamp(min=0.0)
            * num_samples
            / max(num_samples - 1, 1)
        )
        return mean, (var / num_samples).sqrt()
