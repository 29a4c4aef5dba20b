"""Plots for design results: overlaid pair plots, reference heat maps, ELBO / SGA traces.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot`` (no global state, no
display needed; save it with ``fig.savefig(path)``).

Example::

    >>> import torch
    >>> fig = pair_plot(torch.randn(100, 2), torch.randn(100, 2) + 1, labels=["a", "b"])
    >>> len(fig.axes)
    4
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..design import DesignResult, ReferenceMap

__all__ = ["pair_plot", "plot_history", "plot_microstructures", "plot_reference_map"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _figure(**kw):
    from matplotlib.figure import Figure

    return Figure(**kw)


def _as_samples(x):
    s = getattr(x, "samples", x)
    s = np.asarray(torch.as_tensor(s).detach().cpu().double())
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"samples must have shape (S, d_phi), got {s.shape}")
    return s


def pair_plot(
    *posteriors: torch.Tensor | DesignResult,
    labels: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    bounds: torch.Tensor | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> Figure:
    """Overlaid pair plot of φ samples: histograms on the diagonal, scatter below it.

    Args:
        *posteriors: :class:`~psppyro.design.DesignResult` objects or Tensors (S, d_φ), same d_φ.
        labels: legend labels (default: the results' methods or ``"0", "1", ...``).
        names: φ component names (default: the first result's ``phi_names``).
        bounds: optional Tensor (d_φ, 2) for the axis limits.
        max_points: scatter at most this many points per posterior (random subset, ``seed``).

    Returns:
        ``matplotlib.figure.Figure`` with d_φ × d_φ axes.

    Raises:
        ValueError: no posteriors, or differing d_φ.

    Example::

        >>> fig = pair_plot(torch.randn(50, 3))
        >>> len(fig.axes)
        9
    """
    if not posteriors:
        raise ValueError("pair_plot needs at least one posterior")
    arrs = [_as_samples(p) for p in posteriors]
    d = arrs[0].shape[1]
    if any(a.shape[1] != d for a in arrs):
        raise ValueError(
            f"all posteriors must have the same d_phi, got {[a.shape[1] for a in arrs]}"
        )
    if labels is None:
        labels = [str(getattr(p, "method", i)) for i, p in enumerate(posteriors)]
    if names is None:
        names = getattr(posteriors[0], "phi_names", None) or [f"phi_{i}" for i in range(d)]
    rng = np.random.default_rng(seed)
    fig = _figure(figsize=(2.6 * d + 0.6, 2.6 * d))
    axes = np.asarray(fig.subplots(d, d, squeeze=False))
    for k, (a, lab) in enumerate(zip(arrs, labels)):
        color = _COLORS[k % len(_COLORS)]
        sub = (
            a if a.shape[0] <= max_points else a[rng.choice(a.shape[0], max_points, replace=False)]
        )
        for i in range(d):
            for j in range(d):
                ax = axes[i, j]
                if i == j:
                    ax.hist(a[:, i], bins=30, density=True, histtype="step", color=color, label=lab)
                elif i > j:
                    ax.scatter(sub[:, j], sub[:, i], s=3, alpha=0.3, color=color)
                else:
                    ax.set_visible(False)
    for i in range(d):
        axes[d - 1, i].set_xlabel(names[i])
        if i > 0:
            axes[i, 0].set_ylabel(names[i])
        if bounds is not None:
            b = np.asarray(torch.as_tensor(bounds).double())
            for r in range(d):
                if np.isfinite(b[i]).all():
                    axes[r, i].set_xlim(b[i])
                    if r != i and np.isfinite(b[r]).all():
                        axes[r, i].set_ylim(b[r])
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reference_map(
    ref: ReferenceMap,
    designs: Mapping[str, torch.Tensor | DesignResult] | None = None,
    samples: Mapping[str, torch.Tensor | DesignResult] | None = None,
    title: str | None = None,
    log: bool = False,
) -> Figure:
    """Heat map of a :class:`~psppyro.design.ReferenceMap` with designs marked (paper Fig. 3 style).

    Args:
        ref: a 1-D or 2-D ``ReferenceMap`` (from :func:`psppyro.design.reference_map`).
        designs: optional dict label → φ* (Tensor (d_φ,)) or ``DesignResult``; each is marked.
        samples: optional dict label → posterior samples (S, d_φ) or ``DesignResult``, scattered.
        title: axes title (default: the target). log: colour by log10 of the value.

    Returns:
        ``matplotlib.figure.Figure``.

    Raises:
        ValueError: a reference map of more than 2 dimensions.

    Example::

        >>> from psppyro.design import Box, ReferenceMap
        >>> ref = ReferenceMap([torch.linspace(0, 1, 3), torch.linspace(0, 2, 4)], torch.rand(3, 4),
        ...                    torch.zeros(3, 4), Box([0.0], [1.0]), 10, ["a", "b"])
        >>> fig = plot_reference_map(ref, designs={"sga": torch.tensor([0.5, 1.0])})
        >>> len(fig.axes)    # map + colour bar
        2
    """
    d = len(ref.axes)
    if d not in (1, 2):
        raise ValueError(f"plot_reference_map draws 1-D or 2-D maps, got d_phi={d}")
    designs = designs or {}
    samples = samples or {}
    fig = _figure(figsize=(6.0, 4.6))
    ax = fig.subplots()
    vals = np.asarray(ref.values.detach().cpu().double())
    label = {"probability": "P(m in M_d | phi)", "expected_utility": "E[u | phi]", "kl": "KL"}.get(
        ref.objective, ref.objective
    )
    if log:
        vals = np.log10(np.maximum(vals, 1e-12))
        label = f"log10 {label}"
    names = ref.phi_names or [f"phi_{i}" for i in range(d)]
    if d == 2:
        x = np.asarray(ref.axes[0].double())
        y = np.asarray(ref.axes[1].double())
        mesh = ax.pcolormesh(x, y, vals.T, shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label=label)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    else:
        x = np.asarray(ref.axes[0].double())
        se = np.asarray(ref.se.detach().cpu().double())
        ax.errorbar(x, vals, yerr=None if log else 2 * se, fmt="-o", ms=3, color="k")
        ax.set_xlabel(names[0])
        ax.set_ylabel(label)
    markers = ("*", "X", "P", "D", "^", "s")
    for k, s in enumerate(samples.values()):
        a = _as_samples(s)
        if d == 2:
            ax.scatter(a[:, 0], a[:, 1], s=2, alpha=0.25, color=_COLORS[k % len(_COLORS)])
    for k, (lab, phi) in enumerate(designs.items()):
        p = np.asarray(torch.as_tensor(getattr(phi, "phi_star", phi)).detach().cpu().double())
        color = _COLORS[k % len(_COLORS)]
        if d == 2:
            ax.scatter(
                [p[0]],
                [p[1]],
                marker=markers[k % len(markers)],
                s=160,
                color=color,
                edgecolor="white",
                linewidths=1.0,
                label=lab,
                zorder=5,
            )
        else:
            ax.axvline(p[0], color=color, ls="--", label=lab)
    if designs:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(title if title is not None else repr(ref.target), fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(*results: DesignResult, labels: Sequence[str] | None = None) -> Figure:
    """Optimization traces: the ELBO (SVI / flow) or the per-restart SGA objective per epoch.

    Args:
        *results: :class:`~psppyro.design.DesignResult` objects (NUTS results have no trace).
        labels: legend labels (default: the methods).

    Returns:
        ``matplotlib.figure.Figure`` with one axes per result.

    Example::

        >>> from types import SimpleNamespace
        >>> r = SimpleNamespace(method="svi", history={"elbo": [-3.0, -2.0, -1.5]})
        >>> len(plot_history(r).axes)
        1
    """
    if not results:
        raise ValueError("plot_history needs at least one result")
    labels = labels or [r.method for r in results]
    fig = _figure(figsize=(5.0 * len(results), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(results), squeeze=False)[0])
    for ax, r, lab in zip(axes, results, labels):
        h = getattr(r, "history", {}) or {}
        if "elbo" in h:
            elbo = np.asarray(h["elbo"], dtype=float)
            ax.plot(elbo, lw=0.6, alpha=0.5, label="ELBO")
            w = max(1, len(elbo) // 50)
            if len(elbo) >= w:
                smooth = np.convolve(elbo, np.ones(w) / w, mode="valid")
                ax.plot(np.arange(w - 1, len(elbo)), smooth, lw=1.5, label=f"mean of {w}")
            ax.set_xlabel("step")
            ax.set_ylabel("ELBO")
        elif "objective" in h:
            obj = np.asarray(h["objective"], dtype=float)
            for k in range(obj.shape[1]):
                ax.plot(obj[:, k], marker="o", ms=3, label=f"restart {k}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("log objective (full sample)")
        else:
            ax.text(0.5, 0.5, "no trace", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(lab)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_microstructures(
    x: torch.Tensor,
    title: str | None = None,
    ncols: int = 4,
    titles: Sequence[str] | None = None,
) -> Figure:
    """A gallery of 2-D binary microstructures (e.g. samples at a design φ*).

    Args:
        x: Tensor (n, H, W) (or (H, W)); phase 1 is drawn white, phase 0 black.
        title: figure title. ncols: images per row. titles: optional per-image titles.

    Returns:
        ``matplotlib.figure.Figure`` with n image axes.

    Example::

        >>> fig = plot_microstructures(torch.rand(6, 8, 8) > 0.5, ncols=3)
        >>> len(fig.axes)
        6
    """
    x = torch.as_tensor(x).detach().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"x must have shape (n, H, W) or (H, W), got {tuple(x.shape)}")
    n = x.shape[0]
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    fig = _figure(figsize=(2.0 * ncols, 2.0 * nrows + (0.4 if title else 0.0)))
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for k, ax in enumerate(axes):
        if k >= n:
            ax.remove()
            continue
        ax.imshow(np.asarray(x[k].double()), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
