r"""The competitor's design step: a conditional normalizing flow q(φ | m) trained on model samples.

Generale et al. (Acta Materialia 271, 119877, 2024; PSP-GEN's reference [20, 37]) invert a
forward surrogate by learning the conditional density of processing parameters given properties.
Pairs (φ_i, m_i) are drawn from the *forward model*: φ_i ~ p(φ) (uniform on the φ box, or the
model's ``phi_prior``), z_i ~ N(0, I), m_i ~ p(m | φ_i, z_i) (any model of the design protocol,
``docs/architecture.md`` § "The design protocol" — for the competitor the SV-MOGP chain
:class:`psppyro.models.generale.GeneraleChain`); a conditional flow is fitted by maximum
likelihood, :math:`\max \sum_i \log q(φ_i \mid m_i)`, so that :math:`q(φ \mid m) ≈ p(φ \mid m)`.

**Which flow, and why.** The authors' public code for the PSP setting (``agenerale/inverse-psp``)
uses a *continuous* flow trained by conditional flow matching (an MLP vector field v(φ_t, m, t),
sampled by an ODE solve). We use a *discrete* neural spline flow (zuko's ``NSF``; Durkan et al.
2019) instead: in d_φ = 2 … 10 it is as expressive, it is trained by exact maximum likelihood, and
both sampling and log q(φ | m) are one network pass — the point estimate below needs the density
of thousands of candidates under hundreds of conditions, which for a flow-matching model would
mean as many ODE solves with a trace estimator. The bounded φ box is handled by the flow acting
on :math:`u = \operatorname{logit}((φ - a)/(b - a))` with the log-Jacobian added, so every sample
lies inside the box.

**Point estimate φ_comp** (the PSP-GEN paper reports only point estimates of the competitor). For
a :class:`~psppyro.design.Box` target, Bayes' rule gives the design posterior as an average of the
conditional over the model's properties inside the box,

.. math::

   p(φ \mid m ∈ M_d) = \int_{M_d} p(φ \mid m)\, p(m \mid m ∈ M_d)\, dm
   ≈ \frac1J \sum_{j=1}^{J} q(φ \mid m_j),

with m_j the model-simulated properties that fall into M_d (if fewer than ``min_conditions``
fall in — a target outside the model's reach — m_j are drawn uniformly in the box, infinite
bounds replaced by the range of the simulated m). Candidates φ are drawn from that mixture and
φ_comp is the candidate with the highest mixture density (a MAP estimate; ``point="mean"`` gives
the mixture mean). For a :class:`~psppyro.design.TargetValue` the condition is m_target itself.

Example::

    >>> import torch
    >>> from psppyro._doctest_fixtures import ToyChain
    >>> from psppyro.design import Box
    >>> out = flow_design(ToyChain(), Box([0.9], [1.1]), num_pairs=256, epochs=1, seed=0,
    ...                   num_candidates=64)
    >>> out.phi.shape
    torch.Size([1])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .._random import derive_seed, make_generator
from .._validation import (
    as_tensor,
    check_choice,
    check_int,
    check_last_dim,
    check_paired_rows,
    check_positive,
    check_seed,
)
from .protocol import as_checked
from .targets import Box, TargetValue, as_target

__all__ = [
    "ConditionalFlow",
    "FlowDesign",
    "design_with_flow",
    "flow_design",
    "simulate_pairs",
]


@torch.no_grad()
def simulate_pairs(model, num_pairs: int, seed: int = 0, batch_size: int = 4096):
    """(φ, m) pairs from a design-protocol model: φ ~ p(φ), z ~ N(0, I), m ~ p(m | φ, z).

    Args:
        model: design-protocol model (or a ``CheckedModel``).
        num_pairs: number of pairs. seed: int. batch_size: pairs per model call.

    Returns:
        ``(phi, m)``: Tensors (num_pairs, d_φ) and (num_pairs, d_m) in the bounds' dtype.

    Raises:
        ValueError: bad sizes or seed, a model that fails the protocol check.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> phi, m = simulate_pairs(ToyChain(), 10, seed=0)
        >>> phi.shape, m.shape
        (torch.Size([10, 1]), torch.Size([10, 1]))
    """
    num_pairs = check_int("num_pairs", num_pairs)
    batch_size = check_int("batch_size", batch_size)
    seed = check_seed("seed", seed)
    cm = as_checked(model)
    phis, ms = [], []
    for c, start in enumerate(range(0, num_pairs, batch_size)):
        n = min(batch_size, num_pairs - start)
        g = make_generator(derive_seed(seed, c))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, c, 1))
            phi = cm.prior.sample((n,)).to(cm.bounds)
            z = cm.sample_latents(n, g)
            m = cm.property_dist(phi, z).sample()
        phis.append(phi)
        ms.append(m.to(cm.bounds.dtype))
    return torch.cat(phis), torch.cat(ms)


class ConditionalFlow(torch.nn.Module):
    """q(φ | m): a zuko neural spline flow on logit-scaled φ, conditioned on standardized m.

    Args:
        phi_bounds: (d_φ, 2) finite box. d_m: size of the condition.
        transforms: number of autoregressive spline transforms. hidden: hidden widths.
        bins: spline bins. seed: seeds the initial weights.

    Example::

        >>> flow = ConditionalFlow(torch.tensor([[0.0, 1.0], [2.0, 4.0]]), d_m=3)
        >>> flow.sample(torch.zeros(3), 5, seed=0).shape
        torch.Size([5, 2])
    """

    def __init__(self, phi_bounds, d_m: int, transforms: int = 3, hidden=(64, 64),
                 bins: int = 8, seed: int = 0):
        super().__init__()
        import zuko

        bounds = as_tensor("phi_bounds", phi_bounds, dtype=torch.float32)
        if bounds.dim() != 2 or bounds.shape[-1] != 2 or not bool(torch.isfinite(bounds).all()):
            raise ValueError(
                f"phi_bounds must be a finite (d_phi, 2) tensor, got {bounds.tolist()}"
            )
        if bool((bounds[:, 0] >= bounds[:, 1]).any()):
            raise ValueError(f"phi_bounds must have low < high, got {bounds.tolist()}")
        self.d_phi = int(bounds.shape[0])
        self.d_m = check_int("d_m", d_m)
        transforms = check_int("transforms", transforms)
        bins = check_int("bins", bins, minimum=2)
        hidden = tuple(check_int("hidden", h) for h in hidden)
        seed = check_seed("seed", seed)
        self.register_buffer("low", bounds[:, 0].clone())
        self.register_buffer("width", (bounds[:, 1] - bounds[:, 0]).clone())
        self.register_buffer("m_mean", torch.zeros(self.d_m))
        self.register_buffer("m_std", torch.ones(self.d_m))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # zuko's NSF needs >= 1 feature; in 1-D it is a conditional spline of u alone.
            self.flow = zuko.flows.NSF(self.d_phi, self.d_m, transforms=transforms,
                                       hidden_features=hidden, bins=bins)
        self.history: list[float] = []

    # u = logit(t), t = (φ - low) / width
    def _to_u(self, phi):
        t = ((phi - self.low) / self.width).clamp(1e-6, 1 - 1e-6)
        u = torch.log(t) - torch.log1p(-t)
        log_jac = -(torch.log(self.width) + torch.log(t) + torch.log1p(-t)).sum(-1)
        return u, log_jac

    def _to_phi(self, u):
        return self.low + self.width * torch.sigmoid(u)

    def _context(self, m):
        return (m - self.m_mean) / self.m_std

    def log_prob(self, phi: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """log q(φ | m) (batch broadcast of φ (..., d_φ) and m (..., d_m)), float32."""
        phi = as_tensor("phi", phi, dtype=torch.float32)
        m = as_tensor("m", m, dtype=torch.float32)
        check_last_dim("phi", phi, self.d_phi)
        check_last_dim("m", m, self.d_m)
        batch = torch.broadcast_shapes(phi.shape[:-1], m.shape[:-1])
        u, log_jac = self._to_u(phi.expand(*batch, self.d_phi))
        c = self._context(m.expand(*batch, self.d_m))
        return self.flow(c).log_prob(u) + log_jac

    def fit(self, phi: torch.Tensor, m: torch.Tensor, epochs: int = 100, batch_size: int = 256,
            lr: float = 1e-3, seed: int = 0, progress: bool = True) -> ConditionalFlow:
        """Maximum likelihood on pairs (φ_i, m_i) with Adam on shuffled minibatches.

        Args:
            phi: (n, d_φ) inside the box. m: (n, d_m) conditions. epochs, batch_size, lr: Adam.
            seed: seeds the shuffles. progress: tqdm bar.

        Returns:
            ``self`` (``history``: mean negative log-likelihood per epoch).

        Raises:
            ValueError: mismatched or non-finite inputs, bad sizes.
        """
        phi, m = check_paired_rows("phi", phi, self.d_phi, "m", m, self.d_m)
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size)
        check_positive("lr", lr)
        seed = check_seed("seed", seed)
        self.m_mean.copy_(m.mean(0))
        self.m_std.copy_(m.std(0).clamp_min(1e-6) if m.shape[0] > 1 else torch.ones(self.d_m))
        opt = torch.optim.Adam(self.flow.parameters(), lr=lr)
        n = phi.shape[0]
        from tqdm.auto import tqdm

        bar = tqdm(range(epochs), desc="conditional flow", disable=not progress, leave=False)
        for epoch in bar:
            perm = torch.randperm(n, generator=make_generator(derive_seed(seed, epoch)))
            total = 0.0
            for start in range(0, n, batch_size):
                b = perm[start:start + batch_size]
                loss = -self.log_prob(phi[b], m[b]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            self.history.append(total / n)
            bar.set_postfix(nll=f"{self.history[-1]:.3f}")
        return self

    @torch.no_grad()
    def sample(self, m: torch.Tensor, num_samples: int, seed: int = 0) -> torch.Tensor:
        """φ ~ q(φ | m): Tensor ``(num_samples, *m.shape[:-1], d_φ)``, inside the box."""
        m = as_tensor("m", m, dtype=torch.float32)
        check_last_dim("m", m, self.d_m)
        num_samples = check_int("num_samples", num_samples)
        seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            u = self.flow(self._context(m)).sample((num_samples,))
        return self._to_phi(u)


@dataclass
class FlowDesign:
    """Result of :func:`flow_design`.

    Attributes:
        phi: φ_comp (d_φ,). point: ``"mode"`` or ``"mean"``. samples: draws of the aggregated
        posterior q(φ | m ∈ M_d) (num_candidates, d_φ). num_conditions: J. conditions:
        ``"model"`` (model m inside the target) or ``"uniform"`` (box fallback) or ``"value"``.
        flow: the trained :class:`ConditionalFlow`. timings: seconds per stage.
    """

    phi: torch.Tensor
    point: str
    samples: torch.Tensor
    num_conditions: int
    conditions: str
    flow: ConditionalFlow
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able summary (no tensors of samples)."""
        return {
            "phi": [float(v) for v in self.phi],
            "point": self.point,
            "num_conditions": self.num_conditions,
            "conditions": self.conditions,
            "final_nll": self.flow.history[-1] if self.flow.history else None,
            "timings": dict(self.timings),
        }


