r"""``method="svi"``: a low-rank multivariate-Normal guide on the design posterior p(φ, z | target).

``AutoLowRankMultivariateNormal`` (option ``rank``, default Pyro's ≈ √D) + ``Trace_ELBO`` + Adam on
the Pyro model of :func:`~psppyro.design.posterior.design_model`. A Gaussian in the unconstrained
space fits box-shaped posteriors poorly: check the PSIS k̂ that ``infer_design`` reports (and warns
about above 0.7). See :mod:`psppyro.design.posterior` for the model and the scoring of the guide.
"""

from __future__ import annotations

import pyro

from .._validation import check_int
from .posterior import check_guide_options, design_model, fit_guide
from .protocol import as_checked
from .registry import register_method
from .targets import as_target

__all__ = ["run_svi"]


def run_svi(
    model,
    target,
    seed=0,
    progress=False,
    num_steps=2000,
    lr=0.01,
    rank=None,
    num_particles=4,
    num_samples=1000,
    num_pseudo_data=20,
):
    """SVI with a low-rank Gaussian guide; returns guide draws, their log-weights and the ELBO.

    Args:
        model, target: as for :func:`~psppyro.design.posterior.design_model`.
        seed: int seed. progress: tqdm bar. num_steps, lr: Adam steps and learning rate.
        rank: low-rank size (default Pyro's ≈ √D). num_particles: ELBO particles per step.
        num_samples: guide draws returned. num_pseudo_data: N for O2.

    Returns:
        :class:`~psppyro.design.registry.MethodOutput` with ``samples`` (1, S, d_φ),
        ``log_weights`` (1, S), ``history["elbo"]`` and the guide in ``extras["guide"]``.

    Example::

        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> out = run_svi(ToyChain(), Box([0.5], [1.5]), num_steps=100, lr=0.05, num_samples=50)
        >>> out.samples.shape
        torch.Size([1, 50, 1])
    """
    target = as_target(target)
    num_steps, num_particles, num_samples, num_pseudo_data = check_guide_options(
        num_steps, lr, num_particles, num_samples, num_pseudo_data
    )
    if rank is not None:
        rank = check_int("rank", rank)
    pyro_model = design_model(as_checked(model, target), target, num_pseudo_data, seed)
    def make_guide():
        guide = pyro.infer.autoguide.AutoLowRankMultivariateNormal(
            pyro_model, rank=rank, init_loc_fn=pyro.infer.autoguide.init_to_median
        )
        return guide, {"guide": guide}

    return fit_guide(pyro_model, make_guide, seed, 10, num_steps, lr, num_particles, num_samples,
                     progress, "svi")

register_method("svi", run_svi)
