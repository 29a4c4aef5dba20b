"""The structure–property link p(m | x): effective properties of two-phase periodic media.

Every solver is batched over leading dimensions and has two independent discretizations that are
checked against each other and against exact solutions
(``docs/architecture.md`` § "Verification and errors").

Example::

    >>> import torch, psppyro as pp
    >>> x = torch.ones(8, 8); x[:, :2] = 0.0          # a vertical channel of width 6/8
    >>> k = pp.properties.permeability(x)
    >>> k.shape
    torch.Size([2, 2])
"""

from .conductivity import conductivity, corner_exponent, hashin_shtrikman_bounds, wiener_bounds
from .elasticity import elasticity, isotropic_stiffness, lame
from .maps import PROPERTY_MAPS, PropertyMap, property_map
from .permeability import (
    LOG_PERMEABILITY_FLOOR,
    extrapolate_permeability,
    log_permeability,
    percolates,
    permeability,
)

__all__ = [
    "LOG_PERMEABILITY_FLOOR",
    "PROPERTY_MAPS",
    "PropertyMap",
    "conductivity",
    "corner_exponent",
    "elasticity",
    "extrapolate_permeability",
    "hashin_shtrikman_bounds",
    "isotropic_stiffness",
    "lame",
    "log_permeability",
    "percolates",
    "permeability",
    "property_map",
    "wiener_bounds",
]
