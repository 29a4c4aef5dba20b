r"""Design targets: what "the material we want" means.

A target turns the model's property distribution p(m | φ, z) into a per-(φ, z) *log utility*
log u(φ, z), whose average over the nuisance latent z gives the design objective
(``docs/architecture.md`` § "The design problem").

**Box (objective O1 with u = 1_{M_d})**. For M_d = [l, h] (a box in R^{d_m})

.. math::

    u(φ, z) = P(m ∈ M_d \mid φ, z), \qquad P(m ∈ M_d \mid φ) = E_{z}[u(φ, z)].

When p(m | φ, z) is a diagonal Normal (``Independent(Normal(μ, σ), 1)``) the box probability
factorizes
and is computed in closed form, in log space:

.. math::

    \log P = \sum_i \log\big(Φ(b_i) - Φ(a_i)\big), \quad a_i = (l_i - μ_i)/σ_i,\ b_i = (h_i -
    μ_i)/σ_i,

with :math:`\log(Φ(b) - Φ(a)) = \log Φ(b) + \log(1 - e^{\log Φ(a) - \log Φ(b)})` evaluated with
``torch.special.log_ndtr`` and a stable ``log1mexp``. In the upper tail (a + b > 0) the symmetric
form
Φ(−a) − Φ(−b) is used instead, so both tails keep full relative precision (a box 40 standard
deviations away still has a finite log-probability and a useful gradient). For any other
distribution the
probability is estimated by Monte Carlo with ``num_mc`` reparameterized samples of m. The
indicator has
zero gradient, so an optional ``temperature`` T > 0 replaces it by the smooth product of logistic
sigmoids :math:`\prod_i σ((m_i - l_i)/T)\,σ((h_i - m_i)/T)` (then always estimated by Monte
Carlo, for
every distribution, so the objective is the same whatever the model).

**TargetValue** (O1 with a smooth utility) u(m) = exp(−τ‖m − m_t‖²). For a diagonal Normal the
expectation is Gaussian-integral closed form,

.. math::

    E[u] = \prod_i (1 + 2τσ_i^2)^{-1/2} \exp\Big(-\frac{τ(μ_i - m_{t,i})^2}{1 + 2τσ_i^2}\Big),

and Monte Carlo otherwise.

**TargetDensity** (objective O2): KL(p_target ‖ p(m | φ)) = −H(p_target) − E_{p_target}[log p(m
| φ)]
with the marginal p(m | φ) = E_z p(m | φ, z). It is not a per-(φ, z) utility; see
:mod:`psppyro.design.objectives` for its estimator (a log-mean-exp over z samples, biased low by
≈ Var_z[p(m|φ,z)] / (2 M p(m|φ)²) — so the KL is biased *high* by that much).

References:
    Zhang, Koutsourelakis et al., PSP-GEN (2024), objective (O1) with M_d boxes; Rixner &
    Koutsourelakis (2022), objective (O2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from .._validation import as_tensor, check_finite, check_positive

__all__ = [
    "Box",
    "Target",
    "TargetDensity",
    "TargetValue",
    "as_target",
    "log1mexp",
    "log_normal_box",
]


def log1mexp(x):
    r"""Stable :math:`\log(1 - e^{x})` for x ≤ 0 (Mächler 2012: switch at −log 2).

    Example::

        >>> float(log1mexp(torch.tensor(-1e-10)))  # doctest: +ELLIPSIS
        -23.02...
    """
    x = torch.clamp(x, max=0.0)
    small = x > -math.log(2.0)
    # Clamp the argument of each branch into its own safe range so the unused branch
    # never produces inf/NaN (whose gradient would poison torch.where).
    x_small = torch.where(small, x, torch.full_like(x, -1.0))
    x_large = torch.where(small, torch.full_like(x, -1.0), x)
    return torch.where(small, torch.log(-torch.expm1(x_small)), torch.log1p(-torch.exp(x_large)))


def log_normal_box(loc, scale, low, high):
    r"""log P(low < m < high) for m ~ Normal(loc, scale), elementwise, stable in both tails.

    Args:
        loc, scale: Normal parameters (broadcastable tensors).
        low, high: box ends, broadcastable, ``low < high``.

    Returns:
        Tensor of log-probabilities, the broadcast shape.

    Example::

        >>> lp = log_normal_box(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(-1.0), 1.0)
        >>> round(float(lp.exp()), 4)
        0.6827
    """
    a = (low - loc) / scale
    b = (high - loc) / scale
    # Upper tail: use Φ(b) − Φ(a) = Φ(−a) − Φ(−b) so both log-CDFs are taken of large negative
    # arguments, where log_ndtr keeps full relative precision.
    flip = (a + b) > 0
    a2 = torch.where(flip, -b, a)
    b2 = torch.where(flip, -a, b)
    log_b = torch.special.log_ndtr(b2)
    log_a = torch.special.log_ndtr(a2)
    return log_b + log1mexp(log_a - log_b)


def _diag_normal(dist):
    """(loc, scale) if ``dist`` is a diagonal Normal with event shape (d_m,), else None."""
    if isinstance(dist, Independent) and dist.reinterpreted_batch_ndims == 1:
        base = dist.base_dist
        if isinstance(base, Normal):
            return base.loc.expand(dist.batch_shape + dist.event_shape), base.scale.expand(
                dist.batch_shape + dist.event_shape
            )
    return None


def _check_event(name, dist, d_m):
    if not isinstance(dist, torch.distributions.Distribution):
        raise TypeError(
            f"{name} must be a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    if tuple(dist.event_shape) != (d_m,):
        raise ValueError(
            f"{name} must have event shape ({d_m},) to match the target, "
            f"got event shape {tuple(dist.event_shape)}"
        )


def _mc_sample(dist, num_mc):
    if dist.has_rsample:
        return dist.rsample((num_mc,))
    return dist.sample((num_mc,))


class Target(ABC):
    """Base class of design targets. Subclasses define ``dim`` and the methods below."""

    #: whether the target defines a per-(φ, z) utility (O1); False for O2 densities.
    has_utility = True

    @abstractmethod
    def log_utility(self, dist):
        """log E_{m ~ dist}[u(m)] for a property distribution with event shape (d_m,)."""

    @abstractmethod
    def utility(self, m):
        """u(m) for property values ``m`` of shape (..., d_m)."""

    @abstractmethod
    def config(self):
        """A JSON-serializable description of the target."""


class Box(Target):
    r"""The target box M_d = [low, high] ⊂ R^{d_m}; u = 1_{M_d} (objective O1).

    Args:
        low, high: sequences or tensors of shape (d_m,), finite, ``low < high`` componentwise.
        temperature: optional T > 0: use the smooth indicator ∏ σ((m−l)/T) σ((h−m)/T) (Monte Carlo)
            instead of the exact one. ``None`` (default) keeps the exact indicator.
        num_mc: Monte Carlo sample count per (φ, z) when no closed form applies (default 64).

    Raises:
        ValueError: shapes differ, a bound is not finite, ``low >= high`` somewhere, bad
        temperature.

    Example::

        >>> box = Box(low=[-1.0, -1.0], high=[1.0, 1.0])
        >>> d = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
        >>> round(float(box.log_utility(d).exp()), 4)   # 0.6827 ** 2
        0.4661
    """

    def __init__(self, low, high, temperature=None, num_mc=64):
        low = as_tensor("low", low)
        high = as_tensor("high", high, dtype=low.dtype)
        if low.dim() != 1 or low.numel() == 0:
            raise ValueError(f"low must be a 1-D sequence (d_m,), got shape {tuple(low.shape)}")
        if high.shape != low.shape:
            raise ValueError(
                f"high must have the same shape as low {tuple(low.shape)}, got {tuple(high.shape)}"
            )
        check_finite("low", low)
        check_finite("high", high)
        if bool((low >= high).any()):
            i = int((low >= high).nonzero()[0])
            raise ValueError(
                f"low must be < high in every component; component {i}: low={float(low[i]):g} >= "
                f"high={float(high[i]):g}"
            )
        if temperature is not None:
            check_positive("temperature", temperature)
        if isinstance(num_mc, bool) or not isinstance(num_mc, int) or num_mc < 1:
            raise ValueError(f"num_mc must be a positive int, got {num_mc!r}")
        self.low, self.high = low, high
        self.temperature = None if temperature is None else float(temperature)
        self.num_mc = num_mc

    @property
    def dim(self):
        """d_m."""
        return self.low.numel()

    @property
    def center(self):
        """The box centre (low + high) / 2."""
        return 0.5 * (self.low + self.high)

    def contains(self, m):
        """Boolean tensor (...,): whether each row of ``m`` (..., d_m) lies in the box.

        Example::

            >>> Box([0.0], [1.0]).contains(torch.tensor([[0.5], [2.0]])).tolist()
            [True, False]
        """
        lo, hi = self.low.to(m), self.high.to(m)
        return ((m >= lo) & (m <= hi)).all(-1)

    def utility(self, m):
        """The indicator (or its smooth version when ``temperature`` is set), shape (...,)."""
        if self.temperature is None:
            return self.contains(m).to(m.dtype)
        return self._log_smooth(m).exp()

    def _log_smooth(self, m):
        lo, hi, t = self.low.to(m), self.high.to(m), self.temperature
        return (
            torch.nn.functional.logsigmoid((m - lo) / t)
            + torch.nn.functional.logsigmoid((hi - m) / t)
        ).sum(-1)

    def log_utility(self, dist):
        """log P(m ∈ box) under ``dist`` (closed form for a diagonal Normal), shape = batch shape.

        Example::

            >>> box = Box([10.0], [11.0])
            >>> d = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
            >>> bool(torch.isfinite(box.log_utility(d)))   # ~1e-23, still finite in log space
            True
        """
        _check_event("property_dist", dist, self.dim)
        normal = _diag_normal(dist) if self.temperature is None else None
        if normal is not None:
            loc, scale = normal
            return log_normal_box(loc, scale, self.low.to(loc), self.high.to(loc)).sum(-1)
        m = _mc_sample(dist, self.num_mc)
        if self.temperature is None:
            log_u = torch.log(self.contains(m).to(m.dtype))
        else:
            log_u = self._log_smooth(m)
        return torch.logsumexp(log_u, 0) - math.log(self.num_mc)

    def config(self):
        """JSON-serializable description."""
        return {
            "kind": "box",
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "temperature": self.temperature,
        }

    def __repr__(self):
        t = "" if self.temperature is None else f", temperature={self.temperature:g}"
        lo = ", ".join(f"{v:g}" for v in self.low.tolist())
        hi = ", ".join(f"{v:g}" for v in self.high.tolist())
        return f"Box(low=[{lo}], high=[{hi}]{t})"


class TargetValue(Target):
    r"""A target value m_t with utility u(m) = exp(−τ‖m − m_t‖²) (objective O1, smooth).

    Args:
        m_target: sequence or tensor (d_m,), finite.
        tau: τ > 0, the sharpness (1/(2 τ) is the utility's variance per component).
        num_mc: Monte Carlo sample count when the property distribution is not a diagonal Normal.

    Example::

        >>> tv = TargetValue([0.0], tau=0.5)
        >>> d = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
        >>> round(float(tv.log_utility(d).exp()), 4)   # (1 + 2·0.5·1)^(-1/2)
        0.7071
    """

    def __init__(self, m_target, tau=1.0, num_mc=64):
        m_target = as_tensor("m_target", m_target)
        if m_target.dim() != 1 or m_target.numel() == 0:
            raise ValueError(
                f"m_target must be a 1-D sequence (d_m,), got shape {tuple(m_target.shape)}"
            )
        check_finite("m_target", m_target)
        check_positive("tau", tau)
        if isinstance(num_mc, bool) or not isinstance(num_mc, int) or num_mc < 1:
            raise ValueError(f"num_mc must be a positive int, got {num_mc!r}")
        self.m_target = m_target
        self.tau = float(tau)
        self.num_mc = num_mc

    @property
    def dim(self):
        """d_m."""
        return self.m_target.numel()

    @property
    def center(self):
        """The target value."""
        return self.m_target

    def utility(self, m):
        """exp(−τ‖m − m_t‖²), shape (...,)."""
        return torch.exp(-self.tau * ((m - self.m_target.to(m)) ** 2).sum(-1))

    def log_utility(self, dist):
        """log E[u(m)] under ``dist`` (closed form for a diagonal Normal)."""
        _check_event("property_dist", dist, self.dim)
        normal = _diag_normal(dist)
        if normal is not None:
            loc, scale = normal
            s = 1.0 + 2.0 * self.tau * scale**2
            return (-0.5 * torch.log(s) - self.tau * (loc - self.m_target.to(loc)) ** 2 / s).sum(-1)
        m = _mc_sample(dist, self.num_mc)
        log_u = -self.tau * ((m - self.m_target.to(m)) ** 2).sum(-1)
        return torch.logsumexp(log_u, 0) - math.log(self.num_mc)

    def config(self):
        """JSON-serializable description."""
        return {"kind": "value", "m_target": self.m_target.tolist(), "tau": self.tau}

    def __repr__(self):
        return f"TargetValue(m_target={self.m_target.tolist()}, tau={self.tau:g})"


class TargetDensity(Target):
    r"""A target density p_target(m) (objective O2: minimize KL(p_target ‖ p(m | φ))).

    Args:
        dist: a ``torch.distributions.Distribution`` with event shape (d_m,) and empty batch shape,
            e.g. ``MultivariateNormal(mean, covariance)``. A MultivariateNormal's covariance must be
            positive definite (a singular covariance is refused: the KL would be infinite).

    Example::

        >>> td = TargetDensity(MultivariateNormal(torch.zeros(2), torch.eye(2)))
        >>> td.dim
        2
    """

    has_utility = False

    def __init__(self, dist):
        if not isinstance(dist, torch.distributions.Distribution):
            raise TypeError(
                f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}"
            )
        if len(dist.event_shape) != 1 or len(dist.batch_shape) != 0:
            raise ValueError(
                "dist must have event shape (d_m,) and no batch shape, got event shape "
                f"{tuple(dist.event_shape)} and batch shape {tuple(dist.batch_shape)}"
            )
        if isinstance(dist, MultivariateNormal):
            cov = dist.covariance_matrix
            check_finite("dist.covariance_matrix", cov)
            eig = torch.linalg.eigvalsh(cov.double())
            if float(eig.min()) <= 1e-12 * max(float(eig.max()), 1e-300):
                raise ValueError(
                    "dist covariance must be positive definite (non-singular), got eigenvalues "
                    f"{eig.tolist()}"
                )
        self.dist = dist

    @classmethod
    def normal(cls, mean, covariance):
        """A multivariate-Normal target N(mean, covariance), checked before factorization.

        Args:
            mean: (d_m,) finite. covariance: (d_m, d_m) symmetric positive definite.

        Raises:
            ValueError: shape mismatch, non-finite entries, asymmetric or singular covariance.

        Example::

            >>> TargetDensity.normal([0.0, 1.0], [[1.0, 0.2], [0.2, 1.0]]).dim
            2
        """
        mean = as_tensor("mean", mean)
        cov = as_tensor("covariance", covariance, dtype=mean.dtype)
        check_finite("mean", mean)
        check_finite("covariance", cov)
        if mean.dim() != 1 or cov.shape != (mean.numel(), mean.numel()):
            raise ValueError(
                f"mean must be (d_m,) and covariance (d_m, d_m); got {tuple(mean.shape)} and "
                f"{tuple(cov.shape)}"
            )
        if not torch.allclose(cov, cov.T, rtol=1e-6, atol=1e-12):
            raise ValueError(f"covariance must be symmetric, got {cov.tolist()}")
        eig = torch.linalg.eigvalsh(cov.double())
        if float(eig.min()) <= 1e-12 * max(float(eig.max()), 1e-300):
            raise ValueError(
                "covariance must be positive definite (non-singular), got eigenvalues "
                f"{eig.tolist()}"
            )
        return cls(MultivariateNormal(mean, covariance_matrix=cov))

    @property
    def dim(self):
        """d_m."""
        return int(self.dist.event_shape[0])

    @property
    def center(self):
        """The target mean."""
        return self.dist.mean

    def sample(self, num_samples, seed=None):
        """``num_samples`` draws (num_samples, d_m) from the target, reproducible by ``seed``."""
        from .._random import make_generator

        g = make_generator(seed)
        # torch distributions have no generator argument: fork the global RNG around the draw.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            return self.dist.sample((num_samples,))

    def entropy(self):
        """H(p_target) if the distribution implements it, else ``None``."""
        try:
            return float(self.dist.entropy())
        except NotImplementedError:
            return None

    def utility(self, m):
        """Not defined for O2 (raises TypeError)."""
        raise TypeError("TargetDensity (objective O2) has no per-sample utility u(m)")

    def log_utility(self, dist):
        """Not defined for O2 (raises TypeError)."""
        raise TypeError("TargetDensity (objective O2) has no per-(phi, z) utility; see objectives")

    def config(self):
        """JSON-serializable description (mean and covariance where available)."""
        out = {"kind": "density", "distribution": type(self.dist).__name__}
        try:
            out["mean"] = self.dist.mean.tolist()
            out["covariance"] = self.dist.covariance_matrix.tolist()
        except (AttributeError, NotImplementedError):
            pass
        return out

    def __repr__(self):
        return f"TargetDensity({type(self.dist).__name__}, d_m={self.dim})"


def as_target(target):
    """Return ``target`` if it is a :class:`Target`, else raise TypeError.

    Example::

        >>> as_target(Box([0.0], [1.0])).dim
        1
    """
    if not isinstance(target, Target):
        raise TypeError(
            "target must be a psppyro.design target (Box, TargetValue or TargetDensity), "
            f"got {type(target).__name__}"
        )
    return target
