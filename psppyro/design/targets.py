r"""Design targets: what "the material we want" means.

A target turns the model's property distribution p(m | φ, z) into a per-(φ, z) *log utility*
log u(φ, z), whose average over the nuisance latent z gives the design objective
(``docs/architecture.md`` § "The design problem").

**Box (objective O1 with u = 1_{M_d})**. For M_d = [l, h] (a box in R^{d_m})

.. math::

    u(φ, z) = P(m ∈ M_d \mid φ, z), \qquad P(m ∈ M_d \mid φ) = E_{z}[u(φ, z)].

When p(m | φ, z) is a diagonal Normal (``Independent(Normal(μ, σ), 1)``) the box probability
factorizes and is computed in closed form, in log space:

.. math::

    \log P = \sum_i \log\big(Φ(b_i) - Φ(a_i)\big), \quad a_i = (l_i - μ_i)/σ_i,\ b_i = (h_i -
    μ_i)/σ_i,

with :math:`\log(Φ(b) - Φ(a)) = \log Φ(b) + \log(1 - e^{\log Φ(a) - \log Φ(b)})` evaluated with
``torch.special.log_ndtr`` and a stable ``log1mexp`` (both in
:mod:`psppyro.distributions`). In the upper tail (a + b > 0) the symmetric
form Φ(−a) − Φ(−b) is used instead, so both tails keep full relative precision (a box 40 standard
deviations away still has a finite log-probability and a useful gradient). For any other
distribution the probability is estimated by Monte Carlo with ``num_mc`` reparameterized samples of
m. The indicator has zero gradient, so an optional ``temperature`` T > 0 replaces it by the smooth
product of logistic sigmoids :math:`\prod_i σ((m_i - l_i)/T)\,σ((h_i - m_i)/T)` (then always
estimated by Monte Carlo, for every distribution, so the objective is the same whatever the model).

**Blocked directions and infinite bounds.** A box may have low_j = −∞ and high_j = +∞ (one-sided
or unconstrained components). A property component that can be *blocked* (ln k = −∞: the direction
does not percolate) is inside a box exactly when low_j = −∞. For a
:class:`~psppyro.distributions.PercolatedNormal` the box probability is its exact
``box_log_prob`` (Σ_j log[1{l_j = −∞}(1 − p_j) + p_j(Φ(b_j) − Φ(a_j))]), so NUTS may use it. The
simulator writes a blocked direction as the floor −20 (never −∞, see :mod:`psppyro.distributions`);
``Box(..., floor=-20)`` makes the rule explicit: simulated values ≤ floor are read as −∞ by
:meth:`Box.contains` and a finite lower bound ≤ floor is refused (it would count the floor as a
value). Without ``floor`` a box whose finite lower bounds lie above −20 already gives the same
answer for −20 and −∞. TargetValue with a PercolatedNormal: a blocked component has utility 0
(m_t is finite), so E[u] = Π_j p_j (1 + 2τσ_j²)^{−1/2} exp(−τ(μ_j − m_{t,j})²/(1 + 2τσ_j²)) —
closed form. TargetDensity with a PercolatedNormal: the target draws are finite, so log p(m | φ, z)
= Σ_j [log p_j + log N(m_j | μ_j, σ_j²)]: the KL also penalizes blocking.

**TargetValue** (O1 with a smooth utility) u(m) = exp(−τ‖m − m_t‖²). For a diagonal Normal the
expectation is Gaussian-integral closed form,

.. math::

    E[u] = \prod_i (1 + 2τσ_i^2)^{-1/2} \exp\Big(-\frac{τ(μ_i - m_{t,i})^2}{1 + 2τσ_i^2}\Big),

and Monte Carlo otherwise.

**TargetDensity** (objective O2): KL(p_target ‖ p(m | φ)) = −H(p_target) − E_{p_target}[log
p(m | φ)] with the marginal p(m | φ) = E_z p(m | φ, z). It is not a per-(φ, z) utility; see
:mod:`psppyro.design.objectives` for its estimator (a log-mean-exp over z samples, biased low by ≈
Var_z[p(m|φ,z)] / (2 M p(m|φ)²) — so the KL is biased *high* by that much).

**Targets own their behaviour** (``docs/architecture.md`` § "The design protocol"): ``kind``
(``"utility"`` for O1, ``"density"`` for O2), ``objective_name``, ``direction``, ``dim``, the
batched objective (``log_terms`` / ``reduce`` / ``score``, the per-z terms and their combination),
its Monte Carlo estimate at φ (``estimate``), its estimate from simulated properties
(``from_simulations``), the per-sample score of predicted properties (``predictive_score``),
whether NUTS may use it (``exact_log_density``), the Pyro model of posterior design
(``pyro_model``) and the best of several values (``best_index``). The design methods call only
these and never ask which kind of target they have.

References:
    Zhang, Koutsourelakis et al., PSP-GEN (2024), objective (O1) with M_d boxes; Rixner &
    Koutsourelakis (2022), objective (O2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from .._validation import as_tensor, check_finite, check_int, check_positive
from ..distributions import PercolatedNormal, log1mexp, log_normal_box

__all__ = [
    "Box",
    "Target",
    "TargetDensity",
    "TargetValue",
    "as_target",
    "log1mexp",
    "log_normal_box",
]


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


def _logmeanexp(x, dim):
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


class Target(ABC):
    """Base class of design targets: each target owns its objective and how it is estimated.

    Class attributes: ``kind`` (``"utility"`` for O1, ``"density"`` for O2), ``objective_name``
    (``"probability" | "expected_utility" | "kl"``) and ``direction`` (``"maximize"`` or
    ``"minimize"``). Design methods only call the methods below, never ask which target they have.
    """

    kind: str = "utility"
    objective_name: str = "objective"
    direction: str = "maximize"
    #: label of :meth:`predictive_score` averages (used by ``compare_posteriors``).
    predictive_label: str = "mean score"

    @property
    @abstractmethod
    def dim(self) -> int:
        """d_m, the number of property components."""

    @property
    @abstractmethod
    def center(self) -> torch.Tensor:
        """A representative property value (box centre, target value or mean)."""

    @property
    def has_utility(self) -> bool:
        """Whether the target defines a per-(φ, z) utility (objective O1)."""
        return self.kind == "utility"

    @abstractmethod
    def config(self) -> dict:
        """A JSON-serializable description of the target."""

    def draws(self, num_samples: int, seed=None):
        """Target draws the objective needs (O2: m_k ~ p_target), or None (O1)."""
        return None

    @abstractmethod
    def log_terms(self, dist, draws=None) -> torch.Tensor:
        """Per-z log terms whose log-mean-exp over the last batch dim estimates the objective.

        O1: log u(φ, z), shape = ``dist.batch_shape``; O2: log p(m_k | φ, z), shape
        ``(K, *dist.batch_shape)`` for ``draws`` (K, d_m).
        """

    def reduce(self, log_mean: torch.Tensor) -> torch.Tensor:
        """Combine the log-mean-exp over z into the log objective to *maximize* (O1: identity)."""
        return log_mean

    def score(self, dist, draws=None) -> torch.Tensor:
        """Batched log objective (to maximize) from one batch of z along the last batch dim.

        O1: log P̂ = log mean_z u(φ, z); O2: −cross-entropy = mean_k log mean_z p(m_k | φ, z).
        Shape ``dist.batch_shape[:-1]``; differentiable in φ wherever the target is.

        Example::

            >>> d = Independent(Normal(torch.zeros(3, 1), torch.ones(3, 1)), 1)  # batch (3,)
            >>> round(float(Box([-1.0], [1.0]).score(d).exp()), 4)
            0.6827
        """
        return self.reduce(_logmeanexp(self.log_terms(dist, draws), -1))

    @abstractmethod
    def estimate(self, chunks, num_samples: int, generator, like, num_target_samples: int = 1000):
        """``(value, se)`` of the objective at φ from z chunks (see ``estimate_objective``).

        Args:
            chunks: zero-argument callable returning an iterator of property distributions, each
                with batch shape (..., n_chunk) (z along the last batch dim), ``num_samples`` z
                in all.
            num_samples: M, the total number of z draws. generator: torch.Generator.
            like: a tensor whose dtype/device the target draws take.
            num_target_samples: K, target draws (O2 only).
        """

    @abstractmethod
    def from_simulations(self, m: torch.Tensor, seed: int = 0):
        """``(value, se)`` of the objective from simulated properties ``m`` (n, d_m)."""

    @abstractmethod
    def predictive_score(self, m: torch.Tensor) -> torch.Tensor:
        """Per-sample score of predicted properties m (..., d_m) (indicator, utility, log p)."""

    @abstractmethod
    def exact_log_density(self, dist) -> bool:
        """Whether :meth:`log_terms` is exact (no Monte Carlo) for ``dist`` — NUTS needs this."""

    def latent_copies(self, num_pseudo_data: int) -> int:
        """How many z vectors the posterior-design model has (O1: 1; O2: one per pseudo-datum)."""
        return 1

    @abstractmethod
    def pyro_model(self, checked, num_pseudo_data: int = 20, seed: int = 0):
        """The Pyro model of posterior design for a :class:`~.protocol.CheckedModel`."""

    def best_index(self, values: torch.Tensor) -> int:
        """Index of the best of ``values`` (argmax or argmin by ``direction``).

        Example::

            >>> Box([0.0], [1.0]).best_index(torch.tensor([0.1, 0.7, 0.3]))
            1
        """
        values = torch.as_tensor(values)
        return int(torch.argmax(values) if self.direction == "maximize" else torch.argmin(values))

    def is_unreachable(self, value: float, se: float) -> bool:
        """Whether an objective value at φ* means the target is practically out of reach."""
        return False


class _UtilityTarget(Target):
    """O1 targets: u(φ, z) = E_{m ~ p(m|φ,z)}[u(m)] ∈ [0, 1]; objective E_z[u(φ, z)]."""

    kind = "utility"
    direction = "maximize"
    predictive_label = "mean utility"
    #: values below this (at φ*) are reported as unreachable (DesignWarning).
    unreachable_below = 1e-6

    @abstractmethod
    def log_utility(self, dist) -> torch.Tensor:
        """log E_{m ~ dist}[u(m)] for a property distribution with event shape (d_m,)."""

    @abstractmethod
    def utility(self, m: torch.Tensor) -> torch.Tensor:
        """u(m) for property values ``m`` of shape (..., d_m)."""

    def log_terms(self, dist, draws=None):
        return self.log_utility(dist)

    def estimate(self, chunks, num_samples, generator, like, num_target_samples=1000):
        total = total_sq = None
        for dist in chunks():
            u = self.log_utility(dist).double().exp()  # sums in float64 whatever the model dtype
            s, s2 = u.sum(-1), (u**2).sum(-1)
            total = s if total is None else total + s
            total_sq = s2 if total_sq is None else total_sq + s2
        mean = total / num_samples
        var = (
            (total_sq / num_samples - mean**2).clamp(min=0.0)
            * num_samples
            / max(num_samples - 1, 1)
        )
        return mean, (var / num_samples).sqrt()

    def from_simulations(self, m, seed=0):
        u = self.utility(m).double()
        return u.mean(), u.std() / math.sqrt(m.shape[0])

    def predictive_score(self, m):
        return self.utility(m)

    def is_unreachable(self, value, se):
        return float(value) < self.unreachable_below

    def pyro_model(self, checked, num_pseudo_data=20, seed=0):
        import pyro
        import pyro.distributions as pdist

        prior = checked.prior
        zeros = torch.zeros(checked.latent_dim, dtype=checked.bounds.dtype,
                            device=checked.bounds.device)

        def o1_model():
            phi = pyro.sample("phi", prior)
            if checked.latent_dim > 0:
                z = pyro.sample("z", pdist.Normal(zeros, 1.0).to_event(1))
            else:
                z = zeros
            pyro.factor("target", self.log_utility(checked.property_dist(phi, z)))

        return o1_model


class Box(_UtilityTarget):
    r"""The target box M_d = [low, high] ⊂ [−∞, ∞]^{d_m}; u = 1_{M_d} (objective O1).

    Args:
        low, high: sequences or tensors of shape (d_m,), ``low < high`` componentwise; not NaN.
            ``low`` may be −inf (the box then also contains blocked values m_j = −∞) and ``high``
            +inf (module docstring, "Blocked directions and infinite bounds").
        temperature: optional T > 0: use the smooth indicator ∏ σ((m−l)/T) σ((h−m)/T) (Monte Carlo)
            instead of the exact one. ``None`` (default) keeps the exact indicator.
        num_mc: Monte Carlo sample count per (φ, z) when no closed form applies (default 64).
        floor: optional finite value at or below which a *simulated* property counts as blocked
            (−∞) in :meth:`contains` — e.g. ``psppyro.properties.LOG_PERMEABILITY_FLOOR`` (−20);
            finite lower bounds must then lie above it.

    Raises:
        ValueError: shapes differ, a bound is NaN, low = +inf or high = −inf, ``low >= high``
            somewhere, bad temperature, a finite lower bound ≤ ``floor``.

    Example::

        >>> box = Box(low=[-1.0, -1.0], high=[1.0, 1.0])
        >>> d = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
        >>> round(float(box.log_utility(d).exp()), 4)   # 0.6827 ** 2
        0.4661
        >>> round(float(Box([-math.inf], [0.0]).log_utility(Independent(Normal(torch.zeros(1),
        ...     torch.ones(1)), 1)).exp()), 4)
        0.5
    """

    objective_name = "probability"
    predictive_label = "in-target fraction"

    def __init__(self, low, high, temperature=None, num_mc=64, floor=None):
        low64 = as_tensor("low", low, dtype=torch.float64)
        high64 = as_tensor("high", high, dtype=torch.float64)
        if low64.dim() != 1 or low64.numel() == 0:
            raise ValueError(f"low must be a 1-D sequence (d_m,), got shape {tuple(low64.shape)}")
        if high64.shape != low64.shape:
            raise ValueError(
                f"high must have the same shape as low {tuple(low64.shape)}, got "
                f"{tuple(high64.shape)}"
            )
        for name, t in (("low", low64), ("high", high64)):
            if bool(torch.isnan(t).any()):
                raise ValueError(f"{name} must not contain NaN, got {t.tolist()}")
        if bool(torch.isposinf(low64).any()) or bool(torch.isneginf(high64).any()):
            raise ValueError(
                "low may be -inf and high +inf, not the other way round; got "
                f"low={low64.tolist()}, high={high64.tolist()}"
            )
        if bool((low64 >= high64).any()):
            i = int((low64 >= high64).nonzero()[0])
            raise ValueError(
                f"low must be < high in every component; component {i}: "
                f"low={float(low64[i]):g} >= high={float(high64[i]):g}"
            )
        if temperature is not None:
            check_positive("temperature", temperature)
        if floor is not None:
            check_finite("floor", floor)
            floor = float(floor)
            bad = torch.isfinite(low64) & (low64 <= floor)
            if bool(bad.any()):
                i = int(bad.nonzero()[0])
                raise ValueError(
                    f"low must be -inf or > floor={floor:g} (values <= floor are blocked, i.e. "
                    f"-inf); component {i} has low={float(low64[i]):g}"
                )
        self.floor = floor
        self.num_mc = check_int("num_mc", num_mc)
        # Computation in the default dtype; the user's numbers kept in float64 for config().
        self._low64, self._high64 = low64.cpu(), high64.cpu()
        dtype = low.dtype if isinstance(low, torch.Tensor) and low.is_floating_point() else None
        self.low = low64.to(dtype or torch.get_default_dtype())
        self.high = high64.to(self.low.dtype)
        self.temperature = None if temperature is None else float(temperature)

    @classmethod
    def from_config(cls, config: dict) -> Box:
        """Rebuild a box from :meth:`config` (also from JSON, where ±inf are strings or null).

        ``"-inf"``/``"inf"`` strings decode to ±inf; ``None`` (what a JSON writer that maps
        non-finite numbers to null leaves) decodes to −inf in ``low`` and +inf in ``high``.

        Example::

            >>> import json
            >>> box = Box([-math.inf, -7.0], [-9.0, math.inf])
            >>> Box.from_config(json.loads(json.dumps(box.config())))
            Box(low=[-inf, -7], high=[-9, inf])
        """
        if not isinstance(config, dict) or config.get("kind", "box") != "box":
            raise ValueError(f"config must be a Box config (kind 'box'), got {config!r}")

        def decode(values, none_value, name):
            if not isinstance(values, (list, tuple)):
                raise ValueError(f"config[{name!r}] must be a list, got {values!r}")
            out = []
            for v in values:
                if v is None:
                    out.append(none_value)
                elif isinstance(v, str):
                    out.append(float(v))  # "inf", "-inf"
                else:
                    out.append(float(v))
            return out

        return cls(decode(config.get("low"), -math.inf, "low"),
                   decode(config.get("high"), math.inf, "high"),
                   temperature=config.get("temperature"), floor=config.get("floor"))

    @property
    def dim(self):
        """d_m."""
        return self.low.numel()

    @property
    def center(self):
        """The box centre (low + high) / 2 (an infinite side: the finite end ∓ 1)."""
        lo, hi = self.low, self.high
        lo_f = torch.where(torch.isfinite(lo), lo, torch.where(torch.isfinite(hi), hi - 1.0,
                                                               torch.zeros_like(hi) - 1.0))
        hi_f = torch.where(torch.isfinite(hi), hi, lo_f + 2.0)
        return 0.5 * (lo_f + hi_f)

    def contains(self, m):
        """Boolean tensor (...,): whether each row of ``m`` (..., d_m) lies in the box.

        −inf entries (blocked) are inside exactly where ``low`` is −inf; with ``floor`` set, values
        ≤ floor count as −inf. NaN is never inside.

        Example::

            >>> Box([0.0], [1.0]).contains(torch.tensor([[0.5], [2.0]])).tolist()
            [True, False]
            >>> Box([-math.inf], [-9.0], floor=-20.0).contains(torch.tensor([[-20.0], [-5.0]]))
            tensor([ True, False])
        """
        lo, hi = self.low.to(m), self.high.to(m)
        if self.floor is not None:
            m = torch.where(m <= self.floor, torch.full_like(m, -math.inf), m)
        return ((m >= lo) & (m <= hi)).all(-1)

    def utility(self, m):
        """The indicator (or its smooth version when ``temperature`` is set), shape (...,)."""
        if self.temperature is None:
            return self.contains(m).to(m.dtype)
        return self._log_smooth(m).exp()

    def _log_smooth_parts(self, m):
        # Per-component log σ((m−l)/T) + log σ((h−m)/T); an infinite end contributes 0.
        lo, hi, t = self.low.to(m), self.high.to(m), self.temperature
        lo_inf, hi_inf = torch.isneginf(lo), torch.isposinf(hi)
        lo_s = torch.where(lo_inf, torch.zeros_like(lo), lo)
        hi_s = torch.where(hi_inf, torch.zeros_like(hi), hi)
        below = torch.nn.functional.logsigmoid((m - lo_s) / t)
        above = torch.nn.functional.logsigmoid((hi_s - m) / t)
        zero = torch.zeros_like(below)
        return torch.where(lo_inf, zero, below) + torch.where(hi_inf, zero, above)

    def _log_smooth(self, m):
        if self.floor is not None:
            m = torch.where(m <= self.floor, torch.full_like(m, -math.inf), m)
        return self._log_smooth_parts(m).sum(-1)

    def log_utility(self, dist):
        """log P(m ∈ box) under ``dist``, shape = batch shape.

        Closed form for a diagonal Normal and for a distribution with ``box_log_prob`` (a
        :class:`~psppyro.distributions.PercolatedNormal`); Monte Carlo otherwise. With a
        temperature and a PercolatedNormal the smooth utility factorizes over the independent
        components: E[u] = ∏_j [(1 − p_j) 1{l_j = −∞} + p_j E_N[σ σ]] (Monte Carlo over the
        Normal part only, reparameterized, so the gradient reaches the percolation logits too).

        Example::

            >>> box = Box([10.0], [11.0])
            >>> d = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
            >>> bool(torch.isfinite(box.log_utility(d)))   # ~1e-23, still finite in log space
            True
        """
        _check_event("property_dist", dist, self.dim)
        if isinstance(dist, PercolatedNormal):
            lo, hi = self.low.to(dist.loc), self.high.to(dist.loc)
            if self.temperature is None:
                return dist.box_log_prob(lo, hi)
            m = dist.normal.rsample((self.num_mc,))
            log_s = torch.logsumexp(self._log_smooth_parts(m), 0) - math.log(self.num_mc)
            inside = dist.log_percolation_probs + log_s
            low_inf = torch.isneginf(lo).expand(inside.shape)
            blocked = torch.where(low_inf, dist.log_blocking_probs, inside.detach())
            return torch.where(low_inf, torch.logaddexp(blocked, inside), inside).sum(-1)
        if self.temperature is None and hasattr(dist, "box_log_prob"):
            return dist.box_log_prob(self.low, self.high)
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

    def exact_log_density(self, dist):
        """True without temperature for a diagonal Normal or a ``box_log_prob`` distribution."""
        return self.temperature is None and (
            _diag_normal(dist) is not None or hasattr(dist, "box_log_prob")
        )

    def from_simulations(self, m, seed=0):
        """Fraction of ``m`` in the box with the binomial standard error."""
        p = self.contains(m).double().mean()
        return p, (p * (1 - p) / m.shape[0]).sqrt()

    def predictive_score(self, m):
        return self.contains(m).to(m.dtype)

    def config(self):
        """JSON-serializable description (bounds as given, float64; ±inf as ``"-inf"``/``"inf"``).

        Example::

            >>> Box([-math.inf], [1.0]).config()["low"]
            ['-inf']
        """
        def enc(values):
            return [v if math.isfinite(v) else ("inf" if v > 0 else "-inf") for v in values]

        out = {
            "kind": "box",
            "low": enc(self._low64.tolist()),
            "high": enc(self._high64.tolist()),
            "temperature": self.temperature,
        }
        if self.floor is not None:
            out["floor"] = self.floor
        return out

    def __repr__(self):
        t = "" if self.temperature is None else f", temperature={self.temperature:g}"
        f = "" if self.floor is None else f", floor={self.floor:g}"
        lo = ", ".join(f"{v:g}" for v in self._low64.tolist())
        hi = ", ".join(f"{v:g}" for v in self._high64.tolist())
        return f"Box(low=[{lo}], high=[{hi}]{t}{f})"


class TargetValue(_UtilityTarget):
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

    objective_name = "expected_utility"

    def __init__(self, m_target, tau=1.0, num_mc=64):
        m64 = as_tensor("m_target", m_target, dtype=torch.float64)
        if m64.dim() != 1 or m64.numel() == 0:
            raise ValueError(
                f"m_target must be a 1-D sequence (d_m,), got shape {tuple(m64.shape)}"
            )
        check_finite("m_target", m64)
        check_positive("tau", tau)
        self.num_mc = check_int("num_mc", num_mc)
        self._m64 = m64.cpu()
        dtype = (
            m_target.dtype
            if isinstance(m_target, torch.Tensor) and m_target.is_floating_point()
            else None
        )
        self.m_target = m64.to(dtype or torch.get_default_dtype())
        self.tau = float(tau)

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
        """log E[u(m)] under ``dist`` (closed form for a diagonal Normal and a PercolatedNormal).

        A blocked component (m_j = −∞) has utility 0, so with a
        :class:`~psppyro.distributions.PercolatedNormal` each component adds log p_j.
        """
        _check_event("property_dist", dist, self.dim)
        log_p = 0.0
        if isinstance(dist, PercolatedNormal):
            normal, log_p = (dist.loc, dist.scale), dist.log_percolation_probs
        else:
            normal = _diag_normal(dist)
        if normal is not None:
            loc, scale = normal
            s = 1.0 + 2.0 * self.tau * scale**2
            gauss = -0.5 * torch.log(s) - self.tau * (loc - self.m_target.to(loc)) ** 2 / s
            return (gauss + log_p).sum(-1)
        m = _mc_sample(dist, self.num_mc)
        log_u = -self.tau * ((m - self.m_target.to(m)) ** 2).sum(-1)
        return torch.logsumexp(log_u, 0) - math.log(self.num_mc)

    def exact_log_density(self, dist):
        """True for a diagonal Normal or a PercolatedNormal (Gaussian-integral closed form)."""
        return _diag_normal(dist) is not None or isinstance(dist, PercolatedNormal)

    def config(self):
        """JSON-serializable description."""
        return {"kind": "value", "m_target": self._m64.tolist(), "tau": self.tau}

    def __repr__(self):
        return f"TargetValue(m_target={self._m64.tolist()}, tau={self.tau:g})"


class TargetDensity(Target):
    r"""A target density p_target(m) (objective O2: minimize KL(p_target ‖ p(m | φ))).

    Args:
        dist: a ``torch.distributions.Distribution`` with event shape (d_m,) and empty batch shape,
            e.g. ``MultivariateNormal(mean, covariance)``. A MultivariateNormal's covariance must be
            positive definite (a singular covariance is refused: the KL would be infinite).

    Example::

        >>> td = TargetDensity(MultivariateNormal(torch.zeros(2), torch.eye(2)))
        >>> (td.dim, td.objective_name, td.direction)
        (2, 'kl', 'minimize')
    """

    kind = "density"
    objective_name = "kl"
    direction = "minimize"
    predictive_label = "mean target log-density"

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
        """``num_samples`` draws (num_samples, d_m) from the target, reproducible by ``seed``.

        Example::

            >>> TargetDensity.normal([0.0], [[1.0]]).sample(3, seed=0).shape
            torch.Size([3, 1])
        """
        from .._random import make_generator

        num_samples = check_int("num_samples", num_samples)
        g = make_generator(seed)
        # torch distributions have no generator argument: fork the global RNG around the draw.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            return self.dist.sample((num_samples,))

    def draws(self, num_samples, seed=None):
        """``num_samples`` target draws (the O2 objective's outer average)."""
        return self.sample(num_samples, seed=seed)

    def entropy(self):
        """H(p_target) if the distribution implements it, else ``None``."""
        try:
            return float(self.dist.entropy())
        except NotImplementedError:
            return None

    def log_terms(self, dist, draws=None):
        if draws is None:
            raise ValueError("TargetDensity.log_terms needs target draws (K, d_m)")
        _check_event("property_dist", dist, self.dim)
        nb = len(dist.batch_shape)
        m = draws.reshape(draws.shape[0], *([1] * nb), draws.shape[-1])
        return dist.log_prob(m)

    def reduce(self, log_mean):
        """Mean over the target draws (dim 0): −cross-entropy, to maximize."""
        return log_mean.mean(0)

    def estimate(self, chunks, num_samples, generator, like, num_target_samples=1000):
        k = check_int("num_target_samples", num_target_samples, minimum=2)
        m = self.sample(k, seed=generator).to(like)
        acc = None
        for dist in chunks():
            lp = torch.logsumexp(self.log_terms(dist, m), -1)
            acc = lp if acc is None else torch.logaddexp(acc, lp)
        lp = acc.double() - math.log(num_samples)
        cross = -lp.mean(0)
        se = lp.std(0) / math.sqrt(k)
        h = self.entropy()
        return (cross if h is None else cross - h), se

    def _gaussian_kl(self, m):
        """KL(p_target ‖ N(mean(m), cov(m))) for m (n, d_m)."""
        mean = m.mean(0)
        cov = torch.atleast_2d(torch.cov(m.T))
        cov = cov + 1e-12 * torch.eye(cov.shape[0], dtype=cov.dtype) * cov.diagonal().mean()
        fit = MultivariateNormal(mean, covariance_matrix=cov)
        t = self.dist
        if isinstance(t, MultivariateNormal):
            t = MultivariateNormal(
                t.loc.double().cpu(), covariance_matrix=t.covariance_matrix.double().cpu()
            )
            return torch.distributions.kl_divergence(t, fit)
        if isinstance(t, Independent) and isinstance(t.base_dist, Normal):
            t = MultivariateNormal(
                t.base_dist.loc.double().cpu(),
                scale_tril=torch.diag(t.base_dist.scale.double().cpu()),
            )
            return torch.distributions.kl_divergence(t, fit)
        draws = self.sample(4096, seed=0).double().cpu()
        h = self.entropy()
        cross = -fit.log_prob(draws).mean()
        return cross if h is None else cross - h

    def from_simulations(self, m, seed=0):
        """KL(p_target ‖ N(m̄, Σ̂)) of a Gaussian fit to ``m``, bootstrap s.e. (200 resamples)."""
        from .._random import derive_seed

        m = m.double().cpu()
        n = m.shape[0]
        value = self._gaussian_kl(m)
        g = torch.Generator().manual_seed(derive_seed(seed, 99))
        boot = torch.stack(
            [self._gaussian_kl(m[torch.randint(0, n, (n,), generator=g)]) for _ in range(200)]
        )
        return value, boot.std()

    def predictive_score(self, m):
        return self.dist.log_prob(m.to(self.dist.mean))

    def exact_log_density(self, dist):
        """Always True: O2 conditions on pseudo-data through ``log_prob`` (exact)."""
        return True

    def latent_copies(self, num_pseudo_data):
        return int(num_pseudo_data)

    def pyro_model(self, checked, num_pseudo_data=20, seed=0):
        import pyro
        import pyro.distributions as pdist

        from .._random import derive_seed

        n = check_int("num_pseudo_data", num_pseudo_data)
        m_data = self.sample(n, seed=derive_seed(seed, 3)).to(checked.bounds)
        prior = checked.prior
        zeros = torch.zeros(checked.latent_dim, dtype=checked.bounds.dtype,
                            device=checked.bounds.device)

        def o2_model():
            phi = pyro.sample("phi", prior)
            with pyro.plate("data", n):
                z = pyro.sample("z", pdist.Normal(zeros, 1.0).to_event(1))
                pyro.sample("m", checked.property_dist(phi, z), obs=m_data)

        return o2_model

    def config(self):
        """JSON-serializable description (mean and covariance where available)."""
        out = {"kind": "density", "distribution": type(self.dist).__name__}
        try:
            out["mean"] = self.dist.mean.double().tolist()
            out["covariance"] = self.dist.covariance_matrix.double().tolist()
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
