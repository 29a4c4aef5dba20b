r"""Comparing two design posteriors (e.g. SVI against NUTS) by two-sample distances.

Posterior design has no observed data, so LOO / ``az.compare`` do not apply. Instead
:func:`compare_posteriors` reports, for φ-samples X ~ a and Y ~ b,

- the energy distance (Székely & Rizzo 2013), zero iff the distributions agree,

  .. math:: D^2 = 2E\|X - Y\| - E\|X - X'\| - E\|Y - Y'\|,

  estimated with the unbiased U-statistics (so it may be slightly negative when a = b);
- the Wasserstein-1 distance of every φ-marginal, :math:`W_1 = \int |F_a(t) - F_b(t)|\,dt` (exact
  for empirical distributions, via ``scipy.stats.wasserstein_distance``);
- when a model and a target are given, the in-target fraction of *predicted* properties under each
  posterior: φ ~ posterior, z ~ N(0, I), m ~ p(m | φ, z); the fraction with m ∈ M_d (Box), the mean
  utility (TargetValue) or the mean log p_target(m) (TargetDensity), each with its s.e.

The overlaid pair plot is :func:`psppyro.diagnostics.pair_plot`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._random import derive_seed, make_generator
from .._validation import as_tensor, check_int
from .protocol import sample_latents
from .targets import as_target

__all__ = ["Comparison", "compare_posteriors", "energy_distance", "wasserstein_1d"]


def _samples_of(name, x):
    samples = getattr(x, "samples", x)
    if samples is None:
        raise ValueError(
            f"{name} has no posterior samples (a result of the optimizer "
            f"{getattr(x, 'method', '?')!r}); compare posterior methods (svi, nuts, flow)"
        )
    t = as_tensor(name, samples).detach().double().cpu()
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2 or t.shape[0] < 2:
        raise ValueError(f"{name} must hold samples of shape (S >= 2, d_phi), got {tuple(t.shape)}")
    return t


def energy_distance(x, y):
    """Unbiased energy distance D² between samples x (n, d) and y (m, d).

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g) + 1.0
        >>> float(energy_distance(x, y)) > 0.3
        True
    """
    x, y = _samples_of("x", x), _samples_of("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    dxy = torch.cdist(x, y).mean()
    dxx = torch.cdist(x, x).sum() / (n * (n - 1))
    dyy = torch.cdist(y, y).sum() / (m * (m - 1))
    return 2 * dxy - dxx - dyy


def wasserstein_1d(x, y):
    """Wasserstein-1 distance of two 1-D samples.

    Example::

        >>> float(wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])))
        1.0
    """
    from scipy.stats import wasserstein_distance

    x = as_tensor("x", x).detach().double().cpu().reshape(-1)
    y = as_tensor("y", y).detach().double().cpu().reshape(-1)
    return torch.tensor(wasserstein_distance(x.numpy(), y.numpy()), dtype=torch.float64)


@dataclass
class Comparison:
    """The outcome of :func:`compare_posteriors`.

    Attributes:
        labels: the two names. energy_distance: D² (float). wasserstein: per-φ-marginal W1 (list).
        in_target: dict label → (value, se) or empty. in_target_kind: what ``in_target`` measures.
        phi_names: φ component names. samples: dict label → Tensor (S, d_φ) (for plots).

    Example::

        >>> c = compare_posteriors(torch.zeros(10, 1) + torch.arange(10.0)[:, None],
        ...                        torch.arange(10.0)[:, None] + 0.5)
        >>> round(c.wasserstein[0], 3)
        0.5
    """

    labels: tuple
    energy_distance: float
    wasserstein: list
    in_target: dict = field(default_factory=dict)
    in_target_kind: str = ""
    phi_names: list = field(default_factory=list)
    samples: dict = field(default_factory=dict)

    def table(self):
        """A plain-text table of the distances and in-target fractions."""
        a, b = self.labels
        lines = [
            f"posterior comparison: {a} vs {b}",
            f"  energy distance D^2: {self.energy_distance:.4g}",
        ]
        for n, w in zip(self.phi_names, self.wasserstein):
            lines.append(f"  W1[{n}]: {w:.4g}")
        for lab, (v, s) in self.in_target.items():
            lines.append(f"  {self.in_target_kind} under {lab}: {v:.4f} ± {s:.4f}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _in_target(model, target, phi_samples, num_samples, g):
    idx = torch.randint(0, phi_samples.shape[0], (num_samples,), generator=g)
    bounds = torch.as_tensor(model.phi_bounds)
    phi = phi_samples[idx].to(bounds)
    z = sample_latents(model, num_samples, g, phi)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        m = model.property_dist(phi, z).sample()
    v = target.predictive_score(m).double()
    return float(v.mean()), float(v.std() / math.sqrt(num_samples))


def compare_posteriors(a, b, model=None, target=None, labels=None, num_samples=2000, seed=0):
    """Two-sample comparison of design posteriors (module docstring).

    Args:
        a, b: :class:`~psppyro.design.DesignResult` or Tensors (S, d_φ) of φ samples.
        model, target: optional; both needed for the in-target fractions of predicted m.
        labels: two names (default: the results' methods, or ``("a", "b")``).
        num_samples: predicted-m draws per posterior. seed: int.

    Returns:
        :class:`Comparison`.

    Raises:
        ValueError: sample shapes differ in d_φ or are too small; only one of model/target given.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
        >>> c = compare_posteriors(x, y)
        >>> abs(c.energy_distance) < 0.05
        True
    """
    xa, xb = _samples_of("a", a), _samples_of("b", b)
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"a and b must have the same d_phi, got {xa.shape[1]} and {xb.shape[1]}")
    if (model is None) != (target is None):
        raise ValueError("model and target must be given together (for the in-target fractions)")
    if labels is None:
        labels = (getattr(a, "method", "a"), getattr(b, "method", "b"))
        if labels[0] == labels[1]:
            labels = (f"{labels[0]} (a)", f"{labels[1]} (b)")
    labels = tuple(str(x) for x in labels)
    if len(labels) != 2:
        raise ValueError(f"labels must be two names, got {labels!r}")
    names = getattr(a, "phi_names", None) or [f"phi_{i}" for i in range(xa.shape[1])]
    comp = Comparison(
        labels=labels,
        energy_distance=float(energy_distance(xa, xb)),
        wasserstein=[float(wasserstein_1d(xa[:, i], xb[:, i])) for i in range(xa.shape[1])],
        phi_names=list(names),
        samples={labels[0]: xa, labels[1]: xb},
    )
    if model is not None:
        target = as_target(target)
        num_samples = check_int("num_samples", num_samples, minimum=2)
        comp.in_target_kind = target.predictive_label
        for k, (lab, xs) in enumerate(zip(labels, (xa, xb))):
            g = make_generator(derive_seed(seed, k))
            comp.in_target[lab] = _in_target(model, target, xs, num_samples, g)
    return comp
