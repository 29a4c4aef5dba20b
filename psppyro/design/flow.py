r"""``method="flow"``: a zuko normalizing-flow guide on the design posterior p(φ, z | target).

A zuko flow (``nsf`` default, ``maf``, ``cnf``) over the unconstrained joint vector (φ, z), wrapped
by :class:`pyro.contrib.zuko.ZukoToPyro` as an auxiliary guide site; φ is mapped to its box by
``biject_to`` and enters the model through a ``Delta`` site whose ``log_density`` is minus the
log-Jacobian, so the guide density of φ is exact. (``ZukoToPyro`` has no ``support``; the subclass
here adds it for Pyro's validation.) The guide covers ``target.latent_copies(N)`` z vectors: one
for O1, one per pseudo-datum for O2. See :mod:`psppyro.design.posterior` for the model.
"""

from __future__ import annotations

import pyro
import pyro.distributions as pdist
import torch
from pyro.contrib.zuko import ZukoToPyro
from torch.distributions import biject_to, constraints

from .._validation import check_choice, check_int
from .posterior import check_guide_options, design_model, fit_guide
from .protocol import as_checked
from .registry import register_method
from .targets import as_target

__all__ = ["run_flow"]

_FLOWS = ("nsf", "maf", "cnf")


class _ZukoDistribution(ZukoToPyro):
    """``ZukoToPyro`` with a ``support`` (for Pyro's validation) and ``expand`` (for plates:
    vectorized ELBO particles and importance sampling draw ``batch_shape`` flow samples at once)."""

    support = constraints.real_vector

    def __init__(self, dist, batch_shape=()):
        super().__init__(dist)
        self._expanded = torch.Size(batch_shape)

    @property
    def batch_shape(self):
        return self._expanded

    def expand(self, batch_shape, _instance=None):
        return _ZukoDistribution(self.dist, batch_shape)

    def __call__(self, shape=()):
        return super().__call__(torch.Size(shape) + self._expanded)


def _make_flow(kind, features, transforms, hidden_features, passes):
    import zuko

    hidden = tuple(hidden_features)
    if kind == "nsf":
        return zuko.flows.NSF(
            features, transforms=transforms, hidden_features=hidden, passes=passes
        )
    if kind == "maf":
        return zuko.flows.MAF(
            features, transforms=transforms, hidden_features=hidden, passes=passes
        )
    return zuko.flows.CNF(features, hidden_features=hidden)


def _check_architecture(transforms, hidden_features, passes):
    """(transforms, hidden_features as a tuple of ints, passes) checked (shared with amortized)."""
    transforms = check_int("transforms", transforms)
    if isinstance(hidden_features, (str, bytes)) or not hasattr(hidden_features, "__iter__"):
        raise TypeError(
            f"hidden_features must be a sequence of layer widths, got {hidden_features!r}"
        )
    hidden_features = tuple(
        check_int(f"hidden_features[{i}]", h) for i, h in enumerate(hidden_features)
    )
    if passes is not None:
        passes = check_int("passes", passes)
    return transforms, hidden_features, passes


def _flow_guide(cm, copies, flow):
    d_phi, latent_dim = cm.d_phi, cm.latent_dim
    to_phi = biject_to(cm.prior.support)

    def guide():
        pyro.module("design_flow", flow)
        u = pyro.sample("_flow_latent", _ZukoDistribution(flow()), infer={"is_auxiliary": True})
        u_phi = u[..., :d_phi]
        phi = to_phi(u_phi)
        ladj = to_phi.log_abs_det_jacobian(u_phi, phi)
        pyro.sample("phi", pdist.Delta(phi, log_density=-ladj, event_dim=1))
        if latent_dim == 0:
            return
        if copies > 1:
            # u is (D,) or, under the particle plate left of plate "data", (P, 1, D) -> z (P,
            # N, d_z).
            lead = u.shape[:-1]
            if len(lead) and lead[-1] == 1:
                lead = lead[:-1]
            z = u[..., d_phi:].reshape(lead + (copies, latent_dim))
            with pyro.plate("data", copies):
                pyro.sample("z", pdist.Delta(z, event_dim=1))
        else:
            pyro.sample("z", pdist.Delta(u[..., d_phi:], event_dim=1))

    return guide


def run_flow(
    model,
    target,
    seed=0,
    progress=False,
    flow="nsf",
    num_steps=2000,
    lr=0.005,
    transforms=3,
    hidden_features=(64, 64),
    passes=2,
    num_particles=4,
    num_samples=1000,
    num_pseudo_data=20,
):
    """SVI with a zuko normalizing-flow guide over (φ, z); returns draws, log-weights and the ELBO.

    Args:
        model, target: as for :func:`~psppyro.design.posterior.design_model`.
        seed: int seed. progress: tqdm bar. flow: ``"nsf"`` (neural spline flow, default),
            ``"maf"`` or ``"cnf"``. num_steps, lr: Adam steps and learning rate.
        transforms, hidden_features: flow size (CNF ignores ``transforms``).
        passes: sequential passes of each autoregressive transform's inverse (2 = coupling layers,
            default: sampling — needed at every ELBO step — costs 2 network calls instead of D;
            ``None`` = fully autoregressive, more expressive, D× slower to sample).
        num_particles: ELBO particles. num_samples: guide draws returned.
        num_pseudo_data: N for O2.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``samples`` (1, S, d_φ),
        ``log_weights`` (1, S), ``history["elbo"]`` and the flow in ``extras["flow"]``.

    Raises:
        ValueError: unknown ``flow`` or another bad option.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> out = run_flow(ToyChain(), Box([0.5], [1.5]), num_steps=50, num_samples=20)
        >>> out.samples.shape
        torch.Size([1, 20, 1])
    """
    target = as_target(target)
    check_choice("flow", flow, _FLOWS)
    num_steps, num_particles, num_samples, num_pseudo_data = check_guide_options(
        num_steps, lr, num_particles, num_samples, num_pseudo_data
    )
    transforms, hidden_features, passes = _check_architecture(transforms, hidden_features, passes)
    cm = as_checked(model, target)
    copies = target.latent_copies(num_pseudo_data)
    pyro_model = design_model(cm, target, num_pseudo_data, seed)
    def make_guide():
        net = _make_flow(
            flow, cm.d_phi + cm.latent_dim * copies, transforms, hidden_features, passes
        ).to(cm.bounds)
        return _flow_guide(cm, copies, net), {"flow": net}

    return fit_guide(pyro_model, make_guide, seed, 11, num_steps, lr, num_particles, num_samples,
                     progress, f"flow ({flow})")

register_method("flow", run_flow)
