"""Triad datasets to torch: whole tensors, or minibatches read lazily from the store.

:func:`to_torch` with ``batch_size=None`` loads the requested fields as tensors. With a
``batch_size`` it returns a :class:`TriadLoader`, an iterable (a
``torch.utils.data.IterableDataset``) of minibatch dicts that reads the store a *buffer* at a time,
so memory stays bounded for any dataset size. Shuffling is chunk-aware: each epoch permutes the
storage chunks, fills a buffer of about ``buffer_size`` samples from consecutive (permuted) chunks,
and permutes the samples inside the buffer; the order depends only on ``(seed, epoch)``.

Semi-supervised use: ``labelled`` is a boolean mask over the samples (or ``None`` = all labelled).
Each batch then holds ``"labelled"`` (bool, (B,)), and ``m`` of the unlabelled samples is NaN, so
their labels cannot leak into a loss by accident (use ``batch["m"][batch["labelled"]]``).

Example::

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"phi": (("sample", "phi_dim"), np.zeros((5, 2))),
    ...                  "x": (("sample", "y", "x"), np.ones((5, 3, 3), np.uint8))})
    >>> to_torch(ds, fields=("phi", "x"))["x"].shape
    torch.Size([5, 3, 3])
    >>> [b["x"].shape[0] for b in to_torch(ds, fields=("x",), batch_size=2)]
    [2, 2, 1]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._random import derive_seed
from .._validation import check_int

__all__ = ["TriadLoader", "to_torch"]

LOADER_STREAM = 4
_INTEGER_FIELDS = ("phi_index",)


def _check_fields(ds, fields):
    if isinstance(fields, str):
        fields = (fields,)
    fields = tuple(fields)
    if not fields:
        raise ValueError("fields must name at least one variable, got ()")
    for f in fields:
        if f not in ds.variables or "sample" not in ds[f].dims:
            allowed = sorted(str(v) for v in ds.variables if "sample" in ds[v].dims)
            raise ValueError(
                f"fields: {f!r} is not a per-sample variable of ds; allowed: {allowed}"
            )
    return fields


def _check_mask(ds, labelled):
    n = ds.sizes["sample"]
    if labelled is None:
        return None
    mask = np.asarray(labelled)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ValueError(
            f"labelled must be None or a boolean mask of shape ({n},), got dtype {mask.dtype} "
            f"and shape {mask.shape}"
        )
    return mask


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _read(ds, fields, positions, mask, dtype):
    """Fields at ``positions`` (sorted ascending for efficient reads) as numpy arrays.

    Floating fields are converted to ``dtype`` here, so that batches are later cut with numpy
    (a gather in torch costs far more on a busy machine: it spins up its thread pool).
    """
    np_dtype = _NUMPY_DTYPES.get(dtype)
    out = {}
    for f in fields:
        values = np.asarray(ds[f].isel(sample=positions).values)
        if values.dtype == np.bool_:
            pass
        elif f in _INTEGER_FIELDS:
            values = values.astype(np.int64, copy=False)
        elif np_dtype is not None:
            values = values.astype(np_dtype, copy=False)
        out[f] = values
    if mask is not None or "m" in fields:
        out["labelled"] = np.ones(len(positions), dtype=bool) if mask is None else mask[positions]
        if "m" in out and mask is not None:
            out["m"] = np.where(out["labelled"][:, None], out["m"], np.nan).astype(out["m"].dtype)
    out["index"] = np.asarray(positions, dtype=np.int64)
    return out


def _tensors(arrays, fields, dtype, device):
    out = {}
    for name, values in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(values))
        if name in fields and (t.is_floating_point() or t.dtype == torch.uint8):
            t = t.to(dtype)
        out[name] = t if device is None else t.to(device)
    return out


def _load(ds, fields, positions, mask, dtype, device):
    """Fields at ``positions`` as a dict of tensors (see :func:`_read`)."""
    return _tensors(_read(ds, fields, positions, mask, dtype), fields, dtype, device)


def _blocks(ds, n):
    """Sample ranges following the storage chunks of ``x`` (else 1024): the shuffle unit.

    They depend on the dataset only (not on the fields asked for), so the order is a function of
    ``(seed, epoch)`` alone.
    """
    for f in ("x", "m", "phi"):
        if f not in ds.variables:
            continue
        data = ds[f].data
        chunks = getattr(data, "chunks", None)
        if chunks and isinstance(chunks[0], tuple):
            edges = np.concatenate([[0], np.cumsum(chunks[0])])
            return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return [(a, min(a + 1024, n)) for a in range(0, n, 1024)]


class TriadLoader(torch.utils.data.IterableDataset):
    """Minibatches of a triad dataset read lazily from its store (see the module docstring).

    Args:
        ds: a (possibly split) triad dataset.
        fields: per-sample variables to return, e.g. ``("phi", "x", "m")``.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (chunk-aware, seeded by ``(seed, epoch)``).
        seed: non-negative integer.
        labelled: ``None`` or a boolean mask over samples (semi-supervised use).
        dtype: floating dtype of ``phi``, ``x`` and ``m`` (flags stay bool, ``phi_index`` int64).
        device: device of the returned tensors (default CPU).
        buffer_size: samples read per buffer (default ``max(8 * batch_size, 4096)``).
        drop_last: drop the last incomplete batch.

    Each batch is a dict of the fields plus ``"index"`` (positions in ``ds``) and, when ``m`` is
    requested or a mask is given, ``"labelled"``.

    Example::

        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"x": (("sample", "y", "x"), np.zeros((10, 2, 2), np.uint8))})
        >>> loader = TriadLoader(ds, ("x",), batch_size=4, shuffle=True, seed=0)
        >>> len(loader), sorted(torch.cat([b["index"] for b in loader]).tolist()) == list(range(10))
        (3, True)
    """

    def __init__(
        self,
        ds,
        fields=("phi", "x", "m"),
        batch_size=64,
        shuffle=False,
        seed=0,
        labelled=None,
        dtype=torch.float32,
        device=None,
        buffer_size=None,
        drop_last=False,
    ):
        super().__init__()
        batch_size = check_int("batch_size", batch_size, minimum=1)
        derive_seed(seed)
        self.ds = ds
        self.fields = _check_fields(ds, fields)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.mask = _check_mask(ds, labelled)
        self.dtype = dtype
        self.device = device
        self.buffer_size = max(8 * batch_size, 4096) if buffer_size is None else int(buffer_size)
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size!r}")
        self.drop_last = bool(drop_last)
        self.n = int(ds.sizes["sample"])
        self.epoch = 0

    def __len__(self):
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def set_epoch(self, epoch):
        """Fix the epoch number that seeds the next iteration's order."""
        self.epoch = int(epoch)

    def __iter__(self):
        blocks = _blocks(self.ds, self.n)
        rng = np.random.default_rng(derive_seed(self.seed, LOADER_STREAM, self.epoch))
        if self.shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        self.epoch += 1
        carry = np.zeros(0, dtype=np.int64)
        i = 0
        while i < len(blocks) or len(carry):
            buffer = [carry]
            size = len(carry)
            while i < len(blocks) and size < self.buffer_size:
                a, b = blocks[i]
                buffer.append(np.arange(a, b))
                size += b - a
                i += 1
            # One sorted read per buffer; batches are then cut from memory.
            positions = np.sort(np.concatenate(buffer))
            data = _read(self.ds, self.fields, positions, self.mask, self.dtype)
            order = rng.permutation(len(positions)) if self.shuffle else np.arange(len(positions))
            last = i >= len(blocks)
            take = len(positions) if last else len(positions) // self.batch_size * self.batch_size
            for s in range(0, take, self.batch_size):
                sel = order[s : s + self.batch_size]
                if len(sel) < self.batch_size and self.drop_last:
                    break
                batch = {k: v[sel] for k, v in data.items()}
                yield _tensors(batch, self.fields, self.dtype, self.device)
            carry = positions[order[take:]]
            if last:
                break


