r"""``method="amortized"``: one conditional flow q_ψ(φ, z | t) that designs for any target t.

Every per-target method solves one optimization (or one posterior fit) per target. Amortized
variational inference (Gershman & Goodman 2014; Kingma & Welling 2014) trains *one* conditional
normalizing flow over the same design posterior for a whole family of targets and then designs for
a new target with a single network call.

**The objective.** For a target t the design posterior of :mod:`psppyro.design.posterior`
(``docs/architecture.md`` § "The design problem") is p_t(φ, z) ∝ p(φ) p(z) u_t(φ, z) (O1), or
p(φ) ∏_i p(m_i | φ, z_i) p(z_i) with N pseudo-data m_i ~ p_t (O2). The per-target method ``flow``
maximizes ELBO_t(q) = E_q[log p_t(φ, z) − log q(φ, z)]. Here the flow takes a context vector c(t)
and ψ maximizes the *expected* ELBO over a distribution of targets,

.. math::

    \mathcal L(ψ) = E_{t \sim p(t)}\Big[ E_{q_ψ(φ, z \mid t)}\big[\log p_t(φ, z)
    - \log q_ψ(φ, z \mid t)\big] \Big],

estimated with ``targets_per_step`` targets and ``num_particles`` reparameterized flow draws per
target at each Adam step. log p_t is the log-joint of the target's own Pyro model
(``target.pyro_model``, the model every posterior method uses), evaluated by conditioning it on
the flow's draws; the guide is the per-target flow guide of :mod:`psppyro.design.flow` (φ mapped to
its box by ``biject_to``, log-Jacobian included), fed the context. The flow is sampled once per step
for all targets (a batch of contexts), which makes a step cost about as much as one per-target step
times a small factor. Because the objective is the same, q_ψ(· | t) approximates the same posterior
as ``infer_design(model, t, method="flow")`` up to the amortization gap.

**The distribution of targets** (a *target family*, which also defines c(t)). The family fits a
*pool* of ``pool_size`` property draws from the model's predictive distribution under the φ prior,
m = draw of p(m | φ, z) with φ ~ p(φ) and z ~ N(0, I); μ and s are the pool's mean and standard
deviation per component. Then

- :class:`BoxFamily` (targets :class:`~psppyro.design.Box`): the centre is a pool draw, the width of
  component i is f_i s_i with f_i log-uniform on ``width`` (default [0.5, 2]);
  c(t) = ((centre − μ)/s, log(width / s)).
- :class:`ValueFamily` (:class:`~psppyro.design.TargetValue`): m_t is a pool draw and
  τ = κ / mean(s²) with κ log-uniform on ``kappa`` (default [0.5, 8]); c(t) = ((m_t − μ)/s, log κ).
- :class:`DensityFamily` (Gaussian :class:`~psppyro.design.TargetDensity`, objective O2): the mean
  is a pool draw, standard deviations f_i s_i with f_i log-uniform on ``std`` (default [0.2, 1]),
  correlations from an LKJ(``concentration``) draw; c(t) = ((mean − μ)/s, log f, the correlations
  below the diagonal).

So the targets cover the property range the model can reach under the prior (the range of the
training data, for a model fitted to data designed uniformly over the φ box), with widths from
narrow to wide on the scale of that range.

**Out of distribution.** A target is *outside the training distribution* when (i) its centre
(box centre, target value, mean) has a squared Mahalanobis distance to the pool (pool mean and
covariance) larger than the 99.5 % quantile of the pool's own distances, or (ii) its width (box
width, κ, standard deviation) lies outside the family's range (1 % slack). Designing for such a
target works but extrapolates the network: the runner issues a
:class:`~psppyro.design.DesignWarning` and records the reason in ``diagnostics``.

Usage::

    designer = AmortizedDesigner(model, "box").fit(num_steps=3000)   # train once
    res = designer(Box([-10, -7], [-9, -5]))                           # any box, milliseconds
    res = infer_design(model, box, method="amortized", designer=designer)   # the same
    designer.save("designer.pt"); AmortizedDesigner.load("designer.pt", model)

References:
    Gershman & Goodman, *Amortized inference in probabilistic reasoning* (CogSci 2014);
    Rezende & Mohamed, *Variational inference with normalizing flows* (ICML 2015);
    Durkan et al., *Neural spline flows* (NeurIPS 2019); zuko (Rozet et al.).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import MultivariateNormal, biject_to

from .._random import derive_seed, make_generator
from .._validation import as_tensor, check_choice, check_int, check_positive, check_seed
from .flow import _FLOWS, _check_architecture, _flow_guide
from .posterior import score_guide
from .protocol import CheckedModel, as_checked, validate_model
from .registry import MethodOutput, register_method
from .results import DesignResult, DesignWarning
from .targets import Box, Target, TargetDensity, TargetValue, as_target

__all__ = [
    "AmortizedDesigner",
    "BoxFamily",
    "DensityFamily",
    "TargetFamily",
    "ValueFamily",
    "run_amortized",
]

#: quantile of the pool's squared Mahalanobis distances beyond which a centre is "outside".
OOD_QUANTILE = 0.995
#: relative slack on a family's width range before a target counts as outside it.
_SLACK = 0.01


def _check_range(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high), got {value!r}")
    lo, hi = value
    check_positive(f"{name}[0]", lo)
    check_positive(f"{name}[1]", hi)
    if not float(lo) <= float(hi):
        raise ValueError(f"{name} must have low <= high, got {tuple(value)!r}")
    return float(lo), float(hi)


def _log_uniform(lo, hi, shape, generator):
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _in_range(x, lo, hi):
    x = torch.as_tensor(x, dtype=torch.float64)
    return bool(((x >= lo * (1 - _SLACK)) & (x <= hi * (1 + _SLACK))).all())


class TargetFamily(ABC):
    """Base class of target families: a distribution p(t) of training targets and a context c(t).

    A family is *fitted* to a model (:meth:`fit`: a pool of predictive property draws) before
    use; :class:`AmortizedDesigner` does that. Subclasses define ``kind``, ``target_type``,
    :meth:`context_dim`, :meth:`sample_one`, :meth:`context` and :meth:`_width_problem`.

    Attributes:
        pool: Tensor (pool_size, d_m) of predictive draws (after :meth:`fit`).
        loc, scale: the pool's mean and standard deviation per component.
    """

    kind = "family"
    target_type: type = Target

    def __init__(self):
        self.pool = None
        self.loc = self.scale = None
        self._chol = None
        self._radius = None

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, model: Any, pool_size: int = 4096, seed: int = 0) -> TargetFamily:
        """Draw the pool m ~ p(m | φ, z), φ ~ p(φ), z ~ N(0, I) from a design-protocol model.

        Args:
            model: design-protocol model (or a ``CheckedModel``).
            pool_size: number of predictive draws (≥ 16). seed: int.

        Returns:
            ``self``.

        Example::

            >>> from psppyro._doctest_fixtures import ToyChain
            >>> fam = BoxFamily().fit(ToyChain(), pool_size=256)
            >>> tuple(fam.pool.shape)
            (256, 1)
        """
        pool_size = check_int("pool_size", pool_size, minimum=16)
        seed = check_seed("seed", seed)
        cm = as_checked(model)
        g = make_generator(derive_seed(seed, 1))
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 2))
            phi = cm.prior.sample((pool_size,)).to(cm.bounds)
            z = cm.sample_latents(pool_size, g)
            m = cm.property_dist(phi, z).sample()
        self.set_pool(m.reshape(pool_size, -1))
        return self

    def set_pool(self, pool: torch.Tensor) -> None:
        """Set the pool (n, d_m) and the statistics derived from it (used by ``load``)."""
        pool = as_tensor("pool", pool, dtype=torch.float64).detach().cpu()
        if pool.dim() != 2 or pool.shape[0] < 16:
            raise ValueError(f"pool must have shape (n >= 16, d_m), got {tuple(pool.shape)}")
        finite = torch.isfinite(pool).all(-1)
        if int(finite.sum()) < 16:
            raise ValueError("the model's predictive draws are not finite: cannot fit the family")
        pool = pool[finite]
        self.pool = pool
        self.loc = pool.mean(0)
        self.scale = pool.std(0).clamp(min=1e-8)
        d = pool.shape[1]
        cov = torch.atleast_2d(torch.cov(pool.T)) + 1e-9 * torch.eye(d, dtype=pool.dtype)
        self._chol = torch.linalg.cholesky(cov)
        self._radius = float(torch.quantile(self._mahalanobis2(pool), OOD_QUANTILE))

    def _mahalanobis2(self, m):
        diff = (torch.as_tensor(m, dtype=torch.float64).reshape(-1, self.dim) - self.loc).T
        sol = torch.linalg.solve_triangular(self._chol, diff, upper=False)
        return (sol**2).sum(0)

    def _need_fit(self):
        if self.pool is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(model) first")

    @property
    def dim(self) -> int:
        """d_m (after :meth:`fit`)."""
        self._need_fit()
        return int(self.pool.shape[1])

    # -- interface ---------------------------------------------------------------------------
    @abstractmethod
    def context_dim(self) -> int:
        """Length of the context vector c(t)."""

    @abstractmethod
    def sample_one(self, generator: torch.Generator) -> Target:
        """One training target drawn from p(t)."""

    @abstractmethod
    def context(self, target: Target) -> torch.Tensor:
        """c(t): float64 Tensor (context_dim,)."""

    @abstractmethod
    def _centre(self, target):
        """The target's centre in property space, (d_m,)."""

    @abstractmethod
    def _width_problem(self, target) -> str | None:
        """Why the target's width/spread lies outside the family's range, or None."""

    def sample(self, num_targets: int, seed: int | torch.Generator = 0) -> list:
        """``num_targets`` targets drawn from p(t) (a list), reproducible by ``seed``.

        Example::

            >>> from psppyro._doctest_fixtures import ToyChain
            >>> fam = BoxFamily().fit(ToyChain(), pool_size=256)
            >>> [type(t).__name__ for t in fam.sample(2, seed=0)]
            ['Box', 'Box']
        """
        self._need_fit()
        num_targets = check_int("num_targets", num_targets)
        g = make_generator(seed)
        return [self.sample_one(g) for _ in range(num_targets)]

    def check_target(self, target) -> Target:
        """``target`` if it is of this family's type and dimension, else TypeError/ValueError."""
        target = as_target(target)
        self._need_fit()
        if not isinstance(target, self.target_type):
            raise TypeError(
                f"this designer was trained on {self.target_type.__name__} targets "
                f"({type(self).__name__}); got {target!r}"
            )
        if target.dim != self.dim:
            raise ValueError(f"target has d_m={target.dim} but the family has d_m={self.dim}")
        return target

    def out_of_distribution(self, target) -> str | None:
        """Why ``target`` lies outside the training distribution (module docstring), or None.

        Example::

            >>> from psppyro._doctest_fixtures import ToyChain
            >>> fam = BoxFamily().fit(ToyChain(), pool_size=512)
            >>> fam.out_of_distribution(Box([0.0], [2.0])) is None
            True
            >>> fam.out_of_distribution(Box([40.0], [40.5]))[:27]
            'its centre lies outside the'
        """
        target = self.check_target(target)
        d2 = float(self._mahalanobis2(self._centre(target))[0])
        if not d2 <= self._radius:
            return (
                f"its centre lies outside the {100 * OOD_QUANTILE:g}% region of the model's "
                f"predictive properties (squared Mahalanobis distance {d2:.3g} > "
                f"{self._radius:.3g})"
            )
        return self._width_problem(target)

    @abstractmethod
    def config(self) -> dict:
        """JSON-serializable description (kind and options; the pool is saved separately)."""


