r"""Adaptive tempering of a design target: a sequence K(0) → … → K(R) = K chosen by the ESS.

Rixner & Koutsourelakis (2022, Supplementary Information "Tempering") note that VB-EM starts
badly when the target K lies far from what the model predicts at φ(0): the posterior over the
latent variables conditional on κ ∈ K is then nearly singular. They introduce a sequence of
target domains K(r), r = 0 … R, with K(0) reachable at φ(0) and K(R) = K, and move from K(r) to
K(r+1) only as far as the *effective sample size* of importance weights allows. Here the sequence
is a path of targets indexed by λ ∈ [0, 1]:

- **Box**: low/high interpolated linearly, :math:`K(λ) = (1-λ) K(0) + λ K`, with K(0) from
  :func:`start_box` (the box of K's size centred on the model's mean prediction, widened to hold
  a ``min_fraction`` of the predicted properties),
- **TargetValue**: the target value interpolated, :math:`κ_t(λ) = (1-λ)κ_0 + λκ_t`,
- **TargetDensity**: the target draws translated, :math:`κ_s(λ) = κ_s + (1-λ)(κ_0 - μ_t)`.

For draws x_n (n = 1 … N_w) of the current variational posterior q (fitted for level λ_r), the
weights of the next level λ are the ratios of the model-predicted utilities,

.. math::

    \log w_n(λ) = \log E_{p_M(κ|x_n)}[u_λ(κ)] - \log E_{p_M(κ|x_n)}[u_{λ_r}(κ)],

which are the exact importance weights from the level-λ_r posterior to the level-λ one (for a
q equal to the prior, they reduce to the paper's weights :math:`w_n = P_M(κ ∈ K(λ) | x_n)`). The
normalized effective sample size

.. math::

    \mathrm{ESS}(λ) = \frac{(\sum_n w_n)^2}{N_w \sum_n w_n^2} \in (0, 1]

decreases as λ moves away from λ_r; :func:`next_level` finds by bisection the largest λ ≤ 1 with
ESS(λ) ≥ ``ess_threshold`` (0.5 by default). :func:`tempering_schedule` alternates it with a
user-supplied refit of q (``refit(level) -> log_f``), the loop VB-EM runs with ``tempering=True``
(:mod:`psppyro.design.vbem`). Design talks to models only through the design protocol
(``docs/architecture.md`` § "The design protocol").

References:
    Rixner, M., Koutsourelakis, P.-S. (2022). npj Computational Materials 8, 46 (SI: Tempering).
    Kish, L. (1965). Survey Sampling (the effective sample size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import as_tensor, check_int, check_interval
from .targets import Box, TargetDensity, TargetValue, as_target

__all__ = [
    "TemperedTarget",
    "effective_sample_size",
    "next_level",
    "start_box",
    "tempering_schedule",
]


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Normalized ESS :math:`(\sum w)^2 / (N \sum w^2)` over the last dim, from log-weights.

    Args:
        log_weights: Tensor (..., N); −inf entries are zero weights.

    Returns:
        Tensor (...,) in [1/N, 1] (0 when every weight is zero).

    Example::

        >>> float(effective_sample_size(torch.zeros(10)))
        1.0
        >>> round(float(effective_sample_size(torch.tensor([0.0, -1e9, -1e9, -1e9]))), 2)
        0.25
    """
    lw = as_tensor("log_weights", log_weights)
    if lw.dim() == 0 or lw.shape[-1] == 0:
        raise ValueError(f"log_weights must have shape (..., N) with N >= 1, got {tuple(lw.shape)}")
    n = lw.shape[-1]
    top = lw.max(-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    w = (lw - top).exp()
    s1, s2 = w.sum(-1), (w**2).sum(-1)
    return torch.where(s2 > 0, s1**2 / (n * s2.clamp_min(torch.finfo(w.dtype).tiny)),
                       torch.zeros_like(s1))


def start_box(target: Box, m: torch.Tensor, min_fraction: float = 0.5) -> Box:
    """K(0): the box of ``target``'s size centred on the mean of ``m``, widened to hold ``m``.

    The half-widths are the larger of the target's and of the half-width that holds
    ``min_fraction`` of ``m`` in each component (componentwise quantiles around the mean), so a
    non-negligible share of the predicted properties lies in K(0).

    Args:
        target: the final Box K.
        m: predicted properties at φ(0), Tensor (n, d_m).
        min_fraction: share of ``m`` (per component) K(0) must hold, in (0, 1).

    Example::

        >>> box = start_box(Box([10.0], [11.0]), torch.linspace(-1.0, 1.0, 101)[:, None], 0.9)
        >>> [round(v, 2) for v in box.low.tolist() + box.high.tolist()]
        [-0.9, 0.9]
    """
    target = as_target(target)
    if not isinstance(target, Box):
        raise TypeError(f"target must be a Box, got {type(target).__name__}")
    m = as_tensor("m", m)
    if m.dim() != 2 or m.shape[-1] != target.dim or m.shape[0] < 2:
        raise ValueError(f"m must have shape (n >= 2, {target.dim}), got {tuple(m.shape)}")
    check_interval("min_fraction", min_fraction, 0.0, 1.0)
    m = m.detach().double()
    centre = m.mean(0)
    half = 0.5 * (target.high - target.low).double().cpu()
    dev = (m - centre).abs()
    need = torch.quantile(dev, float(min_fraction), dim=0)
    half = torch.maximum(half.to(need), need)
    return Box(centre - half, centre + half)


class TemperedTarget:
    """The path of targets λ ∈ [0, 1] → target(λ) from a start to the final ``target``.

    Args:
        target: the final Box, TargetValue or TargetDensity.
        start: a Box (for a Box target: K(0)) or the start point κ_0 (d_m,) (TargetValue: the
            start value; TargetDensity: where the target draws are translated to at λ = 0).

    Example::

        >>> path = TemperedTarget(Box([10.0], [11.0]), Box([0.0], [1.0]))
        >>> path.at(0.5).low.tolist(), path.at(1.0) is path.target
        ([5.0], True)
    """

    def __init__(self, target, start):
        self.target = as_target(target)
        if isinstance(self.target, Box):
            if not isinstance(start, Box) or start.dim != self.target.dim:
                raise TypeError(f"start must be a Box of dim {self.target.dim} for a Box target")
        elif isinstance(self.target, (TargetValue, TargetDensity)):
            start = as_tensor("start", start).reshape(-1)
            if start.numel() != self.target.dim:
                raise ValueError(f"start must have {self.target.dim} entries, got {start.numel()}")
        else:
            raise TypeError(f"target cannot be tempered: {type(self.target).__name__}")
        self.start = start

    def at(self, level: float):
        """The target at λ = ``level`` (λ = 1 returns the final target object itself)."""
        check_interval("level", level, 0.0, 1.0, closed=(True, True))
        t = self.target
        if level >= 1.0:
            return t
        lam = float(level)
        if isinstance(t, Box):
            low = (1 - lam) * self.start.low.double() + lam * t.low.double()
            high = (1 - lam) * self.start.high.double() + lam * t.high.double()
            return Box(low, high, temperature=t.temperature, num_mc=t.num_mc)
        if isinstance(t, TargetValue):
            mt = (1 - lam) * self.start.to(t.m_target) + lam * t.m_target
            return TargetValue(mt, tau=t.tau, num_mc=t.num_mc)
        return t

    def shift(self, level: float) -> torch.Tensor | None:
        """TargetDensity only: the translation (1 − λ)(κ_0 − μ_t) of the target draws."""
        if not isinstance(self.target, TargetDensity):
            return None
        mu = self.target.center
        return (1 - float(level)) * (self.start.to(mu) - mu)


def next_level(
    log_f: Callable[[float], torch.Tensor],
    current: float,
    ess_threshold: float = 0.5,
    tol: float = 1e-3,
) -> tuple[float, float]:
    """The largest λ in (current, 1] whose ESS from the current level stays ≥ ``ess_threshold``.

    Args:
        log_f: ``log_f(λ)`` → Tensor (..., N_w) of log E_{p_M(κ|x_n)}[u_λ(κ)] for the current
            draws x_n (several rows, e.g. one per O2 target draw: the smallest ESS counts).
        current: the current level λ_r in [0, 1).
        ess_threshold: minimum normalized ESS, in (0, 1).
        tol: bisection tolerance on λ.

    Returns:
        ``(level, ess)``: the new level (≥ current + tol unless 1 is reached) and its ESS. When
        even a step of ``tol`` falls below the threshold the step of ``tol`` is taken anyway (so
        the schedule always progresses) and its ESS is returned.

    Example::

        >>> x = torch.linspace(-3.0, 3.0, 201)
        >>> log_f = lambda lam: -0.5 * (x - 4.0 * lam) ** 2    # target moves from 0 to 4
        >>> lam, ess = next_level(log_f, 0.0, ess_threshold=0.5)
        >>> 0.0 < lam < 1.0 and ess >= 0.5
        True
    """
    check_interval("current", current, 0.0, 1.0, closed=(True, False))
    check_interval("ess_threshold", ess_threshold, 0.0, 1.0)
    check_interval("tol", tol, 0.0, 1.0)
    base = log_f(float(current))

    def ess_at(lam):
        return float(effective_sample_size(log_f(lam) - base).min())

    e1 = ess_at(1.0)
    if e1 >= ess_threshold:
        return 1.0, e1
    lo, hi = float(current), 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if ess_at(mid) >= ess_threshold:
            lo = mid
        else:
            hi = mid
    lam = max(lo, min(1.0, float(current) + tol))
    return lam, ess_at(lam)


def tempering_schedule(
    refit: Callable[[float], Callable[[float], torch.Tensor]],
    ess_threshold: float = 0.5,
    max_levels: int = 100,
    tol: float = 1e-3,
) -> list[tuple[float, float]]:
    """Run the adaptive tempering loop: refit at λ_r, choose λ_{r+1} by the ESS, until λ = 1.

    Args:
        refit: ``refit(level)`` fits the approximation for the target at ``level`` (e.g. VB-EM
            iterations) and returns the ``log_f`` of :func:`next_level` for its draws.
        ess_threshold: minimum normalized ESS of a step, in (0, 1).
        max_levels: upper bound on the number of levels (the loop raises if λ = 1 is not reached).
        tol: bisection tolerance.

    Returns:
        list of ``(level, ess)``, starting with ``(0.0, 1.0)`` and ending with level 1.0 (after
        the final refit at λ = 1).

    Raises:
        RuntimeError: λ = 1 not reached within ``max_levels`` levels.

    Example::

        >>> # a Gaussian "posterior" refitted at each level: draws around the current mean
        >>> g = torch.Generator().manual_seed(0)
        >>> def refit(lam):
        ...     x = 6.0 * lam + torch.randn(400, generator=g)
        ...     return lambda l: -0.5 * (x - 6.0 * l) ** 2
        >>> levels = tempering_schedule(refit)
        >>> levels[-1][0], len(levels) > 2
        (1.0, True)
    """
    check_interval("ess_threshold", ess_threshold, 0.0, 1.0)
    max_levels = check_int("max_levels", max_levels)
    levels = [(0.0, 1.0)]
    lam = 0.0
    while True:
        log_f = refit(lam)
        if lam >= 1.0:
            return levels
        if len(levels) >= max_levels:
            raise RuntimeError(
                f"tempering did not reach the target within max_levels={max_levels} levels "
                f"(last level {lam:.4g}); lower ess_threshold or raise max_levels"
            )
        lam, ess = next_level(log_f, lam, ess_threshold, tol)
        levels.append((lam, ess))