def _conditions(target, m_pairs, num_conditions, min_conditions, seed):
    if isinstance(target, TargetValue):
        return target._m64.to(m_pairs.dtype)[None], "value"
    if not isinstance(target, Box):
        raise TypeError(
            f"flow_design supports Box and TargetValue targets, got {type(target).__name__}"
        )
    inside = m_pairs[target.contains(m_pairs)]
    g = make_generator(derive_seed(seed, 7))
    if inside.shape[0] >= min_conditions:
        idx = torch.randperm(inside.shape[0], generator=g)[:num_conditions]
        return inside[idx], "model"
    low = torch.maximum(target._low64.to(m_pairs.dtype), m_pairs.min(0).values)
    high = torch.minimum(target._high64.to(m_pairs.dtype), m_pairs.max(0).values)
    low = torch.where(torch.isfinite(target._low64.to(m_pairs.dtype)),
                      target._low64.to(m_pairs.dtype), low)
    high = torch.where(torch.isfinite(target._high64.to(m_pairs.dtype)),
                       target._high64.to(m_pairs.dtype), high)
    high = torch.maximum(high, low + 1e-6)
    u = torch.rand(num_conditions, low.numel(), generator=g, dtype=m_pairs.dtype)
    return low + (high - low) * u, "uniform"