class BoxFamily(TargetFamily):
    """Boxes: centre a predictive draw, width i = f_i · s_i with f_i log-uniform on ``width``.

    Args:
        width: (low, high) range of the widths in units of the predictive standard deviation s.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> fam = BoxFamily(width=(0.5, 1.0)).fit(ToyChain(), pool_size=256)
        >>> box = fam.sample(1, seed=0)[0]
        >>> fam.context(box).shape
        torch.Size([2])
    """

    kind = "box"
    target_type = Box

    def __init__(self, width=(0.5, 2.0)):
        super().__init__()
        self.width = _check_range("width", width)

    def context_dim(self):
        return 2 * self.dim

    def sample_one(self, generator):
        i = int(torch.randint(0, self.pool.shape[0], (1,), generator=generator))
        c = self.pool[i]
        w = _log_uniform(*self.width, (self.dim,), generator) * self.scale
        return Box(c - w / 2, c + w / 2)

    def _centre(self, target):
        return 0.5 * (target._low64 + target._high64)

    def context(self, target):
        target = self.check_target(target)
        c = self._centre(target)
        w = target._high64 - target._low64
        return torch.cat([(c - self.loc) / self.scale, torch.log(w / self.scale)])

    def _width_problem(self, target):
        f = (target._high64 - target._low64) / self.scale
        if not _in_range(f, *self.width):
            return (
                f"its widths are {[round(v, 3) for v in f.tolist()]} predictive standard "
                f"deviations, outside the training range {self.width}"
            )
        return None

    def config(self):
        return {"kind": self.kind, "width": list(self.width)}


