"""Reproducible train/validation/test splits of a triad dataset, by φ groups.

The ``per_phi`` microstructures of one φ value share its ``phi_index``. Splitting sample by sample
would put microstructures of the same φ in training and test data, so that a test would measure
memory of φ rather than generalisation over φ. :func:`split` therefore permutes the *φ groups*
(seeded by ``derive_seed(seed, 3)``) and cuts that permutation at the cumulative fractions
(rounded to whole groups): the same φ never sits in two parts.

Example::

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"phi_index": ("sample", np.repeat(np.arange(10), 2))})
    >>> train, test = split(ds, (0.8, 0.2), seed=0)
    >>> train.sizes["sample"], test.sizes["sample"]
    (16, 4)
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .._random import derive_seed

__all__ = ["split"]

SPLIT_STREAM = 3


def split(ds, fractions, seed):
    """Split ``ds`` into parts of the given fractions of its φ groups, reproducibly.

    Args:
        ds: an ``xarray.Dataset`` with a ``phi_index`` variable along ``sample``.
        fractions: positive numbers summing to 1, e.g. ``(0.8, 0.1, 0.1)``.
        seed: non-negative integer; the same seed gives the same split.

    Returns:
        tuple of ``xarray.Dataset`` (lazy selections of ``ds``, samples in their original order),
        one per fraction; their ``phi_index`` sets are disjoint and cover ``ds``.

    Raises:
        ValueError: if ``fractions`` are not positive, do not sum to 1, or ``ds`` lacks
            ``phi_index``.

    Example::

        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"phi_index": ("sample", np.arange(5))})
        >>> [p.sizes["sample"] for p in split(ds, [0.6, 0.4], seed=1)]
        [3, 2]
    """
    if "phi_index" not in ds:
        raise ValueError("ds must have a 'phi_index' variable (a psppyro triad dataset)")
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError) as err:
        raise ValueError(f"fractions must be a sequence of numbers, got {fractions!r}") from err
    if not fr or any(not isinstance(f, Real) or not math.isfinite(f) or f <= 0 for f in fr):
        raise ValueError(f"fractions must be positive finite numbers, got {fractions!r}")
    if abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fr)!r})")
    index = np.asarray(ds["phi_index"].values)
    groups = np.unique(index)
    order = np.random.default_rng(derive_seed(seed, SPLIT_STREAM)).permutation(len(groups))
    cuts = np.rint(np.cumsum(fr) * len(groups)).astype(int)
    cuts[-1] = len(groups)
    parts, start = [], 0
    for j, stop in enumerate(cuts):
        chosen = groups[order[start:stop]]
        samples = np.flatnonzero(np.isin(index, chosen))
        part = ds.isel(sample=samples)
        part.attrs = {**ds.attrs, "split_fractions": list(fr), "split_part": j, "split_seed": seed}
        parts.append(part)
        start = stop
    return tuple(parts)
