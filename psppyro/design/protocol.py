r"""The design protocol: what a model must offer to be designed, checked once per design call.

A model is any object with

- ``phi_bounds``: Tensor (d_φ, 2) of lower/upper bounds (±inf allowed only with ``phi_prior``),
- ``latent_dim``: int ≥ 0, the size of a standard-normal nuisance latent z,
- ``property_dist(phi, z)``: a ``torch.distributions.Distribution`` with event shape (d_m,) and
  batch shape the broadcast of ``phi.shape[:-1]`` and ``z.shape[:-1]``, differentiable in φ,
- optionally ``phi_prior``: a distribution over φ with event shape (d_φ,) (e.g. Rixner's N(0, I)),
  used instead of the uniform prior on the box, and ``phi_names``: a sequence of d_φ names.

:class:`DesignModel` states this as a ``typing.Protocol``. :func:`validate_model` checks a model
*once* per :func:`~psppyro.design.infer_design` call and returns a :class:`CheckedModel` that every
method uses; its probe calls ``property_dist`` with batched φ of shape (n_φ, 1, d_φ) and z of shape
(1, n_z, latent_dim) and checks that the batch shape is (n_φ, n_z), that the event shape matches the
target and that a gradient reaches φ — so a model that ignores batch shapes or detaches φ is
reported in terms of the user's model instead of failing deep inside autograd. See
``docs/architecture.md`` § "The design protocol" (design talks to models only through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from pyro.distributions import TorchDistribution, Uniform

from .._validation import as_tensor, check_int

__all__ = [
    "CheckedModel",
    "DesignModel",
    "as_checked",
    "check_model",
    "phi_names",
    "phi_prior",
    "sample_latents",
    "validate_model",
]


@runtime_checkable
class DesignModel(Protocol):
    """A model that can be designed: φ bounds, a nuisance latent size and p(m | φ, z).

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> isinstance(ToyChain(), DesignModel)
        True
    """

    phi_bounds: torch.Tensor
    latent_dim: int

    def property_dist(self, phi: torch.Tensor, z: torch.Tensor) -> torch.distributions.Distribution:
        """p(m | φ, z) with event shape (d_m,), batch shape broadcast(φ, z batch shapes)."""
        ...


def check_model(model: Any) -> tuple[torch.Tensor, int]:
    """Check the protocol attributes of ``model`` (no probe call); return ``(bounds, latent_dim)``.

    Args:
        model: object with ``phi_bounds``, ``latent_dim`` and ``property_dist`` (module docstring).

    Returns:
        ``(bounds, latent_dim)`` with ``bounds`` a float Tensor (d_φ, 2).

    Raises:
        TypeError: a protocol attribute is missing or has the wrong type.
        ValueError: bounds are NaN, not (d_φ, 2), ``low >= high``, or infinite without
            ``phi_prior``; ``latent_dim < 0``.

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
    latent_dim = check_int("model.latent_dim", model.latent_dim, minimum=0)
    return bounds, latent_dim


def phi_names(model: Any) -> list[str]:
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
        if len(set(names)) != d:
            raise ValueError(f"model.phi_names must be distinct, got {names!r}")
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


def phi_prior(model: Any) -> TorchDistribution:
    """p(φ): the model's ``phi_prior`` or Uniform on the ``phi_bounds`` box (event shape (d_φ,)).

    Example::

        >>> class M: phi_bounds = torch.tensor([[0.0, 2.0]])
        >>> float(phi_prior(M()).log_prob(torch.tensor([1.0])).exp())
        0.5
    """
    prior = getattr(model, "phi_prior", None)
    bounds = as_tensor("model.phi_bounds", model.phi_bounds)
    if not bounds.is_floating_point():
        bounds = bounds.to(torch.get_default_dtype())
    if prior is not None:
        if not isinstance(prior, torch.distributions.Distribution):
            raise TypeError(
                f"model.phi_prior must be a torch.distributions.Distribution, got "
                f"{type(prior).__name__}"
            )
        if tuple(prior.event_shape) != (bounds.shape[0],):
            raise ValueError(
                f"model.phi_prior must have event shape ({bounds.shape[0]},), got "
                f"{tuple(prior.event_shape)}"
            )
        return prior if isinstance(prior, TorchDistribution) else _AsPyro(prior)
    return Uniform(bounds[:, 0], bounds[:, 1]).to_event(1)


