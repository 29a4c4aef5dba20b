r"""Monte Carlo estimators of the design objectives O1 and O2 at given φ.

The model is anything with the design protocol (:mod:`psppyro.design.protocol`); the estimator of
each objective belongs to its target (``target.estimate``), called here with chunks of z draws.

**O1** (``Box`` / ``TargetValue``): with z_j ~ N(0, I), j = 1..M,

.. math::

    \hat P(φ) = \frac1M \sum_j u(φ, z_j), \qquad \mathrm{SE} = \mathrm{sd}_j(u(φ, z_j)) / \sqrt{M},

unbiased for P(m ∈ M_d | φ) (or E[u]). Its log, used by SGA, is biased low by ≈ SE² / (2 P̂²).

**O2** (``TargetDensity``): with target draws m_k ~ p_target, k = 1..K,

.. math::

    \widehat{KL}(φ) = -H(p_{target}) - \frac1K\sum_k \log \frac1M \sum_j p(m_k \mid φ, z_j).

The inner log-mean-exp is a consistent but biased estimator of log p(m_k | φ): by Jensen, E[log p̂]
≤ log p, with bias ≈ −Var_z[p(m|φ,z)] / (2 M p(m|φ)²) (delta method). The KL is therefore
over-estimated by that amount; it vanishes as M grows and matters most where the target puts mass in
the tails of p(m | φ). The reported standard error covers the outer (target) average only. When the
target distribution has no ``entropy()``, the cross-entropy −E_target[log p(m|φ)] is reported
instead (the KL up to a φ-independent constant; same minimizer).
"""

from __future__ import annotations

import math

import torch

from .._random import make_generator
from .._validation import as_tensor, check_int, check_last_dim
from .protocol import as_checked
from .targets import as_target

__all__ = ["estimate_objective", "log_marginal_density"]


def _prepare_phi(cm, phi):
    phi = as_tensor("phi", phi, dtype=cm.bounds.dtype, device=cm.bounds.device)
    if phi.dim() == 0:
        raise ValueError(f"phi must have shape (..., {cm.d_phi}), got a scalar")
    check_last_dim("phi", phi, cm.d_phi)
    return phi


def _chunks(cm, phi, num_samples, batch_size, g):
    def gen():
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = cm.sample_latents(n, g).to(phi)
            yield cm.property_dist(phi.unsqueeze(-2), z)
            done += n

    return gen


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
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain(slope=1.0, noise=1.0, low=-1.0, high=1.0)
        >>> lp = log_marginal_density(model, torch.zeros(1), torch.zeros(1, 1), 20000, seed=0)
        >>> abs(float(lp) - Normal(0.0, 2 ** 0.5).log_prob(torch.tensor(0.0)).item()) < 0.01
        True
    """
    num_samples = check_int("num_samples", num_samples)
    batch_size = check_int("batch_size", batch_size)
    cm = as_checked(model)
    phi = _prepare_phi(cm, phi)
    m = as_tensor("m", m).to(phi)
    if m.dim() != 2 or m.shape[-1] != cm.d_m:
        raise ValueError(f"m must have shape (K, {cm.d_m}), got {tuple(m.shape)}")
    g = make_generator(seed)
    batch_nd = phi.dim() - 1
    m = m.reshape(m.shape[0], *([1] * batch_nd), 1, m.shape[-1])
    acc = None
    for dist in _chunks(cm, phi, num_samples, batch_size, g)():
        lp = torch.logsumexp(dist.log_prob(m), -1)
        acc = lp if acc is None else torch.logaddexp(acc, lp)
    return acc - math.log(num_samples)


def estimate_objective(
    model, target, phi, num_samples=10000, seed=None, batch_size=1000, num_target_samples=1000
):
    r"""Model-predicted objective at φ with its Monte Carlo standard error.

    Box → P(m ∈ M_d | φ); TargetValue → E[u(m) | φ]; TargetDensity → KL(p_target ‖ p(m | φ))
    (or the cross-entropy when the target has no entropy); estimators in the module docstring.

    Args:
        model: design-protocol model (or a ``CheckedModel``).
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

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain(slope=1.0, noise=1.0, low=-1.0, high=1.0)
        >>> p, se = estimate_objective(model, Box([-1.0], [1.0]), torch.zeros(1), 4000, seed=0)
        >>> abs(float(p) - 0.5205) < 4 * float(se)      # P(|N(0, 2)| < 1)
        True
    """
    target = as_target(target)
    num_samples = check_int("num_samples", num_samples)
    batch_size = check_int("batch_size", batch_size)
    num_target_samples = check_int("num_target_samples", num_target_samples, minimum=2)
    cm = as_checked(model, target)
    phi = _prepare_phi(cm, phi)
    g = make_generator(seed)
    with torch.no_grad():
        return target.estimate(
            _chunks(cm, phi, num_samples, batch_size, g), num_samples, g, phi, num_target_samples
        )