class ValueFamily(TargetFamily):
    """Target values: m_t a predictive draw, τ = κ / mean(s²) with κ log-uniform on ``kappa``.

    Args:
        kappa: (low, high) range of τ · mean(s²) (the sharpness relative to the property spread).

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> fam = ValueFamily().fit(ToyChain(), pool_size=256)
        >>> type(fam.sample(1, seed=0)[0]).__name__
        'TargetValue'
    """

    kind = "value"
    target_type = TargetValue

    def __init__(self, kappa=(0.5, 8.0)):
        super().__init__()
        self.kappa = _check_range("kappa", kappa)

    def _unit(self):
        return float((self.scale**2).mean())

    def context_dim(self):
        return self.dim + 1

    def sample_one(self, generator):
        i = int(torch.randint(0, self.pool.shape[0], (1,), generator=generator))
        kappa = float(_log_uniform(*self.kappa, (1,), generator))
        return TargetValue(self.pool[i], tau=kappa / self._unit())

    def _centre(self, target):
        return target._m64

    def context(self, target):
        target = self.check_target(target)
        kappa = target.tau * self._unit()
        return torch.cat([(target._m64 - self.loc) / self.scale,
                          torch.tensor([math.log(kappa)], dtype=torch.float64)])

    def _width_problem(self, target):
        kappa = target.tau * self._unit()
        if not _in_range(kappa, *self.kappa):
            return f"its relative sharpness kappa = {kappa:.3g} is outside the range {self.kappa}"
        return None

    def config(self):
        return {"kind": self.kind, "kappa": list(self.kappa)}