def to_torch(
    ds,
    fields=("phi", "x", "m"),
    *,
    batch_size=None,
    shuffle=False,
    seed=0,
    labelled=None,
    dtype=torch.float32,
    device=None,
    buffer_size=None,
    drop_last=False,
):
    """Tensors of a triad dataset, or a lazy minibatch loader when ``batch_size`` is given.

    Args:
        ds: a triad dataset (from :func:`~psppyro.data.open_dataset` or
            :func:`~psppyro.data.split`).
        fields: per-sample variables, default ``("phi", "x", "m")`` (``"m"`` needs a labelled set).
        batch_size: ``None`` loads everything at once; an integer returns a :class:`TriadLoader`.
        shuffle, seed, buffer_size, drop_last: see :class:`TriadLoader`.
        labelled: ``None`` or a boolean mask over samples; unlabelled ``m`` become NaN.
        dtype: floating dtype (``x`` is stored as uint8 and converted).
        device: target device.

    Returns:
        dict of tensors (with ``"index"`` and, when relevant, ``"labelled"``) or a
        :class:`TriadLoader`.

    Raises:
        ValueError: for unknown fields or a malformed mask.

    Example::

        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"m": (("sample", "m_dim"), np.arange(4.0).reshape(2, 2))})
        >>> to_torch(ds, ("m",), labelled=np.array([True, False]))["m"].tolist()
        [[0.0, 1.0], [nan, nan]]
    """
    if batch_size is not None:
        return TriadLoader(
            ds, fields, batch_size, shuffle, seed, labelled, dtype, device, buffer_size, drop_last
        )
    fields = _check_fields(ds, fields)
    mask = _check_mask(ds, labelled)
    return _load(ds, fields, np.arange(ds.sizes["sample"]), mask, dtype, device)
