"""Named property maps: the paper set-ups' SP links, usable by name in data generation and design.

A :class:`PropertyMap` turns a batch of binary images ``x`` ``(..., *image)`` into a property vector
``m`` (..., d_m) plus per-component flags (for example whether a direction percolates).

- ``log_permeability``: m = (ln k_xx, ln k_yy), Stokes flow, phase 1 = fluid, non-percolating
  directions floored; flag ``percolates`` (PSP-GEN).
- ``log_permeability_paper``: m = (ln k_xx, ln k_yy) of a slightly permeable solid,
  Darcy–Brinkman–Stokes with solid permeability κ_s = 0.02 h² (h = 1/N, N the image side, in
  (cell length)²; :data:`PAPER_SOLID_PERMEABILITY`); flag ``percolates`` (void-phase percolation)
  kept. The reconstructed PSP-GEN property (``docs/pspgen_reconstruction.md``): a blocked
  direction gets a finite ln k ≈ ln(κ_s / s) (s the solid fraction across the blockage), about
  −9.4 at 36² and −11.6 at 128² (medians at the paper's φ_ref), where the paper's L/R boxes sit,
  instead of the floor.
- ``rixner_o1``: m = (K_11 at phases (1, 50), (C_1111 + C_2222)/2 of plane-strain elasticity at
  E = (1, 50), ν = 0.3) (Rixner & Koutsourelakis, objective O1).
- ``rixner_o2``: m = (K_11, K_22) at phases (1, 50) (Rixner, objective O2).
- Both rixner maps return the *converged* (continuum) values of the pixelated medium
  (``method="extrapolated"`` of :func:`~psppyro.properties.conductivity` and
  :func:`~psppyro.properties.elasticity`): the rixner64 structures are full of corner contacts,
  where a single discretization at refine 1 is 8–19 % off (finite volumes low, Q1 high); the
  extrapolated bracket mean is within 1 % of the converged value
  (``docs/results/property_accuracy.md``). This changed their values (K_11 ≈ +14 % against the
  former finite volumes at refine 1, (C_11 + C_22)/2 ≈ −10 % against the former Q1) and costs
  4× (``rixner_o2``) and 3.2× (``rixner_o1``) the former maps per image (solved in float32).
- ``c11_3d``: m = (C_11,) of a 3-D voxel volume, soft phase 0 E = 2.4 GPa, hard phase 1
  E = 120 GPa, ν = 0.3 (VAE-Regression data).

Example::

    >>> import torch
    >>> pm = property_map("rixner_o2")
    >>> pm.components
    ('K_11', 'K_22')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .conductivity import conductivity
from .elasticity import elasticity
from .permeability import log_permeability

__all__ = ["PAPER_SOLID_PERMEABILITY", "PROPERTY_MAPS", "PropertyMap", "property_map"]

#: Solid permeability of ``log_permeability_paper`` in units of h² (h = 1/N the pixel size):
#: κ_s = 0.02 h² in (cell length)². Never tuned to design results (docs/pspgen_reconstruction.md).
PAPER_SOLID_PERMEABILITY = 0.02


@dataclass(frozen=True)
class PropertyMap:
    """A named structure–property map ``x -> (m, flags)``.

    Attributes:
        name: registry name.
        components: names of the entries of ``m`` (length d_m).
        ndim: spatial dimension of the images it accepts (2 or 3).
        function: callable ``x -> (m, flags)`` with ``m`` of shape (..., d_m) and ``flags`` a
            dict of boolean tensors of shape (..., d_m).
        description: one line for humans and for dataset provenance.

    Example::

        >>> pm = property_map("log_permeability")
        >>> x = torch.ones(2, 12, 12); x[..., :3] = 0.0
        >>> m, flags = pm.evaluate(x)
        >>> m.shape, flags["percolates"].tolist()
        (torch.Size([2, 2]), [[False, True], [False, True]])
    """

    name: str
    components: tuple
    ndim: int
    function: Callable = field(repr=False)
    description: str = ""

    @property
    def dim(self):
        """d_m, the length of the property vector."""
        return len(self.components)

    def evaluate(self, x):
        """Return ``(m, flags)`` for images ``x`` of shape ``(..., *image)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < self.ndim:
            raise ValueError(
                f"x must have at least {self.ndim} dims for property map {self.name!r}, "
                f"got shape {tuple(x.shape)}"
            )
        return self.function(x)

    def __call__(self, x):
        """Return ``m`` only, shape (..., d_m)."""
        return self.evaluate(x)[0]

    def config(self):
        """A JSON-serializable description (enough to rebuild the map with :func:`property_map`)."""
        return {
            "name": self.name,
            "components": list(self.components),
            "description": self.description,
        }


