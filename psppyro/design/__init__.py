r"""Inverse design: targets, objectives O1/O2 and ``infer_design`` (sga | svi | nuts | flow).

Any model with the design protocol (``phi_bounds``, ``latent_dim``, ``property_dist(phi, z)``;
DESIGN §4) can be designed, evaluated against the true simulator and compared::

    target = Box(low=[-10.0, -7.0], high=[-9.0, -5.0])          # O1, u = 1_{M_d}
    res = infer_design(model, target, method="sga")               # or "svi", "nuts", "flow"
    p, se = evaluate(res.phi_star, process, "log_permeability", target, num_samples=1000, seed=1)

Modules: :mod:`.targets` (Box, TargetValue, TargetDensity), :mod:`.objectives` (protocol check and
Monte Carlo estimators), :mod:`.sga`, :mod:`.posterior` (SVI / NUTS / flow), :mod:`.infer`
(``infer_design``, ``DesignResult``), :mod:`.compare` (``compare_posteriors``), :mod:`.evaluate`
(simulation: ``evaluate``, ``reference_map``, ``design_table``).

Example::

    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> class Line:
    ...     phi_bounds = torch.tensor([[-3.0, 3.0]]); latent_dim = 1
    ...     def property_dist(self, phi, z):
    ...         return Independent(Normal(phi + 0.3 * z, 0.3), 1)
    >>> res = infer_design(Line(), Box([0.9], [1.1]), "sga", num_z=1000, epochs=4)
    >>> round(float(res.phi_star[0]), 1)
    1.0
"""

from .compare import Comparison, compare_posteriors, energy_distance, wasserstein_1d
from .evaluate import ReferenceMap, design_table, evaluate, reference_map, simulate_properties
from .infer import METHODS, DesignResult, infer_design, to_inference_data
from .objectives import check_model, estimate_objective, log_marginal_density
from .paper_targets import PAPER_CASES, PaperDesign, paper_reference, paper_targets
from .targets import Box, Target, TargetDensity, TargetValue

__all__ = [
    "METHODS",
    "PAPER_CASES",
    "PaperDesign",
    "paper_reference",
    "paper_targets",
    "Box",
    "Comparison",
    "DesignResult",
    "ReferenceMap",
    "Target",
    "TargetDensity",
    "TargetValue",
    "check_model",
    "compare_posteriors",
    "design_table",
    "energy_distance",
    "estimate_objective",
    "evaluate",
    "infer_design",
    "log_marginal_density",
    "reference_map",
    "simulate_properties",
    "to_inference_data",
    "wasserstein_1d",
]