def _mvn_parts(target):
    dist = target.dist
    if isinstance(dist, MultivariateNormal):
        return dist.loc.double().cpu(), dist.covariance_matrix.double().cpu()
    raise TypeError(
        "DensityFamily designs Gaussian targets: TargetDensity(MultivariateNormal(...)) or "
        f"TargetDensity.normal(mean, covariance); got {target!r}"
    )


class DensityFamily(TargetFamily):
    """Gaussian O2 targets N(mean, D R D): mean a predictive draw, D = diag(f · s), R ~ LKJ.

    Args:
        std: (low, high) range of the standard deviations in units of s (log-uniform).
        concentration: LKJ concentration of the correlation matrix R (1: uniform over
            correlation matrices; larger: closer to the identity).

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> fam = DensityFamily().fit(ToyChain(), pool_size=256)
        >>> fam.sample(1, seed=0)[0].objective_name
        'kl'
    """

    kind = "density"
    target_type = TargetDensity

    def __init__(self, std=(0.2, 1.0), concentration=2.0):
        super().__init__()
        self.std = _check_range("std", std)
        check_positive("concentration", concentration)
        self.concentration = float(concentration)

    def context_dim(self):
        d = self.dim
        return 2 * d + d * (d - 1) // 2

    def sample_one(self, generator):
        d = self.dim
        i = int(torch.randint(0, self.pool.shape[0], (1,), generator=generator))
        f = _log_uniform(*self.std, (d,), generator)
        if d > 1:
            from torch.distributions import LKJCholesky

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                lk = LKJCholesky(d, torch.tensor(self.concentration, dtype=torch.float64)).sample()
            corr = lk @ lk.T
        else:
            corr = torch.ones(1, 1, dtype=torch.float64)
        sd = f * self.scale
        cov = sd[:, None] * corr * sd[None, :]
        return TargetDensity(MultivariateNormal(self.pool[i], covariance_matrix=cov))

    def _centre(self, target):
        return _mvn_parts(target)[0]

    def context(self, target):
        target = self.check_target(target)
        mean, cov = _mvn_parts(target)
        sd = cov.diagonal().sqrt()
        corr = cov / (sd[:, None] * sd[None, :])
        rows, cols = torch.tril_indices(self.dim, self.dim, offset=-1)
        return torch.cat([(mean - self.loc) / self.scale, torch.log(sd / self.scale),
                          corr[rows, cols]])

    def _width_problem(self, target):
        _, cov = _mvn_parts(target)
        f = cov.diagonal().sqrt() / self.scale
        if not _in_range(f, *self.std):
            return (
                f"its standard deviations are {[round(v, 3) for v in f.tolist()]} predictive "
                f"standard deviations, outside the training range {self.std}"
            )
        return None

    def config(self):
        return {"kind": self.kind, "std": list(self.std), "concentration": self.concentration}


_FAMILIES = {"box": BoxFamily, "value": ValueFamily, "density": DensityFamily}


def _family_from_config(cfg):
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    check_choice("target_family kind", kind, tuple(_FAMILIES))
    return _FAMILIES[kind](**cfg)


class _Conditioned(torch.nn.Module):
    """The conditional flow with its context bound: ``forward()`` returns q(· | c)."""

    def __init__(self, net, context):
        super().__init__()
        self.net = net
        self.context = context

    def forward(self):
        return self.net(self.context)


def _log_joint(pyro_model, cm, copies, phi, z):
    """Per-draw log p_t(φ, z) of a target's Pyro model conditioned on draws φ (P, d_φ), z.

    z is (P, latent_dim) for O1 and (P, copies, latent_dim) for O2 (φ then enters as (P, 1, d_φ),
    the particle dimension left of plate ``data``). Returns Tensor (P,).
    """
    p = phi.shape[0]
    data = {"phi": phi if copies == 1 else phi[:, None, :]}
    if cm.latent_dim > 0:
        data["z"] = z
    tr = poutine.trace(poutine.condition(pyro_model, data=data)).get_trace()
    tr.compute_log_prob()
    total = torch.zeros(p, dtype=phi.dtype, device=phi.device)
    for site in tr.nodes.values():
        if site["type"] == "sample" and not site_is_subsample(site):
            total = total + site["log_prob"].reshape(p, -1).sum(-1)
    return total