def flow_design(model, target, num_pairs: int = 20000, epochs: int = 100, batch_size: int = 256,
                lr: float = 1e-3, transforms: int = 3, hidden=(64, 64), bins: int = 8,
                num_conditions: int = 256, min_conditions: int = 32,
                num_candidates: int = 4096, point: str = "mode", seed: int = 0,
                progress: bool = False, pairs=None) -> FlowDesign:
    """The competitor's design: fit q(φ | m) on model pairs, return φ_comp (module docstring).

    Args:
        model: design-protocol model (the competitor uses the SV-MOGP chain).
        target: :class:`~psppyro.design.Box` or :class:`~psppyro.design.TargetValue`.
        num_pairs: (φ, m) pairs simulated from the model (ignored when ``pairs`` is given).
        epochs, batch_size, lr: flow training. transforms, hidden, bins: flow size.
        num_conditions: J, conditions m_j of the aggregated posterior.
        min_conditions: fewer model m inside the box than this → uniform conditions on the box.
        num_candidates: candidate φ drawn from the aggregated posterior.
        point: ``"mode"`` (highest aggregated density) or ``"mean"``.
        seed: int. progress: tqdm bar while training.
        pairs: optional precomputed ``(phi, m)`` pairs (then ``num_pairs`` is ignored).

    Returns:
        :class:`FlowDesign`.

    Raises:
        ValueError/TypeError: bad options or an unsupported target.
    """
    target = as_target(target)
    check_choice("point", point, ("mode", "mean"))
    seed = check_seed("seed", seed)
    cm = as_checked(model, target)
    t0 = time.perf_counter()
    if pairs is None:
        phi, m = simulate_pairs(cm, num_pairs, seed=derive_seed(seed, 0))
    else:
        phi, m = (as_tensor("pairs[0]", pairs[0]), as_tensor("pairs[1]", pairs[1]))
    t_pairs = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow = ConditionalFlow(cm.bounds, cm.d_m, transforms, hidden, bins, seed=derive_seed(seed, 1))
    flow.fit(phi, m, epochs, batch_size, lr, seed=derive_seed(seed, 2), progress=progress)
    t_fit = time.perf_counter() - t0
    out = design_with_flow(flow, target, m, num_conditions, min_conditions, num_candidates,
                           point, seed)
    out.timings.update({"pairs_s": t_pairs, "flow_fit_s": t_fit})
    return out


