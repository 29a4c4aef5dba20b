r"""The one place that talks to ArviZ: import, ``InferenceData`` conversion, PSIS k̂, R̂ and ESS.

Design posteriors are stored as ``arviz.InferenceData`` with a ``posterior`` variable ``phi`` of
dims (chain, draw, phi_dim), the φ names as ``phi_dim`` coordinates, per-draw ``sample_stats``
(NUTS: ``diverging``, ``energy``, ``lp``; SVI/flow: ``log_weight``) and attributes naming the
method, seed and target (JSON). Optimizers (SGA) have no posterior: their restart end points live
in a separate group ``optimization`` (dims ``restart``, ``phi_dim``). ``InferenceData.to_netcdf`` /
``arviz.from_netcdf`` round-trip all of it.

PSIS (Vehtari et al. 2024): for importance log-weights log w = log p − log q of guide draws, the
Pareto shape k̂ of the largest weights tells whether the guide can be trusted (k̂ ≤ 0.7) — above
it, importance-sampling estimates (and the guide itself) are unreliable.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

__all__ = ["add_group", "import_arviz", "mcmc_diagnostics", "psis_khat", "to_inference_data"]


def import_arviz():
    """Import arviz without its import-time FutureWarning banner.

    Example::

        >>> hasattr(import_arviz(), "InferenceData")
        True
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _np(v, dtype=None):
    a = np.asarray(torch.as_tensor(v).detach().cpu().numpy())
    if dtype is not None:
        a = a.astype(dtype)
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
    return a


def to_inference_data(samples, names, sample_stats=None, attrs=None):
    """An ``arviz.InferenceData`` with posterior ``phi`` (chain, draw, phi_dim) named by ``names``.

    Args:
        samples: Tensor/array (chains, draws, d_φ) or (draws, d_φ).
        names: d_φ coordinate labels of dim ``phi_dim``.
        sample_stats: optional dict of (chains, draws) or (draws,) arrays.
        attrs: optional dict of attributes (strings/numbers), set on every group.

    Returns:
        arviz.InferenceData.

    Example::

        >>> idata = to_inference_data(torch.zeros(2, 5, 3), ["a", "b", "c"])
        >>> dict(idata.posterior["phi"].sizes)
        {'chain': 2, 'draw': 5, 'phi_dim': 3}
    """
    az = import_arviz()
    arr = _np(samples, np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != len(names):
        raise ValueError(
            f"samples must have shape (chains, draws, {len(names)}) or (draws, {len(names)}), "
            f"got {tuple(arr.shape)}"
        )
    stats = None
    if sample_stats:
        stats = {}
        for k, v in sample_stats.items():
            a = _np(v)
            stats[k] = a[None] if a.ndim == 1 else a
    idata = az.from_dict(
        posterior={"phi": arr},
        sample_stats=stats,
        coords={"phi_dim": list(names)},
        dims={"phi": ["phi_dim"]},
        attrs=attrs or {},
    )
    for group in idata.groups():  # on every group too: what a NetCDF reader sees per group
        getattr(idata, group).attrs.update(attrs or {})
    return idata


def add_group(idata, name, data_vars, coords=None, attrs=None):
    """Add a non-standard group (e.g. ``optimization``) to ``idata`` in place, without warnings.

    Args:
        idata: ``arviz.InferenceData`` (may be empty: ``arviz.InferenceData()``).
        name: group name.
        data_vars: dict name → ``(dims, array)``.
        coords: dict dim → coordinate values. attrs: group attributes.

    Returns:
        ``idata``.

    Example::

        >>> az = import_arviz()
        >>> idata = add_group(az.InferenceData(), "optimization",
        ...                   {"phi": (("restart", "phi_dim"), np.zeros((2, 1)))},
        ...                   coords={"phi_dim": ["a"]})
        >>> dict(idata.optimization["phi"].sizes)
        {'restart': 2, 'phi_dim': 1}
    """
    import xarray as xr

    ds = xr.Dataset(
        {k: (dims, _np(v)) for k, (dims, v) in data_vars.items()},
        coords=coords or {},
        attrs=attrs or {},
    )
    with warnings.catch_warnings():
        # ArviZ warns that the group is not in its schema; a custom group is intended here.
        warnings.simplefilter("ignore", UserWarning)
        idata.add_groups({name: ds})
    return idata


def psis_khat(log_w) -> float:
    """Pareto-smoothed importance-sampling shape k̂ of log-weights (inf if any is not finite).

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> psis_khat(0.1 * torch.randn(2000, generator=g)) < 0.7   # near-uniform weights
        True
    """
    az = import_arviz()
    lw = _np(log_w, np.float64).reshape(-1)
    if not np.isfinite(lw).all():
        return math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, khat = az.psislw(lw - lw.max())
    return float(khat)


def mcmc_diagnostics(idata, var_name="phi"):
    """Split-R̂ (NaN with one chain), bulk and tail ESS per component of ``var_name``.

    Returns:
        dict with lists ``r_hat``, ``ess_bulk``, ``ess_tail``.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> d = mcmc_diagnostics(to_inference_data(torch.randn(2, 200, 1, generator=g), ["a"]))
        >>> d["r_hat"][0] < 1.05
        True
    """
    az = import_arviz()
    post = idata.posterior[var_name]
    n_chain, d = post.sizes["chain"], post.shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r_hat = (
            az.rhat(idata, var_names=[var_name])[var_name].values.tolist()
            if n_chain > 1
            else [math.nan] * d
        )
        ess_bulk = az.ess(idata, var_names=[var_name])[var_name].values.tolist()
        ess_tail = az.ess(idata, var_names=[var_name], method="tail")[var_name].values.tolist()
    return {"r_hat": r_hat, "ess_bulk": ess_bulk, "ess_tail": ess_tail}
