r"""Property distributions with blocked directions, and the stable Normal box probability.

A permeability direction that does not percolate has k = 0, i.e. ln k = −∞: a *point mass* at
−∞, not a very small number. :class:`PercolatedNormal` models a property vector whose components
are independent and each either percolates (with probability p_j) and then is Normal, or is
blocked (m_j = −∞):

.. math::

    p(m_j) = (1 - p_j)\,δ_{-∞}(m_j) + p_j\,\mathcal N(m_j \mid μ_j, σ_j^2),
    \qquad p_j = \operatorname{sigmoid}(\ell_j),

with ``percolation_logits`` ℓ_j. Components that can never block (a volume fraction, or a
direction that always percolated in the training data) have p_j = 1: give ℓ_j = +∞ or exclude
them with ``blocked_mask``. The log-density of a value is

.. math::

    \log p(m) = \sum_{j:\,m_j = -∞} \log(1 - p_j)
              + \sum_{j:\,m_j > -∞} \big[\log p_j + \log \mathcal N(m_j \mid μ_j, σ_j^2)\big],

i.e. a density with respect to (counting measure at −∞ + Lebesgue) per component. The probability
of a box [l, h] (a design target, ``docs/architecture.md`` § "The design protocol") factorizes:

.. math::

    \log P(m ∈ [l, h]) = \sum_j \log\big[\mathbb 1\{l_j = -∞\}(1 - p_j)
        + p_j\,(Φ(b_j) - Φ(a_j))\big], \quad a_j = \frac{l_j - μ_j}{σ_j},\
        b_j = \frac{h_j - μ_j}{σ_j},

computed in log space with ``logaddexp`` and the two-tailed stable :func:`log_normal_box`
(infinite ends handled by where-masks so that values *and* gradients stay finite).

**One representation of "blocked", end to end.** The simulator's property maps keep the store free
of infinities (``psppyro.properties.LOG_PERMEABILITY_FLOOR`` = −20 for a blocked direction, NaN
only for unfinished chunks, which the store's integrity checks must keep telling apart). The
*model* side uses −∞: PSP-GEN's percolation head reads stored values ≤ the floor (or −∞) as
blocked, and :class:`PercolatedNormal` samples −∞. A design ``Box`` bridges the two with one
explicit rule (its ``floor`` argument, see :class:`psppyro.design.targets.Box`): simulated values at
or below the floor count as −∞, and a box whose finite lower bound is ≤ the floor is refused, so
"inside the box" means the same for simulated and model properties.

References:
    Zang & Koutsourelakis, PSP-GEN (Acta Materialia 284, 120600, 2025) — the permeability
    property with blocked directions; Mächler (2012), "Accurately computing log(1 − exp(−|a|))".
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import Independent, Normal, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["PercolatedNormal", "log1mexp", "log_normal_box"]


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    r"""Stable :math:`\log(1 - e^{x})` for x ≤ 0 (Mächler 2012: switch at −log 2).

    Args:
        x: tensor of values ≤ 0 (larger values are clamped to 0).

    Returns:
        Tensor of the same shape; finite gradients also in the branch that is not taken.

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


def _log_normal_box_finite(loc, scale, low, high):
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


def log_normal_box(loc, scale, low, high) -> torch.Tensor:
    r"""log P(low < m < high) for m ~ Normal(loc, scale), elementwise, stable in both tails.

    ``low`` may be −∞ and ``high`` +∞ (one-sided and unbounded intervals): the infinite ends are
    handled by where-masks, never by arithmetic on ∞, so the value and the gradients in ``loc``
    and ``scale`` stay finite (a one-sided interval gives log Φ(b) or log Φ(−a) exactly; an
    unbounded one gives 0).

    Args:
        loc, scale: Normal parameters (broadcastable tensors).
        low, high: interval ends, broadcastable, ``low < high``; ``low`` may be −inf and ``high``
            +inf.

    Returns:
        Tensor of log-probabilities, the broadcast shape.

    Example::

        >>> lp = log_normal_box(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(-1.0), 1.0)
        >>> round(float(lp.exp()), 4)
        0.6827
        >>> round(float(log_normal_box(torch.tensor(0.0), 1.0, -math.inf, 0.0).exp()), 4)
        0.5
    """
    loc, scale, low, high = broadcast_all(loc, scale, low, high)
    low_inf = torch.isneginf(low)
    high_inf = torch.isposinf(high)
    if not bool(low_inf.any() or high_inf.any()):
        return _log_normal_box_finite(loc, scale, low, high)
    # Finite stand-ins one standard deviation apart replace the infinite ends, so that no branch
    # (taken or not) ever computes with ∞ and no NaN reaches a gradient through torch.where.
    width = scale.detach()
    high_s = torch.where(high_inf, torch.where(low_inf, loc.detach() + width, low + width), high)
    low_s = torch.where(low_inf, high_s - width, low)
    finite = _log_normal_box_finite(loc, scale, low_s, high_s)
    below = torch.special.log_ndtr((high_s - loc) / scale)  # (−∞, h]
    above = torch.special.log_ndtr((loc - low_s) / scale)  # [l, +∞)
    out = torch.where(low_inf, below, torch.where(high_inf, above, finite))
    return torch.where(low_inf & high_inf, torch.zeros_like(out), out)