def design_with_flow(flow: ConditionalFlow, target, m_pairs, num_conditions: int = 256,
                     min_conditions: int = 32, num_candidates: int = 4096, point: str = "mode",
                     seed: int = 0) -> FlowDesign:
    """φ_comp from a trained flow for one target (the point estimate of the module docstring).

    Args:
        flow: a fitted :class:`ConditionalFlow`. target: Box or TargetValue.
        m_pairs: (n, d_m) model-simulated m (their members inside the box are the conditions).
        num_conditions, min_conditions, num_candidates, point, seed: as in :func:`flow_design`.

    Returns:
        :class:`FlowDesign`.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> phi, m = simulate_pairs(ToyChain(), 256)
        >>> flow = ConditionalFlow(ToyChain().phi_bounds, 1).fit(phi, m, epochs=2, progress=False)
        >>> design_with_flow(flow, Box([-1.0], [1.0]), m, num_candidates=64).conditions
        'model'
    """
    target = as_target(target)
    check_choice("point", point, ("mode", "mean"))
    num_conditions = check_int("num_conditions", num_conditions)
    min_conditions = check_int("min_conditions", min_conditions)
    num_candidates = check_int("num_candidates", num_candidates)
    seed = check_seed("seed", seed)
    m_pairs = as_tensor("m_pairs", m_pairs, dtype=torch.float64)
    check_last_dim("m_pairs", m_pairs, flow.d_m)
    t0 = time.perf_counter()
    cond, kind = _conditions(target, m_pairs, num_conditions, min_conditions, seed)
    cond = cond.float()
    j = cond.shape[0]
    per = math.ceil(num_candidates / j)
    cand = flow.sample(cond, per, seed=derive_seed(seed, 3)).reshape(-1, flow.d_phi)
    cand = cand[:num_candidates]
    with torch.no_grad():
        if point == "mean":
            phi = cand.mean(0)
        else:
            lp = torch.cat([
                torch.logsumexp(flow.log_prob(c[:, None, :], cond[None]), -1)
                for c in cand.split(max(1, 65536 // j))
            ])
            phi = cand[int(lp.argmax())]
    return FlowDesign(phi.double(), point, cand, j, kind, flow,
                      {"design_s": time.perf_counter() - t0})
