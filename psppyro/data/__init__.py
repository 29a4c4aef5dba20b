"""Triad datasets (φ, x, m): generation on local cores or Dask, resumable xarray-on-Zarr storage.

A *triad* is a process parameter φ, a microstructure x ~ p(x | φ) and its properties m = 𝓜(x).
Every learned model and every reference answer of psppyro is built from such datasets:

- :func:`generate` draws φ (uniform, grid, Sobol or explicit), ``per_phi`` microstructures per φ and
  their properties, and streams them chunk by chunk to a Zarr store that survives a crash at any
  point (:mod:`psppyro.data.store`); the result does not depend on the number of workers or chunks;
- :func:`open_dataset` opens a store lazily after a cheap integrity check (file fingerprints);
  :func:`verify_dataset` (``psppyro verify PATH``) decodes and checks every chunk; :func:`split`
  divides a dataset by φ groups;
  :func:`to_torch` feeds it to torch (whole tensors, or minibatches read lazily from the store);
- :func:`reference_probability` estimates P(m ∈ M_d | φ) per φ value with its binomial standard
  error (the "reference maps" of PSP-GEN);
- :data:`DATASET_PRESETS` / :func:`dataset_preset` name the datasets of the seed papers.

Example::

    >>> import psppyro as pp
    >>> sorted(pp.data.DATASET_PRESETS)[:2]
    ['pspgen-case1-reference', 'pspgen-case1-test']
"""

from .generate import DESIGNS, default_chunk_size, design_phi, generate
from .loaders import TriadLoader, to_torch
from .presets import DATASET_PRESETS, DatasetPreset, dataset_preset
from .reference import reference_probability
from .splits import split
from .store import (
    STORE_FORMAT,
    CorruptStoreError,
    describe_store,
    open_dataset,
    partial_path,
    verify_dataset,
)

__all__ = [
    "DATASET_PRESETS",
    "DESIGNS",
    "STORE_FORMAT",
    "CorruptStoreError",
    "DatasetPreset",
    "TriadLoader",
    "dataset_preset",
    "default_chunk_size",
    "describe_store",
    "design_phi",
    "generate",
    "open_dataset",
    "partial_path",
    "reference_probability",
    "split",
    "to_torch",
    "verify_dataset",
]
