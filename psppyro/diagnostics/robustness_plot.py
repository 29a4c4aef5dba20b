"""Plot of the robust-design read-out: P(m ∈ M_d) against the manufacturing-tolerance radius.

Each curve is a :class:`~psppyro.design.robustness.RobustnessCurve` (from
:func:`psppyro.design.robustness_curve`): the simulated objective when φ is drawn from the
tolerance ball φ* ± r τ, with ±2 standard-error bands. A flat curve is a robust optimum; a steep
one a sharp optimum that manufacturing scatter will miss.

Example::

    >>> import torch
    >>> from psppyro.design.robustness import RobustnessCurve
    >>> c = RobustnessCurve(torch.tensor([0.0, 1.0]), torch.tensor([0.8, 0.5]),
    ...                     torch.tensor([0.01, 0.02]), torch.zeros(1), torch.ones(1), label="a")
    >>> fig = plot_robustness(c)
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['a']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .plots import _COLORS, _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_robustness"]


def plot_robustness(
    *curves,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    axes=None,
) -> Figure:
    """Draw P(m ∈ M_d) (the curves' objective) against the tolerance radius, ±2 s.e. bands.

    Args:
        *curves: :class:`~psppyro.design.robustness.RobustnessCurve` objects (at least one).
        labels: legend labels (default: each curve's ``label``).
        title: axes title. axes: an existing matplotlib Axes to draw into (its figure is returned).

    Returns:
        ``matplotlib.figure.Figure``.

    Raises:
        ValueError: no curves, or a wrong number of labels.
        TypeError: an argument that is not a RobustnessCurve.
    """
    from ..design.robustness import RobustnessCurve

    if not curves:
        raise ValueError("plot_robustness needs at least one RobustnessCurve")
    for c in curves:
        if not isinstance(c, RobustnessCurve):
            raise TypeError(f"curves must be RobustnessCurve objects, got {type(c).__name__}")
    if labels is not None and len(labels) != len(curves):
        raise ValueError(f"labels must have {len(curves)} entries, got {len(labels)}")
    if axes is None:
        fig = _figure(figsize=(4.6, 3.4))
        ax = fig.subplots()
    else:
        ax, fig = axes, axes.figure
    for k, c in enumerate(curves):
        color = _COLORS[k % len(_COLORS)]
        r = np.asarray(c.radii, dtype=float)
        v = np.asarray(c.values, dtype=float)
        s = np.asarray(c.se, dtype=float)
        lab = labels[k] if labels is not None else (c.label or str(k))
        ax.plot(r, v, "o-", color=color, label=lab, ms=3)
        ax.fill_between(r, v - 2 * s, v + 2 * s, color=color, alpha=0.2, lw=0)
    kind = "φ* ± r·τ, uniform" if curves[0].distribution == "uniform" else "sd r·τ, normal"
    ax.set_xlabel(f"tolerance radius r ({kind})")
    ylab = "P(m ∈ M_d)" if curves[0].objective == "probability" else curves[0].objective
    ax.set_ylabel(ylab + " (simulated)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
