r"""Inverse design: targets, objectives O1/O2, a registry of methods and ``infer_design``.

Any model with the design protocol (``phi_bounds``, ``latent_dim``, ``property_dist(phi, z)``;
:class:`DesignModel`, checked once per call with a batched probe) can be designed with every
registered method (``sga``, ``svi``, ``nuts``, ``flow``, or one added with
:func:`register_method`), evaluated against the true simulator and compared::

    target = Box(low=[-10.0, -7.0], high=[-9.0, -5.0])          # O1, u = 1_{M_d}
    res = infer_design(model, target, method="sga")               # or "svi", "nuts", "flow"
    res.phi_star, res.objective, res.objective_se                 # res.probability for O1
    res.save("r.json")                                            # JSON + r.nc (InferenceData)
    p, se = evaluate(res.phi_star, process, "log_permeability", target, num_samples=1000, seed=1)

Modules: :mod:`.protocol` (``DesignModel``, ``validate_model``), :mod:`.targets` (Box,
TargetValue, TargetDensity: each owns its objective, direction and estimators),
:mod:`.objectives` (Monte Carlo estimates at φ), :mod:`.registry` (``register_method``,
``MethodOutput``), one module per method (:mod:`.sga`, :mod:`.svi`, :mod:`.nuts`, :mod:`.flow`;
shared Pyro model in :mod:`.posterior`), :mod:`.infer` (``infer_design``), :mod:`.results`
(``DesignResult``, ``DesignWarning``), :mod:`.arviz_io` (the ArviZ conversions, PSIS k̂),
:mod:`.compare` (``compare_posteriors``), :mod:`.evaluate` (simulation: ``evaluate``,
``reference_map``, ``design_table``) and :mod:`.paper_targets`.

Example::

    >>> import torch
    >>> from psppyro._doctest_fixtures import ToyChain
    >>> res = infer_design(ToyChain(), Box([0.9], [1.1]), "sga", num_z=1000, epochs=4)
    >>> round(float(res.phi_star[0]), 1)
    1.0
"""

# The built-in methods register themselves on import, in this order: sga, svi, nuts, flow, vbem.
from . import sga, svi, nuts, flow, vbem  # noqa: I001,F401  (registration order matters)
from .amortized import AmortizedDesigner, BoxFamily, DensityFamily, TargetFamily, ValueFamily
from .active_learning import ActiveLearningResult, acquisition_scores, active_learning
from .arviz_io import to_inference_data
from .compare import Comparison, compare_posteriors, energy_distance, wasserstein_1d
from .evaluate import ReferenceMap, design_table, evaluate, reference_map, simulate_properties
from .infer import infer_design
from .objectives import estimate_objective, log_marginal_density
from .paper_targets import PAPER_CASES, PaperDesign, paper_reference, paper_targets
from .protocol import CheckedModel, DesignModel, check_model, validate_model
from .registry import (
    MethodOutput,
    describe_methods,
    get_method,
    method_names,
    method_options,
    register_method,
    unregister_method,
)
from .results import DesignResult, DesignWarning
from .robustness import RobustnessCurve, robustness, robustness_curve
from .targets import Box, Target, TargetDensity, TargetValue
from .tempering import TemperedTarget, effective_sample_size, tempering_schedule

__all__ = [
    "AmortizedDesigner",
    "BoxFamily",
    "DensityFamily",
    "TargetFamily",
    "ValueFamily",
    "ActiveLearningResult",
    "TemperedTarget",
    "acquisition_scores",
    "active_learning",
    "effective_sample_size",
    "tempering_schedule",
    "PAPER_CASES",
    "PaperDesign",
    "paper_reference",
    "paper_targets",
    "Box",
    "CheckedModel",
    "Comparison",
    "DesignModel",
    "DesignResult",
    "DesignWarning",
    "MethodOutput",
    "ReferenceMap",
    "Target",
    "TargetDensity",
    "TargetValue",
    "check_model",
    "compare_posteriors",
    "describe_methods",
    "design_table",
    "energy_distance",
    "estimate_objective",
    "evaluate",
    "get_method",
    "infer_design",
    "log_marginal_density",
    "method_names",
    "method_options",
    "reference_map",
    "RobustnessCurve",
    "robustness",
    "robustness_curve",
    "register_method",
    "simulate_properties",
    "to_inference_data",
    "unregister_method",
    "validate_model",
    "wasserstein_1d",
]