class _RealOrNegInf(constraints.Constraint):
    """Real numbers and −∞ (a blocked component); NaN and +∞ are outside."""

    event_dim = 0

    def check(self, value):
        return (value == value) & (value != math.inf)

    def __repr__(self):
        return "RealOrNegInf()"


real_or_neg_inf = _RealOrNegInf()


class PercolatedNormal(TorchDistribution):
    r"""Independent components: m_j = −∞ (blocked) w.p. 1 − p_j, else m_j ~ N(loc_j, scale_j).

    See the module docstring for the density and the box probability.

    Args:
        percolation_logits: (..., d_m) logits ℓ_j of the percolation probabilities
            p_j = sigmoid(ℓ_j); +inf means "never blocked".
        loc, scale: (..., d_m) Normal parameters of the percolating value (scale > 0).
        blocked_mask: optional bool (d_m,) (broadcastable): True where a component can block.
            Components with False are plain Normal (their logits are ignored). Default: every
            component can block (unless its logit is +inf).
        validate_args: as for torch distributions.

    Raises:
        ValueError: shapes that do not broadcast or an event dimension missing; NaN parameters or
            scale ≤ 0 (with validation on).

    Example::

        >>> d = PercolatedNormal(torch.tensor([0.0, 10.0]), torch.zeros(2), torch.ones(2))
        >>> [round(float(v), 4) for v in d.percolation_probs]
        [0.5, 1.0]
        >>> m = torch.tensor([-math.inf, 0.0])
        >>> round(float(d.log_prob(m)), 4)   # log(1 - 0.5) + log sigmoid(10) + log N(0 | 0, 1)
        -1.6121
        >>> round(float(d.box_log_prob(torch.tensor([-math.inf, -1.0]), torch.tensor([0.0, 1.0]))
        ...             .exp()), 4)   # (0.5 + 0.5 * 0.5) * 0.6827 (p_2 = sigmoid(10))
        0.512
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = real_or_neg_inf
    has_rsample = False

    def __init__(self, percolation_logits, loc, scale, blocked_mask=None, validate_args=None):
        logits, loc, scale = broadcast_all(percolation_logits, loc, scale)
        if logits.dim() == 0:
            raise ValueError(
                "PercolatedNormal needs an event dimension (d_m,): percolation_logits, loc and "
                f"scale broadcast to shape {tuple(logits.shape)}"
            )
        if bool(torch.isnan(logits).any()):
            raise ValueError("percolation_logits must not contain NaN")
        if blocked_mask is None:
            mask = torch.ones(logits.shape[-1:], dtype=torch.bool, device=logits.device)
        else:
            mask = torch.as_tensor(blocked_mask, device=logits.device)
            if mask.dtype != torch.bool:
                raise TypeError(f"blocked_mask must be a bool tensor, got dtype {mask.dtype}")
            try:
                torch.broadcast_shapes(mask.shape, logits.shape)
            except RuntimeError as err:
                raise ValueError(
                    f"blocked_mask of shape {tuple(mask.shape)} does not broadcast with the "
                    f"parameters' shape {tuple(logits.shape)}"
                ) from err
        self.percolation_logits, self.loc, self.scale = logits, loc, scale
        self.blocked_mask = mask
        blockable = mask & ~torch.isposinf(logits)
        self._blockable = blockable.expand(logits.shape)
        # log p_j and log(1 − p_j); non-blockable components: 0 and −∞ (by where, never by ∞).
        safe = torch.where(self._blockable, logits, torch.zeros_like(logits))
        self._log_p = torch.where(self._blockable, torch.nn.functional.logsigmoid(safe),
                                  torch.zeros_like(safe))
        self._log_q = torch.where(self._blockable, torch.nn.functional.logsigmoid(-safe),
                                  torch.full_like(safe, -math.inf))
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    # ------------------------------------------------------------------ helpers
    @property
    def percolation_probs(self) -> torch.Tensor:
        """p_j = P(component j percolates), shape batch + (d_m,); 1 for non-blockable ones."""
        return self._log_p.exp()

    @property
    def log_percolation_probs(self) -> torch.Tensor:
        """log p_j (logsigmoid of the logits: exact also where p_j underflows); 0 if unblockable."""
        return self._log_p

    @property
    def log_blocking_probs(self) -> torch.Tensor:
        """log(1 − p_j) (logsigmoid(−ℓ_j)); −inf for components that cannot block."""
        return self._log_q

    @property
    def blocking_probs(self) -> torch.Tensor:
        """1 − p_j, shape batch + (d_m,) (computed as exp(logsigmoid(−ℓ)), exact in the tail)."""
        return self._log_q.exp()

    @property
    def normal(self) -> Independent:
        """The conditional distribution of m given that every component percolates."""
        return Independent(Normal(self.loc, self.scale), 1)

    @property
    def conditional_mean(self) -> torch.Tensor:
        """E[m_j | component j percolates] = loc."""
        return self.loc

    @property
    def conditional_stddev(self) -> torch.Tensor:
        """sd[m_j | component j percolates] = scale."""
        return self.scale

    @property
    def mean(self) -> torch.Tensor:
        """E[m]: loc where a component cannot block, −inf where it blocks with probability > 0."""
        return torch.where(torch.isneginf(self._log_q), self.loc,
                           torch.full_like(self.loc, -math.inf))

    @property
    def variance(self) -> torch.Tensor:
        """Var[m]: scale² where a component cannot block, NaN (undefined) elsewhere."""
        return torch.where(torch.isneginf(self._log_q), self.scale**2,
                           torch.full_like(self.scale, math.nan))

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.event_shape
        return PercolatedNormal(
            self.percolation_logits.expand(shape), self.loc.expand(shape),
            self.scale.expand(shape), self.blocked_mask, validate_args=False,
        )

    # ------------------------------------------------------------------ sampling and density
    def sample(self, sample_shape=()):
        """Draws with −inf for blocked components, shape sample_shape + batch + (d_m,)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            perc = torch.log(u) < self._log_p.expand(shape)
            value = self.loc.expand(shape) + self.scale.expand(shape) * eps
            return torch.where(perc, value, torch.full_like(value, -math.inf))

    def log_prob(self, value):
        """Σ_j [blocked: log(1 − p_j); percolating: log p_j + log N(m_j | loc_j, scale_j)]."""
        if self._validate_args:
            self._validate_sample(value)
        value, loc, scale, log_p, log_q = broadcast_all(value, self.loc, self.scale, self._log_p,
                                                        self._log_q)
        blocked = torch.isneginf(value)
        safe = torch.where(blocked, loc.detach(), value)
        lp = Normal(loc, scale).log_prob(safe) + log_p
        return torch.where(blocked, log_q, lp).sum(-1)

    def box_log_prob(self, low, high) -> torch.Tensor:
        r"""log P(m ∈ [low, high]) = Σ_j log[1{low_j = −∞}(1 − p_j) + p_j (Φ(b_j) − Φ(a_j))].

        Args:
            low, high: (d_m,) (broadcastable) box ends, ``low < high``; low may be −inf (the box
                then includes blocked values) and high +inf.

        Returns:
            Tensor of shape batch_shape, differentiable in loc, scale and the logits (finite
            gradients also for infinite ends).

        Example::

            >>> d = PercolatedNormal(torch.tensor([0.0]), torch.zeros(1), torch.ones(1))
            >>> round(float(d.box_log_prob(torch.tensor([-1.0]), torch.tensor([1.0])).exp()), 4)
            0.3413
        """
        low = torch.as_tensor(low, dtype=self.loc.dtype, device=self.loc.device)
        high = torch.as_tensor(high, dtype=self.loc.dtype, device=self.loc.device)
        inside = self._log_p + log_normal_box(self.loc, self.scale, low, high)
        low_inf = torch.isneginf(low).expand(inside.shape)
        log_q = torch.where(low_inf, self._log_q, torch.full_like(self._log_q, -math.inf))
        # logaddexp only where the blocked mass counts (both −inf would give a NaN gradient).
        both = torch.logaddexp(torch.where(low_inf, log_q, inside.detach()), inside)
        return torch.where(low_inf, both, inside).sum(-1)

    def component_cdf(self, value) -> torch.Tensor:
        """P(m_j ≤ value_j) per component (−inf counts the blocked mass), shape broadcast."""
        value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        blocked = torch.isneginf(value)
        safe = torch.where(blocked, self.loc.detach(), value)
        inside = self.percolation_probs * torch.special.ndtr((safe - self.loc) / self.scale)
        inside = torch.where(blocked, torch.zeros_like(inside), inside)
        return self.blocking_probs + inside
