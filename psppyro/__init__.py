"""psppyro: inverse design of random materials through the Process–Structure–Property chain.

The package is cut into layers that import downward only
(``docs/architecture.md`` § "Layers and their import rule")::

    process      p(x | φ): spectral densities, Gaussian random fields, Cahn–Hilliard, presets
    properties   p(m | x): permeability (Stokes), conductivity, elasticity
    data         triad datasets (φ, x, m) on xarray/Zarr
    models       learned links as Pyro models
    design       targets, objectives and ``infer_design``
    diagnostics  ArviZ conversion, posterior comparison, plots

Example::

    >>> import psppyro as pp
    >>> proc = pp.process.preset("pspgen36")
    >>> proc.phi_bounds.shape
    torch.Size([2, 2])
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("process", "properties", "data", "models", "design", "diagnostics")


def __getattr__(name):
    # Subpackages are imported lazily so that ``import psppyro`` stays cheap and a
    # user of the process layer does not pay for xarray, zarr or dask.
    if name in _SUBMODULES:
        return import_module(f"psppyro.{name}")
    if name == "infer_design":
        return import_module("psppyro.design").infer_design
    raise AttributeError(f"module 'psppyro' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + ["infer_design"])