def _log_permeability(x):
    m, perc = log_permeability(x, return_percolation=True)
    return m, {"percolates": perc}


def _log_permeability_paper(x):
    h = 1.0 / x.shape[-1]
    m, perc = log_permeability(
        x, return_percolation=True, solid_permeability=PAPER_SOLID_PERMEABILITY * h * h
    )
    return m, {"percolates": perc}


def _no_flags(m):
    return {"converged": torch.ones(m.shape, dtype=torch.bool, device=m.device)}


def _rixner_o1(x):
    # Converged (continuum) values of the pixelated medium, <= 1 % on rixner64: the mean of the
    # lower and upper schemes at refine 1 and 2, extrapolated at first order (method
    # "extrapolated"; docs/results/property_accuracy.md).
    # float32 solves (CG to 1e-5, ~3e-6 relative) are 2-3x faster on a CPU; returned in float64.
    K = conductivity(x, phases=(1.0, 50.0), method="extrapolated", dtype=torch.float32)
    C = elasticity(x, youngs=(1.0, 50.0), poisson=0.3, plane="strain", method="extrapolated",
                   columns=(0, 1), dtype=torch.float32)
    m = torch.stack([K[..., 0, 0], 0.5 * (C[..., 0, 0] + C[..., 1, 1])], dim=-1).double()
    return m, _no_flags(m)


def _rixner_o2(x):
    K = conductivity(x, phases=(1.0, 50.0), method="extrapolated", dtype=torch.float32)
    m = torch.stack([K[..., 0, 0], K[..., 1, 1]], dim=-1).double()
    return m, _no_flags(m)


def _c11_3d(x):
    # Only the first load case (macroscopic ε_11) is needed for C_11.
    C = elasticity(x, youngs=(2.4, 120.0), poisson=0.3, ndim=3, columns=(0,))
    m = C[..., 0, :]
    return m, _no_flags(m)


PROPERTY_MAPS = {
    pm.name: pm
    for pm in (
        PropertyMap(
            "log_permeability",
            ("ln_k_xx", "ln_k_yy"),
            2,
            _log_permeability,
            "natural log of the Stokes permeability (horizontal, vertical); phase 1 = fluid; "
            "non-percolating directions floored",
        ),
        PropertyMap(
            "log_permeability_paper",
            ("ln_k_xx", "ln_k_yy"),
            2,
            _log_permeability_paper,
            "natural log of the Darcy-Brinkman-Stokes permeability (horizontal, vertical) of a "
            "slightly permeable solid, kappa_s = 0.02 h^2 (h = 1/N, cell units); phase 1 = fluid; "
            "flag percolates = void-phase percolation (reconstructed PSP-GEN property)",
        ),
        PropertyMap(
            "rixner_o1",
            ("kappa_1", "kappa_2"),
            2,
            _rixner_o1,
            "K_11 of conductivity at phases (1, 50) and (C_1111 + C_2222)/2 of plane-strain "
            "elasticity at E = (1, 50), nu = 0.3; converged values (method='extrapolated')",
        ),
        PropertyMap(
            "rixner_o2",
            ("K_11", "K_22"),
            2,
            _rixner_o2,
            "diagonal of the conductivity tensor at phases (1, 50); converged values "
            "(method='extrapolated')",
        ),
        PropertyMap(
            "c11_3d",
            ("C_11",),
            3,
            _c11_3d,
            "C_11 (GPa) of 3-D elasticity, phase 0 soft E = 2.4, phase 1 hard E = 120, nu = 0.3",
        ),
    )
}


def property_map(name):
    """Look up a named :class:`PropertyMap`; a :class:`PropertyMap` passes through unchanged.

    Example::

        >>> property_map("c11_3d").dim
        1
    """
    if isinstance(name, PropertyMap):
        return name
    if not isinstance(name, str) or name not in PROPERTY_MAPS:
        raise ValueError(f"properties must be one of {sorted(PROPERTY_MAPS)}, got {name!r}")
    return PROPERTY_MAPS[name]
