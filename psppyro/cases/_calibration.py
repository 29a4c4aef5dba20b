r"""Calibration of a design model's forward density p(m | φ) against the simulator.

Design trusts the model's probabilities, so the model is checked where design uses it: on a
reference grid of φ values with many simulated microstructures per point (the PSP-GEN paper's
20 × 20 × 500 set). For a box :math:`M_d` and grid point :math:`\varphi_i`,

.. math::

    P_\text{model}(\varphi_i) = \frac{1}{S}\sum_{s=1}^{S} P(m \in M_d \mid \varphi_i, z_s),
    \quad z_s \sim \mathcal N(0, I), \qquad
    P_\text{sim}(\varphi_i) = \frac{1}{n_i}\sum_{r=1}^{n_i} 1[m_{i,r} \in M_d],

and :func:`probability_calibration` reports mean and max :math:`|P_\text{model} - P_\text{sim}|`
over the grid (the issue's goal: mean ≤ 0.05). :func:`interval_coverage` checks the central
predictive intervals of p(m | φ) (marginal over z0, as design sees it) on test triads: a
calibrated 90 % interval covers ≈ 0.90 of them. :func:`oracle_r2` compares the model's
E[m | φ] with the *oracle* — the per-φ sample means of the reference set — both as an R² of the
model's means against the oracle's across grid points and as the triad-level R² of each predictor
on the reference triads (the oracle's is the best any function of φ can do).

**Blocked directions.** A direction whose stored value is at or below
:data:`psppyro.properties.LOG_PERMEABILITY_FLOOR` (or is −inf) carries no flow; here such values
are read as −inf on *both* sides (simulated and model samples), so a model with a percolation
head (samples −inf) and one that regresses onto the floor are judged by the same rule. Means and
R² are then taken over percolating entries only (E[m | φ, percolates]) and the blocking
probabilities are compared separately (``blocking_error``). This follows the blocked-direction
convention of ``docs/architecture.md`` (§ "Design protocol").

Only the design protocol is used (``latent_dim``, ``property_dist(phi, z)``, optional
``latent_prior``), so any design model can be checked.

Example::

    >>> import torch, xarray as xr
    >>> from psppyro._doctest_fixtures import ToyChain
    >>> phi = torch.linspace(0.0, 1.0, 4)[:, None].repeat_interleave(50, 0)
    >>> m = phi + 0.5 * torch.randn(200, 1, generator=torch.Generator().manual_seed(0))
    >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), phi.numpy()),
    ...                  "m": (("sample", "m_dim"), m.numpy()),
    ...                  "phi_index": ("sample", torch.arange(4).repeat_interleave(50).numpy())})
    >>> from psppyro.design import Box
    >>> cal = probability_calibration(ToyChain(slope=0.4, noise=0.3), {"B": Box([0.0], [1.0])},
    ...                               ds, num_samples=2000, seed=0)
    >>> cal["B"]["mean_abs_error"] < 0.15
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from psppyro._random import derive_seed
from psppyro._validation import as_tensor, check_int, check_interval, check_seed

__all__ = [
    "blocked",
    "grid_summary",
    "interval_coverage",
    "oracle_r2",
    "predictive_samples",
    "probability_calibration",
]


def _floor() -> float:
    from psppyro.properties import LOG_PERMEABILITY_FLOOR

    return float(LOG_PERMEABILITY_FLOOR)


def blocked(m) -> torch.Tensor:
    """Boolean tensor: True where a property entry is a blocked direction (≤ floor or −inf).

    Args:
        m: tensor-like (..., d_m) of properties (NaN is refused).

    Returns:
        torch.Tensor: bool, same shape as ``m``.

    Raises:
        ValueError: ``m`` contains NaN.

    Example::

        >>> blocked([[-20.0, -7.0], [float("-inf"), -25.0]]).tolist()
        [[True, False], [True, True]]
    """
    m = as_tensor("m", m).double()
    if torch.isnan(m).any():
        raise ValueError("m must not contain NaN (blocked directions are <= the floor or -inf)")
    return m <= _floor()


def _with_blocked_as_inf(m):
    m = as_tensor("m", m).double()
    return torch.where(blocked(m), torch.full_like(m, -math.inf), m)


def predictive_samples(model, phi, num_samples: int = 1000, seed: int = 0) -> torch.Tensor:
    """Samples of the forward density p(m | φ) = ∫ p(m | φ, z) p(z) dz, blocked entries −inf.

    Args:
        model: a design-protocol model (``latent_dim``, ``property_dist``).
        phi: tensor (n, d_φ).
        num_samples: draws per φ (one z each).
        seed: non-negative int (the draws are reproducible given it).

    Returns:
        torch.Tensor: float64 (num_samples, n, d_m); entries ≤ the floor or −inf are −inf.

    Raises:
        ValueError: a bad ``num_samples`` or ``seed``, ``phi`` not 2-D.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> predictive_samples(ToyChain(), torch.zeros(3, 1), 5).shape
        torch.Size([5, 3, 1])
    """
    num_samples = check_int("num_samples", num_samples)
    seed = check_seed("seed", seed)
    phi = as_tensor("phi", phi)
    if phi.dim() != 2:
        raise ValueError(f"phi must have shape (n, d_phi), got {tuple(phi.shape)}")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 1))
        prior = getattr(model, "latent_prior", None)
        n = phi.shape[0]
        if callable(prior):
            z = prior().sample((num_samples, n))
        else:
            z = torch.randn(num_samples, n, int(model.latent_dim), dtype=phi.dtype)
        d = model.property_dist(phi.unsqueeze(0), z)
        m = d.sample()
    return _with_blocked_as_inf(m)


def _grid(ref_ds):
    """phi (G, d_φ), m (n, d_m) float64 with blocked = −inf, group index (n,) in 0..G-1."""
    if "m" not in ref_ds:
        raise ValueError("ref_ds has no 'm' variable: calibration needs a labelled reference set")
    for var in ("phi", "phi_index"):
        if var not in ref_ds.variables:
            raise ValueError(f"ref_ds must hold {var!r}; it has {list(ref_ds.variables)}")
    m = _with_blocked_as_inf(np.asarray(ref_ds["m"].values, dtype=np.float64))
    index = np.asarray(ref_ds["phi_index"].values)
    _, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    phi = torch.as_tensor(np.asarray(ref_ds["phi"].values, dtype=np.float64)[first])
    return phi, m, torch.as_tensor(inverse)


def grid_summary(ref_ds) -> dict:
    """Per-φ oracle statistics of a reference set: blocking probability and percolating mean.

    Args:
        ref_ds: labelled dataset with ``phi``, ``m``, ``phi_index`` (many samples per φ).

    Returns:
        dict: ``phi`` (G, d_φ), ``count`` (G,), ``p_blocked`` (G, d_m), ``mean`` (G, d_m) the mean
        over percolating entries (NaN where a φ has none), as tensors.

    Raises:
        ValueError: ``ref_ds`` is unlabelled or lacks ``phi`` / ``phi_index``.

    Example::

        >>> import xarray as xr
        >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), [[0.0], [0.0], [1.0]]),
        ...                  "m": (("sample", "m_dim"), [[-7.0], [-20.0], [-6.0]]),
        ...                  "phi_index": ("sample", [0, 0, 1])})
        >>> s = grid_summary(ds)
        >>> s["p_blocked"][:, 0].tolist(), s["mean"][:, 0].tolist()
        ([0.5, 0.0], [-7.0, -6.0])
    """
    phi, m, inv = _grid(ref_ds)
    g = phi.shape[0]
    ok = torch.isfinite(m)
    count = torch.bincount(inv, minlength=g).double()
    n_ok = torch.zeros(g, m.shape[1], dtype=torch.float64).index_add_(0, inv, ok.double())
    total = torch.zeros_like(n_ok).index_add_(0, inv, torch.where(ok, m, 0.0))
    mean = torch.where(n_ok > 0, total / n_ok.clamp_min(1), torch.full_like(total, math.nan))
    return {"phi": phi, "count": count, "p_blocked": 1 - n_ok / count[:, None], "mean": mean}


def probability_calibration(model, targets: dict, ref_ds, num_samples: int = 2000,
                            seed: int = 0) -> dict:
    """|P_model(m ∈ M_d | φ) − P_sim(m ∈ M_d | φ)| over the grid points of a reference set.

    Args:
        model: a design-protocol model.
        targets: dict name → :class:`~psppyro.design.Box`.
        ref_ds: labelled reference dataset (``phi``, ``m``, ``phi_index``; e.g. the
            ``pspgen-paper-case1-reference`` preset).
        num_samples: z draws per grid point for P_model (closed-form box probability per draw).
        seed: non-negative int.

    Returns:
        dict name → dict with ``mean_abs_error``, ``max_abs_error`` (floats), and lists ``phi``
        (G × d_φ), ``p_model``, ``p_sim``, ``se_sim`` per grid point.

    Raises:
        ValueError: empty ``targets``, a bad ``num_samples``/``seed``, an unlabelled ``ref_ds``.

    Example::

        >>> import xarray as xr
        >>> from psppyro.design import Box
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), [[0.0]] * 4),
        ...                  "m": (("sample", "m_dim"), [[0.1], [0.5], [2.0], [-1.0]]),
        ...                  "phi_index": ("sample", [0] * 4)})
        >>> out = probability_calibration(ToyChain(), {"B": Box([0.0], [1.0])}, ds, 500)
        >>> out["B"]["p_sim"]
        [0.5]
    """
    from psppyro.design import estimate_objective

    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"targets must be a non-empty dict name -> Box, got {targets!r}")
    num_samples = check_int("num_samples", num_samples)
    seed = check_seed("seed", seed)
    phi, m, inv = _grid(ref_ds)
    g = phi.shape[0]
    count = torch.bincount(inv, minlength=g).double()
    out = {}
    for k, (name, box) in enumerate(targets.items()):
        inside = box.contains(m).double()
        p_sim = torch.zeros(g, dtype=torch.float64).index_add_(0, inv, inside) / count
        se_sim = (p_sim * (1 - p_sim) / count).sqrt()
        p_model, _ = estimate_objective(
            model, box, phi.to(torch.get_default_dtype()), num_samples,
            seed=derive_seed(seed, 2, k),
        )
        err = (p_model.double() - p_sim).abs()
        out[name] = {
            "mean_abs_error": float(err.mean()),
            "max_abs_error": float(err.max()),
            "phi": phi.tolist(),
            "p_model": p_model.double().tolist(),
            "p_sim": p_sim.tolist(),
            "se_sim": se_sim.tolist(),
        }
    return out


def interval_coverage(model, phi, m, level: float = 0.9, num_samples: int = 1000,
                      seed: int = 0) -> list[float]:
    """Fraction of observed m inside the central ``level`` predictive interval of p(m | φ).

    Per property component, the interval runs from the (1 − level)/2 to the (1 + level)/2
    sample quantile of :func:`predictive_samples` (order statistics, so a blocked mass at −inf
    gives a lower end of −inf); an observed blocked entry (−inf) is inside when the lower end is.

    Args:
        model: a design-protocol model.
        phi: (n, d_φ) test process parameters; m: (n, d_m) their simulated properties.
        level: nominal coverage in (0, 1).
        num_samples: predictive draws per φ. seed: non-negative int.

    Returns:
        list[float]: coverage per component (ideal: ``level``).

    Raises:
        ValueError: mismatched shapes, a level outside (0, 1), bad sizes.

    Example::

        >>> from psppyro._doctest_fixtures import ToyChain
        >>> phi = torch.zeros(400, 1)
        >>> m = ToyChain().property_dist(phi, torch.randn(400, 1)).sample()
        >>> 0.8 < interval_coverage(ToyChain(), phi, m, 0.9, 1000)[0] < 1.0
        True
    """
    check_interval("level", level, 0.0, 1.0)
    phi = as_tensor("phi", phi)
    m = _with_blocked_as_inf(m)
    if m.dim() != 2 or m.shape[0] != phi.shape[0]:
        raise ValueError(
            f"m must have shape (n, d_m) with n = len(phi) = {phi.shape[0]}, got {tuple(m.shape)}"
        )
    s = predictive_samples(model, phi, num_samples, seed)
    lo = torch.quantile(s, (1 - level) / 2, dim=0, interpolation="lower")
    hi = torch.quantile(s, (1 + level) / 2, dim=0, interpolation="higher")
    inside = (m >= lo) & (m <= hi)
    return inside.double().mean(0).tolist()


def _r2(pred, obs):
    ok = torch.isfinite(pred) & torch.isfinite(obs)
    if ok.sum() < 2:
        return math.nan
    p, o = pred[ok], obs[ok]
    den = ((o - o.mean()) ** 2).sum()
    return float(1 - ((p - o) ** 2).sum() / den) if den > 0 else math.nan


def oracle_r2(model, ref_ds, num_samples: int = 1000, seed: int = 0) -> dict:
    """The model's E[m | φ] against the oracle (per-φ means of the reference set).

    Means are over percolating entries (blocked ones are −inf, see the module docstring).

    Args:
        model: a design-protocol model. ref_ds: labelled reference dataset.
        num_samples: predictive draws per grid point. seed: non-negative int.

    Returns:
        dict of per-component lists: ``r2_mean_vs_oracle`` (1 − Σ(μ_model − μ_oracle)² /
        Σ(μ_oracle − mean)² over grid points), ``r2_triads_model`` and ``r2_triads_oracle`` (R² of
        each predictor on the reference triads' percolating entries), ``blocking_error_mean`` and
        ``blocking_error_max`` (|P_model(blocked) − P_sim(blocked)| over the grid).

    Raises:
        ValueError: unlabelled ``ref_ds``, bad sizes or seed.

    Example::

        >>> import xarray as xr
        >>> from psppyro._doctest_fixtures import ToyChain
        >>> phi = torch.linspace(0, 1, 5)[:, None].repeat_interleave(40, 0)
        >>> m = phi + 0.5 * torch.randn(200, 1, generator=torch.Generator().manual_seed(1))
        >>> idx = torch.arange(5).repeat_interleave(40).numpy()
        >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), phi.numpy()),
        ...                  "m": (("sample", "m_dim"), m.numpy()), "phi_index": ("sample", idx)})
        >>> oracle_r2(ToyChain(slope=0.4, noise=0.3), ds, 2000)["r2_mean_vs_oracle"][0] > 0.8
        True
    """
    summary = grid_summary(ref_ds)
    phi, m, inv = _grid(ref_ds)
    s = predictive_samples(model, phi, num_samples, seed)  # (S, G, d_m)
    ok = torch.isfinite(s)
    n_ok = ok.double().sum(0)
    mu = torch.where(n_ok > 0, torch.where(ok, s, 0.0).sum(0) / n_ok.clamp_min(1),
                     torch.full_like(n_ok, math.nan))
    pb_model = 1 - n_ok / s.shape[0]
    d_m = m.shape[1]
    out = {k: [] for k in ("r2_mean_vs_oracle", "r2_triads_model", "r2_triads_oracle",
                           "blocking_error_mean", "blocking_error_max")}
    for j in range(d_m):
        out["r2_mean_vs_oracle"].append(_r2(mu[:, j], summary["mean"][:, j]))
        out["r2_triads_model"].append(_r2(mu[inv, j], m[:, j]))
        out["r2_triads_oracle"].append(_r2(summary["mean"][inv, j], m[:, j]))
        err = (pb_model[:, j] - summary["p_blocked"][:, j]).abs()
        out["blocking_error_mean"].append(float(err.mean()))
        out["blocking_error_max"].append(float(err.max()))
    return out
