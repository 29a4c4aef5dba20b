"""Diagnostics for design results: ArviZ conversion, posterior comparison tables and plots.

This layer sits above :mod:`psppyro.design`. ``DesignResult.idata`` is already an
``arviz.InferenceData`` (posterior ``phi`` with dims ``(chain, draw, phi_dim)``), so ArviZ's own
tools
(``az.summary``, ``az.plot_trace``, ``az.plot_pair``) apply directly; :func:`to_inference_data`
builds
one from raw samples. The plots here are the ones ArviZ does not make: overlaid pair plots of
several
posteriors (SVI vs NUTS vs flow), reference heat maps of P(m ∈ M_d | φ) with the designs marked (the
PSP-GEN paper's Figure 3), and optimization traces.

Example::

    >>> import torch
    >>> from psppyro.diagnostics import pair_plot
    >>> fig = pair_plot(torch.randn(100, 2), torch.randn(100, 2) + 1.0, labels=["svi", "nuts"])
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['svi', 'nuts']
"""

from ..design.arviz_io import to_inference_data
from .plots import pair_plot, plot_history, plot_microstructures, plot_reference_map
from .robustness_plot import plot_robustness

__all__ = [
    "pair_plot",
    "plot_history",
    "plot_microstructures",
    "plot_reference_map",
    "plot_robustness",
    "to_inference_data",
]