def _split(cm, copies, u):
    """Flow draws u (..., D) → (φ, log|J|, z): φ on the prior's support, z shaped as the model."""
    to_phi = biject_to(cm.prior.support)
    u_phi = u[..., : cm.d_phi]
    phi = to_phi(u_phi)
    ladj = to_phi.log_abs_det_jacobian(u_phi, phi)
    if ladj.dim() == u.dim():  # elementwise transform: sum over the φ components
        ladj = ladj.sum(-1)
    z = u[..., cm.d_phi:]
    if copies > 1:
        z = z.reshape(*u.shape[:-1], copies, cm.latent_dim)
    return phi, ladj, z


class AmortizedDesigner:
    r"""A conditional zuko flow q_ψ(φ, z | t) trained once for a family of targets (module doc).

    Args:
        model: any design-protocol model (``phi_bounds``, ``latent_dim``, ``property_dist``).
        target_family: ``"box"``, ``"value"``, ``"density"`` or a :class:`TargetFamily` instance
            (e.g. ``BoxFamily(width=(0.3, 1.5))``); fitted to ``model`` here.
        flow: ``"nsf"`` (default) or ``"maf"`` (conditional; ``"cnf"`` is not offered).
        transforms, hidden_features, passes: flow size (as for ``method="flow"``).
        num_pseudo_data: N pseudo-data per O2 target (fixes the flow's dimension).
        pool_size: predictive draws of the family's pool. seed: int (pool and initial weights).

    Raises:
        TypeError, ValueError: bad model, family or option (named in the message).

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> designer = AmortizedDesigner(ToyChain(), "box", hidden_features=(16, 16))
        >>> designer = designer.fit(num_steps=10, targets_per_step=2)
        >>> res = designer(Box([0.5], [1.5]), num_samples=100, num_eval_samples=500)
        >>> res.method, tuple(res.samples.shape)
        ('amortized', (100, 1))
    """

    def __init__(
        self,
        model: Any,
        target_family: str | TargetFamily = "box",
        *,
        flow: str = "nsf",
        transforms: int = 3,
        hidden_features: tuple = (64, 64),
        passes: int | None = 2,
        num_pseudo_data: int = 20,
        pool_size: int = 4096,
        seed: int = 0,
    ):
        check_choice("flow", flow, tuple(f for f in _FLOWS if f != "cnf"))
        transforms, hidden_features, passes = _check_architecture(
            transforms, hidden_features, passes
        )
        num_pseudo_data = check_int("num_pseudo_data", num_pseudo_data)
        pool_size = check_int("pool_size", pool_size, minimum=16)
        seed = check_seed("seed", seed)
        if isinstance(target_family, str):
            check_choice("target_family", target_family, tuple(_FAMILIES))
            target_family = _FAMILIES[target_family]()
        elif not isinstance(target_family, TargetFamily):
            raise TypeError(
                "target_family must be 'box', 'value', 'density' or a TargetFamily, got "
                f"{type(target_family).__name__}"
            )
        self.model = model
        self.cm = validate_model(model)
        self.family = target_family
        self.options = {
            "flow": flow,
            "transforms": transforms,
            "hidden_features": list(hidden_features),
            "passes": passes,
            "num_pseudo_data": num_pseudo_data,
            "pool_size": pool_size,
            "seed": seed,
        }
        if self.family.pool is None:
            self.family.fit(self.cm, pool_size, seed)
        if self.family.dim != self.cm.d_m:
            raise ValueError(
                f"target_family has d_m={self.family.dim} but the model has d_m={self.cm.d_m}"
            )
        density = self.family.target_type is TargetDensity
        self.copies = num_pseudo_data if density else 1
        self.features = self.cm.d_phi + self.cm.latent_dim * self.copies
        import zuko

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 0))
            cls = zuko.flows.NSF if flow == "nsf" else zuko.flows.MAF
            net = cls(self.features, context=self.family.context_dim(), transforms=transforms,
                      hidden_features=hidden_features, passes=passes)
        self.flow = net.to(self.cm.bounds)
        self.history: dict = {"elbo": []}
        self.train_time = 0.0
        self.num_steps_trained = 0

    # ------------------------------------------------------------------ training
    def _contexts(self, targets):
        return torch.stack([self.family.context(t) for t in targets]).to(self.cm.bounds)

    def elbo(self, targets: list, num_particles: int = 4, seed: int = 0) -> torch.Tensor:
        """Per-target ELBO estimates (differentiable in ψ): Tensor (len(targets),).

        ELBO_t = mean over ``num_particles`` flow draws of log p_t(φ, z) − log q_ψ(φ, z | t),
        with log p_t the log-joint of ``t.pyro_model`` (module docstring).

        Example::

            >>> from psppyro._doctest_fixtures import ToyChain
            >>> d = AmortizedDesigner(ToyChain(), hidden_features=(8,), pool_size=64)
            >>> d.elbo(d.family.sample(3, seed=0), num_particles=2).shape
            torch.Size([3])
        """
        targets = [self.family.check_target(t) for t in targets]
        num_particles = check_int("num_particles", num_particles)
        cm, copies = self.cm, self.copies
        ctx = self._contexts(targets)
        u, log_q = self.flow(ctx).rsample_and_log_prob((num_particles,))  # (P, B, D), (P, B)
        phi, ladj, z = _split(cm, copies, u)
        out = []
        for b, t in enumerate(targets):
            pm = t.pyro_model(cm, self.options["num_pseudo_data"], derive_seed(seed, b))
            lp = _log_joint(pm, cm, copies, phi[:, b], z[:, b])
            out.append((lp - log_q[:, b] + ladj[:, b]).mean())
        return torch.stack(out)

    def fit(
        self,
        num_steps: int = 2000,
        targets_per_step: int = 16,
        num_particles: int = 4,
        lr: float = 3e-3,
        final_lr: float = 3e-4,
        seed: int | None = None,
        progress: bool = False,
        num_threads: int | None = 1,
    ) -> AmortizedDesigner:
        """Train ψ by Adam on the expected ELBO over targets from the family (module docstring).

        The learning rate decays geometrically from ``lr`` to ``final_lr``; gradients are clipped
        to norm 10. Calling ``fit`` again continues training. The model's own parameters are
        frozen meanwhile (a torch model is put in eval mode and restored afterwards).

        Args:
            num_steps: Adam steps. targets_per_step: B targets drawn afresh at every step.
            num_particles: flow draws per target and step. lr, final_lr: learning rates.
            seed: int; None uses the designer's seed. progress: tqdm bar.
            num_threads: torch threads while training (default 1, restored afterwards): a step
                works on B × ``num_particles`` rows, so more threads only add synchronization
                (measured 17× slower with 2 threads on a loaded 2-core machine); None keeps
                torch's setting.

        Returns:
            ``self`` (``history["elbo"]``: the mean ELBO per step; ``train_time`` in seconds).

        Raises:
            ValueError, TypeError: a bad option.
        """
        from .infer import _frozen

        num_steps = check_int("num_steps", num_steps)
        targets_per_step = check_int("targets_per_step", targets_per_step)
        num_particles = check_int("num_particles", num_particles)
        check_positive("lr", lr)
        check_positive("final_lr", final_lr)
        seed = self.options["seed"] if seed is None else check_seed("seed", seed)
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads)
        threads_before = torch.get_num_threads()
        start = self.num_steps_trained
        g = make_generator(derive_seed(seed, 7, start))
        opt = torch.optim.Adam(self.flow.parameters(), lr=lr)
        gamma = (final_lr / lr) ** (1.0 / max(num_steps, 1))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_steps, desc="amortized flow", unit="step")
        t0 = time.perf_counter()
        self.flow.train()
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            with _frozen(self.model), torch.random.fork_rng(devices=[]), \
                    pyro.get_param_store().scope():
                torch.manual_seed(derive_seed(seed, 8, start))
                for i in range(num_steps):
                    targets = self.family.sample(targets_per_step, g)
                    elbo = self.elbo(targets, num_particles, derive_seed(seed, 9, start + i))
                    loss = -elbo.mean()
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.flow.parameters(), 10.0)
                    opt.step()
                    sched.step()
                    self.history["elbo"].append(-float(loss.detach()))
                    if bar is not None:
                        bar.update(1)
                        if i % 50 == 0:
                            bar.set_postfix(elbo=f"{self.history['elbo'][-1]:.4g}")
        finally:
            if bar is not None:
                bar.close()
            self.flow.eval()
            torch.set_num_threads(threads_before)
        self.train_time += time.perf_counter() - t0
        self.num_steps_trained += num_steps
        return self

    # ------------------------------------------------------------------ design
    def sample_targets(self, num_targets: int, seed: int = 0) -> list:
        """Targets drawn from the training distribution p(t) (e.g. held-out test targets).

        Example::

            >>> from psppyro._doctest_fixtures import ToyChain
            >>> d = AmortizedDesigner(ToyChain(), hidden_features=(8,), pool_size=64)
            >>> len(d.sample_targets(5, seed=1))
            5
        """
        return self.family.sample(num_targets, seed)

    def out_of_distribution(self, target: Target) -> str | None:
        """Why ``target`` lies outside the training distribution (module docstring), or None."""
        return self.family.out_of_distribution(target)

    def posterior(self, target: Target, num_samples: int = 1000, seed: int = 0,
                  num_threads: int | None = 1):
        """Draws from q_ψ(· | t) scored against t's design model: (φ (S, d_φ), log w (S,)).

        The guide is the per-target flow guide of :mod:`psppyro.design.flow` with the context
        bound, scored by :func:`~psppyro.design.posterior.score_guide` (log w = log p − log q).
        ``num_threads``: torch threads meanwhile (default 1, restored; as for :meth:`fit` — on
        the loaded 2-core machine 500 toy draws took 0.06 s with one thread, 1.4 s with two);
        None keeps torch's setting.
        """
        target = self.family.check_target(target)
        num_samples = check_int("num_samples", num_samples, minimum=2)
        seed = check_seed("seed", seed)
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads)
        before = torch.get_num_threads()
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            return self._posterior(target, num_samples, seed)
        finally:
            torch.set_num_threads(before)

    def _posterior(self, target, num_samples, seed):
        cm = self.cm
        pm = target.pyro_model(cm, self.options["num_pseudo_data"], seed)
        guide = _flow_guide(cm, self.copies, _Conditioned(self.flow, self._contexts([target])[0]))
        with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
            torch.manual_seed(derive_seed(seed, 12))
            return score_guide(pm, guide, num_samples)

    def __call__(
        self,
        target: Target,
        seed: int = 0,
        *,
        num_samples: int = 1000,
        point: str = "mean",
        num_eval_samples: int = 10000,
        num_candidates: int = 64,
    ) -> DesignResult:
        """Design for ``target`` without retraining: ``infer_design(..., method="amortized")``.

        Args:
            target: a target of the family's type. seed: int.
            num_samples: posterior draws from q_ψ(· | t). point, num_eval_samples,
                num_candidates: as for :func:`~psppyro.design.infer_design`.

        Returns:
            :class:`~psppyro.design.DesignResult` (φ*, posterior draws in ``idata``, the
            model-predicted objective at φ*).

        Warns:
            DesignWarning: the target is outside the training distribution, or the usual
            diagnostics (PSIS k̂ > 0.7, an unreachable target).
        """
        from .infer import infer_design

        return infer_design(
            self.model, target, method="amortized", seed=seed, point=point,
            num_eval_samples=num_eval_samples, num_candidates=num_candidates, progress=False,
            designer=self, num_samples=num_samples,
        )

    # ------------------------------------------------------------------ save / load
    def config(self) -> dict:
        """JSON-serializable configuration (options, family, dimensions, training summary)."""
        return {
            "options": dict(self.options),
            "family": self.family.config(),
            "d_phi": self.cm.d_phi,
            "latent_dim": self.cm.latent_dim,
            "d_m": self.cm.d_m,
            "num_steps_trained": self.num_steps_trained,
            "train_time": self.train_time,
        }

    def save(self, path: str | Path) -> None:
        """Write the flow weights, the family's pool, the JSON config and the version to ``path``.

        The model is not saved (save it with its own ``save``); :meth:`load` takes it.

        Example::

            >>> import tempfile, os
            >>> from psppyro._doctest_fixtures import ToyChain
            >>> d = AmortizedDesigner(ToyChain(), hidden_features=(8,), pool_size=64)
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     d.save(os.path.join(tmp, "d.pt"))
            ...     AmortizedDesigner.load(os.path.join(tmp, "d.pt"), ToyChain()).copies
            1
        """
        from psppyro import __version__

        path = Path(path)
        if path.is_dir():
            raise ValueError(f"path {str(path)!r} is a folder; give a file name")
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {str(path)!r}: the folder {str(path.parent)!r} does not exist"
            )
        blob = {
            "config": json.dumps(self.config()),
            "version": __version__,
            "state_dict": {k: v.detach().cpu() for k, v in self.flow.state_dict().items()},
            "pool": self.family.pool.clone(),
            "history_elbo": torch.tensor(self.history["elbo"], dtype=torch.float64),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, model: Any) -> AmortizedDesigner:
        """Load a designer written by :meth:`save` for ``model`` (same d_φ, latent_dim, d_m).

        Raises:
            FileNotFoundError: no file. ValueError: not a designer file, or a model whose
                dimensions differ from the saved designer's.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no designer file at {str(path)!r}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - reported as what the file is not
            raise ValueError(f"{str(path)!r} is not a psppyro designer file ({err})") from err
        if not isinstance(blob, dict) or not {"config", "state_dict", "pool"} <= set(blob):
            raise ValueError(f"{str(path)!r} is not a psppyro designer file (written by save)")
        cfg = json.loads(blob["config"])
        family = _family_from_config(cfg["family"])
        family.set_pool(blob["pool"])
        opts = dict(cfg["options"])
        designer = cls(model, family, flow=opts["flow"], transforms=opts["transforms"],
                       hidden_features=tuple(opts["hidden_features"]), passes=opts["passes"],
                       num_pseudo_data=opts["num_pseudo_data"], pool_size=opts["pool_size"],
                       seed=opts["seed"])
        cm = designer.cm
        saved = (cfg["d_phi"], cfg["latent_dim"], cfg["d_m"])
        if (cm.d_phi, cm.latent_dim, cm.d_m) != tuple(saved):
            raise ValueError(
                f"the designer in {str(path)!r} was trained for (d_phi, latent_dim, d_m) = "
                f"{tuple(saved)}, but the model has {(cm.d_phi, cm.latent_dim, cm.d_m)}"
            )
        designer.flow.load_state_dict(blob["state_dict"])
        designer.flow.eval()
        designer.history["elbo"] = blob.get("history_elbo", torch.zeros(0)).tolist()
        designer.num_steps_trained = int(cfg.get("num_steps_trained", 0))
        designer.train_time = float(cfg.get("train_time", 0.0))
        return designer

    def __repr__(self):
        return (
            f"AmortizedDesigner(family={self.family.config()}, features={self.features}, "
            f"steps={self.num_steps_trained})"
        )


def run_amortized(model, target, seed=0, progress=False, designer=None, num_samples=1000):
    """Draw from a trained :class:`AmortizedDesigner`'s q_ψ(φ, z | t) for ``target``.

    Args:
        model: the design-protocol model (a ``CheckedModel`` from ``infer_design``); its d_φ,
            latent_dim and d_m must equal the designer's.
        target: a target of the designer's family. seed: int. progress: unused (no loop).
        designer: the trained :class:`AmortizedDesigner` (required), or the path of one saved
            with :meth:`AmortizedDesigner.save` (loaded for ``model``; e.g.
            ``psppyro design --method amortized --option designer=designer.pt``).
        num_samples: draws returned.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``samples`` (1, S, d_φ) and
        ``log_weights`` (1, S); ``diagnostics["out_of_distribution"]`` (a reason or None).

    Raises:
        TypeError: ``designer`` is missing or not an AmortizedDesigner; a target of another type.
        ValueError: dimensions differ.

    Warns:
        DesignWarning: the target lies outside the designer's training distribution.

    Example::

        >>> from psppyro.design import Box, infer_design
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> model = ToyChain()
        >>> d = AmortizedDesigner(model, hidden_features=(8,), pool_size=64).fit(num_steps=5)
        >>> res = infer_design(model, Box([0.5], [1.5]), "amortized", designer=d,
        ...                    num_samples=50, num_eval_samples=200)
        >>> res.samples.shape
        torch.Size([50, 1])
    """
    if isinstance(designer, (str, Path)):  # a saved designer (e.g. from the CLI's --option)
        designer = AmortizedDesigner.load(
            designer, model.model if isinstance(model, CheckedModel) else model)
    if not isinstance(designer, AmortizedDesigner):
        raise TypeError(
            "method='amortized' needs designer=AmortizedDesigner(model, family).fit(...), got "
            f"{type(designer).__name__}"
        )
    num_samples = check_int("num_samples", num_samples, minimum=2)
    target = designer.family.check_target(target)
    cm = model if isinstance(model, CheckedModel) else as_checked(model, target)
    dims, trained = (cm.d_phi, cm.latent_dim, cm.d_m), (
        designer.cm.d_phi, designer.cm.latent_dim, designer.cm.d_m)
    if dims != trained:
        raise ValueError(
            f"the designer was trained for (d_phi, latent_dim, d_m) = {trained}, but the model "
            f"has {dims}"
        )
    reason = designer.out_of_distribution(target)
    if reason is not None:
        warnings.warn(
            f"target {target!r} is outside the amortized designer's training distribution: "
            f"{reason}; the design extrapolates the network (check it, e.g. with "
            "method='flow', or train the designer on a wider family)",
            DesignWarning,
            stacklevel=4,
        )
    with torch.no_grad():
        phi, log_w = designer.posterior(target, num_samples, seed)
    return MethodOutput(
        samples=phi[None],
        log_weights=log_w[None],
        diagnostics={"out_of_distribution": reason,
                     "designer_steps": designer.num_steps_trained},
        extras={"designer": designer},
    )


register_method("amortized", run_amortized)