def sample_latents(model: Any, num_samples: int, generator, like: torch.Tensor) -> torch.Tensor:
    """z ~ N(0, I): Tensor (num_samples, latent_dim) with dtype/device of ``like``.

    Example::

        >>> class M: latent_dim = 3
        >>> sample_latents(M(), 4, torch.Generator().manual_seed(0), torch.zeros(1)).shape
        torch.Size([4, 3])
    """
    z = torch.randn(num_samples, model.latent_dim, generator=generator, dtype=torch.float64)
    return z.to(dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class CheckedModel:
    """A design-protocol model after :func:`validate_model`: what every design method uses.

    Attributes:
        model: the user's object (``property_dist`` is called on it).
        bounds: Tensor (d_φ, 2). latent_dim: int. d_phi: int. d_m: event size of p(m | φ, z).
        names: the φ component names. prior: p(φ) (a Pyro distribution, event shape (d_φ,)).
        diag_normal: whether ``property_dist`` returns ``Independent(Normal, 1)`` (closed forms).

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> cm = validate_model(ToyChain())
        >>> (cm.d_phi, cm.latent_dim, cm.d_m, cm.diag_normal)
        (1, 1, 1, True)
    """

    model: Any
    bounds: torch.Tensor
    latent_dim: int
    d_phi: int
    d_m: int
    names: list
    prior: Any
    diag_normal: bool

    def property_dist(self, phi: torch.Tensor, z: torch.Tensor) -> torch.distributions.Distribution:
        """``model.property_dist(phi, z)`` with batch shape broadcast(φ, z batch shapes).

        A model without latent (``latent_dim == 0``) may ignore its empty z; its distribution is
        then expanded over z's batch dimensions, so every caller sees the same shapes.
        """
        dist = self.model.property_dist(phi, z)
        if self.latent_dim == 0:
            shape = torch.broadcast_shapes(phi.shape[:-1], z.shape[:-1])
            if dist.batch_shape != shape:
                dist = dist.expand(shape)
        return dist

    def sample_latents(self, num_samples: int, generator) -> torch.Tensor:
        """z ~ N(0, I) of shape (num_samples, latent_dim) on the bounds' dtype/device."""
        return sample_latents(self.model, num_samples, generator, self.bounds)

    @property
    def has_phi_prior(self) -> bool:
        """Whether the model defines its own ``phi_prior``."""
        return getattr(self.model, "phi_prior", None) is not None


def _probe_sizes(d_phi, latent_dim):
    """Probe batch sizes (n_φ, n_z): ≥ 2, distinct, and different from d_φ and latent_dim, so that
    a model that confuses a batch axis with a component axis cannot pass by coincidence."""
    taken = {d_phi, latent_dim}
    n_phi = next(n for n in range(2, 100) if n not in taken)
    n_z = next(n for n in range(n_phi + 1, 100) if n not in taken)
    return n_phi, n_z


def _probe_phi(bounds, prior, n):
    """``n`` distinct interior φ points, shape (n, 1, d_φ)."""
    frac = torch.linspace(0.3, 0.7, n, dtype=bounds.dtype, device=bounds.device)[:, None]
    if bool(torch.isfinite(bounds).all()):
        lo, hi = bounds[:, 0], bounds[:, 1]
        pts = lo + frac * (hi - lo)
    else:
        try:
            centre = prior.mean.to(bounds)
        except (NotImplementedError, AttributeError):
            centre = torch.zeros(bounds.shape[0], dtype=bounds.dtype, device=bounds.device)
        centre = torch.where(torch.isfinite(centre), centre, torch.zeros_like(centre))
        lo = torch.where(torch.isfinite(bounds[:, 0]), bounds[:, 0], centre - 1.0)
        hi = torch.where(torch.isfinite(bounds[:, 1]), bounds[:, 1], centre + 1.0)
        pts = lo + frac * (hi - lo)
    return pts[:, None, :]


def _is_diag_normal(dist):
    from torch.distributions import Independent, Normal

    return (
        isinstance(dist, Independent)
        and dist.reinterpreted_batch_ndims == 1
        and isinstance(dist.base_dist, Normal)
    )


def validate_model(model: Any, target: Any = None, probe: bool = True) -> CheckedModel:
    """Check ``model`` against the design protocol once, with a batched probe call.

    The probe calls ``model.property_dist(phi, z)`` with φ of shape (n_φ, 1, d_φ) (interior
    points) and z of shape (1, n_z, latent_dim) — n_φ < n_z the smallest sizes ≥ 2 that differ from
    d_φ and latent_dim — and requires a Distribution with batch shape (n_φ, n_z), event shape
    (d_m,) (equal to ``target.dim`` when a target is given) and a log-density through
    which a gradient reaches φ.

    Args:
        model: object with the design protocol (module docstring).
        target: optional design target; its ``dim`` must equal the model's d_m.
        probe: run the probe call (default True); False only checks the attributes.

    Returns:
        :class:`CheckedModel`.

    Raises:
        TypeError: a protocol attribute is missing, or ``property_dist`` does not return a
            Distribution.
        ValueError: bad bounds, a model that does not broadcast batch shapes, whose log-density
            does not depend differentiably on φ, or whose event shape differs from the target's.

    Example::

        >>> from torch.distributions import Independent, Normal
        >>> class NotBatched:      # uses phi[0] as "the first component": wrong with batches
        ...     phi_bounds = torch.tensor([[-1.0, 1.0]]); latent_dim = 1
        ...     def property_dist(self, phi, z):
        ...         return Independent(Normal(phi[0] + z[0], 1.0), 1)
        >>> try:
        ...     validate_model(NotBatched())
        ... except ValueError as err:
        ...     print(str(err)[:60])
        model.property_dist(phi, z) must broadcast the batch shapes
    """
    bounds, latent_dim = check_model(model)
    names = phi_names(model)
    prior = phi_prior(model)
    d_phi = int(bounds.shape[0])
    if not probe:
        d_m = int(target.dim) if target is not None else 0
        return CheckedModel(model, bounds, latent_dim, d_phi, d_m, names, prior, False)
    n_phi, n_z = _probe_sizes(d_phi, latent_dim)
    phi = _probe_phi(bounds, prior, n_phi).detach().clone().requires_grad_(True)
    g = torch.Generator().manual_seed(12345)
    z = torch.randn(1, n_z, latent_dim, generator=g, dtype=torch.float64).to(bounds)
    shapes = f"phi of shape {tuple(phi.shape)} and z of shape {tuple(z.shape)}"
    with torch.enable_grad():
        try:
            dist = model.property_dist(phi, z)
        except Exception as err:  # noqa: BLE001 - re-raised with the protocol's explanation
            raise ValueError(
                f"model.property_dist(phi, z) failed when called with batched inputs ({shapes}): "
                f"{type(err).__name__}: {err}. The design protocol requires phi of shape "
                f"(..., {d_phi}) and z of shape (..., {latent_dim}) with broadcasting batch "
                "dimensions on the left (index components with phi[..., i], not phi[i])"
            ) from err
        if not isinstance(dist, torch.distributions.Distribution):
            raise TypeError(
                "model.property_dist must return a torch.distributions.Distribution, got "
                f"{type(dist).__name__}"
            )
        if len(dist.event_shape) != 1:
            raise ValueError(
                "model.property_dist must return a distribution with event shape (d_m,) (use "
                f".to_event(1) / Independent(..., 1)); got event shape {tuple(dist.event_shape)} "
                f"for {shapes}"
            )
        if latent_dim == 0 and tuple(dist.batch_shape) == (n_phi, 1):
            dist = dist.expand((n_phi, n_z))  # a model without latent may ignore its empty z
        if tuple(dist.batch_shape) != (n_phi, n_z):
            raise ValueError(
                "model.property_dist(phi, z) must broadcast the batch shapes of phi and z: with "
                f"{shapes} its batch shape must be {(n_phi, n_z)}, got "
                f"{tuple(dist.batch_shape)}. Write "
                "the model for phi (..., d_phi) and z (..., latent_dim): index components with "
                "phi[..., i] and keep leading dimensions"
            )
        d_m = int(dist.event_shape[0])
        if target is not None and int(target.dim) != d_m:
            raise ValueError(
                f"target has d_m={target.dim} but model.property_dist has event shape ({d_m},)"
            )
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(54321)
            m = dist.sample()
        try:
            lp = dist.log_prob(m)
        except Exception as err:  # noqa: BLE001
            raise ValueError(
                f"model.property_dist(phi, z).log_prob failed on its own sample ({shapes}): "
                f"{type(err).__name__}: {err}"
            ) from err
        grad = None
        if lp.requires_grad:
            (grad,) = torch.autograd.grad(lp.sum(), phi, allow_unused=True)
        if grad is None or not bool((grad != 0).any()):
            raise ValueError(
                "model.property_dist(phi, z) must be differentiable in phi, but no gradient "
                "reaches phi from its log_prob (is phi detached, converted with .item()/.tolist()/"
                "numpy, or used under torch.no_grad() inside property_dist?). Every design method "
                "differentiates the objective with respect to phi"
            )
        if not bool(torch.isfinite(grad).all()):
            raise ValueError(
                f"the gradient of model.property_dist(phi, z).log_prob with respect to phi is not "
                f"finite at interior phi {phi.detach().reshape(n_phi, -1).tolist()}"
            )
    return CheckedModel(
        model, bounds, latent_dim, d_phi, d_m, names, prior, _is_diag_normal(dist)
    )


def as_checked(model: Any, target: Any = None) -> CheckedModel:
    """``model`` itself if it is a :class:`CheckedModel`, else :func:`validate_model` of it.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> cm = as_checked(ToyChain())
        >>> as_checked(cm) is cm
        True
    """
    if isinstance(model, CheckedModel):
        if target is not None and model.d_m and int(target.dim) != model.d_m:
            raise ValueError(
                f"target has d_m={target.dim} but model.property_dist has event shape "
                f"({model.d_m},)"
            )
        return model
    return validate_model(model, target)
