r"""Reference probabilities P(m ∈ M_d | φ) from a dataset with many microstructures per φ.

For a box target M_d = [low, high] (componentwise, closed) and the ``n_i`` samples of φ value ``i``,

.. math::

    \hat p_i = \frac{1}{n_i} \sum_{r=1}^{n_i} 1[\text{low} \le m_{i,r} \le \text{high}], \qquad
    \widehat{\mathrm{se}}_i = \sqrt{\hat p_i (1 - \hat p_i) / n_i},

the Monte-Carlo (binomial) estimate and its standard error. On a grid dataset such as
``pspgen-case1-reference`` (20 × 20 φ grid × 500 microstructures) this is the "reference map"
against which PSP-GEN compares model-predicted probabilities. Note that ŝe = 0 when p̂ ∈ {0, 1};
the true error is then of order 1/n_i.

Example::

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"m": (("sample", "m_dim"), [[0.0], [2.0], [0.5], [0.7]]),
    ...                  "phi": (("sample", "phi_dim"), [[1.0], [1.0], [2.0], [2.0]]),
    ...                  "phi_index": ("sample", [0, 0, 1, 1])})
    >>> reference_probability(ds, low=[0.0], high=[1.0])["probability"].values.tolist()
    [0.5, 1.0]
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_probability"]


def reference_probability(ds, low, high):
    """Per-φ estimate of P(m ∈ [low, high] | φ) with its binomial standard error.

    Args:
        ds: a labelled triad dataset (``m``, ``phi``, ``phi_index``), typically a grid design.
        low: lower corner of the box, length d_m (use ``-inf`` for an open side).
        high: upper corner, length d_m, ``high >= low``.

    Returns:
        ``xarray.Dataset`` along ``phi_index`` with ``probability``, ``standard_error``, ``count``
        (samples per φ), ``hits``, and the coordinate ``phi`` (phi_index, phi_dim).

    Raises:
        ValueError: if ``ds`` has no ``m`` (unlabelled), ``low``/``high`` have the wrong length,
            are NaN, or ``low > high`` somewhere.

    Example::

        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"m": (("sample", "m_dim"), [[0.0], [2.0]]),
        ...                  "phi": (("sample", "phi_dim"), [[1.0], [1.0]]),
        ...                  "phi_index": ("sample", [0, 0])})
        >>> float(reference_probability(ds, [-1.0], [1.0])["standard_error"][0])
        0.3535533905932738
    """
    import xarray as xr

    if "m" not in ds:
        raise ValueError("ds has no 'm' variable: reference probabilities need a labelled dataset")
    m = np.asarray(ds["m"].values, dtype=np.float64)
    d_m = m.shape[1]
    lo = np.asarray(low, dtype=np.float64).reshape(-1)
    hi = np.asarray(high, dtype=np.float64).reshape(-1)
    for name, v in (("low", lo), ("high", hi)):
        if v.shape != (d_m,):
            raise ValueError(f"{name} must have length d_m={d_m}, got {v.tolist()}")
        if np.isnan(v).any():
            raise ValueError(f"{name} must not contain NaN, got {v.tolist()}")
    if (lo > hi).any():
        raise ValueError(
            f"low must be <= high componentwise, got low={lo.tolist()}, high={hi.tolist()}"
        )
    index = np.asarray(ds["phi_index"].values)
    groups, first, inverse, counts = np.unique(
        index, return_index=True, return_inverse=True, return_counts=True
    )
    inside = np.all((m >= lo) & (m <= hi), axis=-1)
    hits = np.bincount(inverse, weights=inside, minlength=len(groups)).astype(np.int64)
    p = hits / counts
    se = np.sqrt(p * (1.0 - p) / counts)
    phi = np.asarray(ds["phi"].values)
    coords = {"phi_index": groups, "phi": (("phi_index", "phi_dim"), phi[first])}
    if "phi_dim" in ds.coords:
        coords["phi_dim"] = ds["phi_dim"].values
    out = xr.Dataset(
        {
            "probability": ("phi_index", p),
            "standard_error": ("phi_index", se),
            "count": ("phi_index", counts.astype(np.int64)),
            "hits": ("phi_index", hits),
        },
        coords=coords,
        attrs={"low": lo.tolist(), "high": hi.tolist()},
    )
    return out
