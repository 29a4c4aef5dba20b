"""Named triad datasets of the seed papers, with a ``scale`` factor for quick runs.

================================  ===============  ======================  ========  ===============
preset                            process          properties              design    φ × per φ
================================  ===============  ======================  ========  ===============
``pspgen-case1-train``            pspgen36         log_permeability        uniform   2500 × 4
``pspgen-case1-test``             pspgen36         log_permeability        uniform   500 × 4
``pspgen-case1-reference``        pspgen36         log_permeability        grid      (20 × 20) × 500
``pspgen-case3-train``            pspgen36         log_permeability        uniform   2500 × 1
``pspgen-case4-train``            pspgen128        log_permeability        uniform   2500 × 4
``pspgen-case4-test``             pspgen128        log_permeability        uniform   500 × 4
``pspgen-case4-reference``        pspgen128        log_permeability        grid      (20 × 20) × 500
``pspgen-case5-train``            pspgen10d        log_permeability        uniform   10 000 × 1
``pspgen-case5-test``             pspgen10d        log_permeability        uniform   500 × 4
``pspgen-paper-case1-train``      pspgen36-paper   log_permeability_paper  uniform   2500 × 4
``pspgen-paper-case1-test``       pspgen36-paper   log_permeability_paper  uniform   500 × 4
``pspgen-paper-case1-reference``  pspgen36-paper   log_permeability_paper  grid      (20 × 20) × 500
``pspgen-paper-case3-train``      pspgen36-paper   log_permeability_paper  uniform   2500 × 1
``pspgen-paper-case4-train``      pspgen128-paper  log_permeability_paper  uniform   2500 × 4
``pspgen-paper-case4-test``       pspgen128-paper  log_permeability_paper  uniform   500 × 4
``pspgen-paper-case4-reference``  pspgen128-paper  log_permeability_paper  grid      (20 × 20) × 500
``pspgen-paper-case5-train``      pspgen10d-paper  log_permeability_paper  uniform   10 000 × 1
``pspgen-paper-case5-test``       pspgen10d-paper  log_permeability_paper  uniform   500 × 4
``rixner-o1-initial``             rixner64         rixner_o1               uniform*  2048 × 1
``rixner-o2-initial``             rixner64         rixner_o2               uniform*  4096 × 1
================================  ===============  ======================  ========  ===============

(*) The Rixner family is unbounded, so ``"uniform"`` draws φ from the prior N(0, I) (see
:mod:`psppyro.data.generate`).

Reading of the papers. PSP-GEN (Zang & Koutsourelakis, 2024) trains case 1 on 10 000 triads
(2500 φ × 4 microstructures), tests on 2000 and computes reference probabilities on a 20 × 20 φ grid
with 500 microstructures per φ (200 000 triads); case 3 is the one-microstructure-per-φ variant of
case 1 and case 5 the 10-D φ family with 10 000 × 1 triads. For case 4 (128² images) we found no
separate sizes and use those of case 1; note that its reference set (200 000 Stokes solves at 128²)
is costly — use ``scale``. Rixner et al. start their active-learning loops from 2048 (O1) and 4096
(O2) labelled 64² samples with φ ~ N(0, I).

The ``pspgen-paper-*`` presets have the same sizes on the reconstructed simulator (process presets
``pspgen36-paper``, ``pspgen128-paper``, ``pspgen10d-paper`` and the property map
``log_permeability_paper``, a slightly permeable solid; see ``docs/pspgen_reconstruction.md``),
each with its own seed. Use them to compare with the paper's numbers
(:func:`psppyro.design.paper_targets`); the literal ones show what the text alone gives.

``scale`` multiplies the number of φ values (rounded, at least 1); for grid presets the points per
axis are multiplied by ``sqrt(scale)`` (rounded, at least 1), so the grid stays a full grid. It
never changes ``per_phi`` or the physics. Every preset has its own seed.

Example::

    >>> p = dataset_preset("pspgen-case1-reference", scale=0.25)
    >>> p.n_phi, p.per_phi, p.design
    (100, 500, 'grid')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["DATASET_PRESETS", "DatasetPreset", "dataset_preset"]


@dataclass(frozen=True)
class DatasetPreset:
    """A named dataset: everything :func:`~psppyro.data.generate` needs except the path.

    Attributes:
        name: preset name (recorded in the dataset's ``attrs["preset"]``).
        process: process preset name.
        properties: property-map name.
        n_phi: number of φ values.
        per_phi: microstructures per φ value.
        design: ``"uniform"``, ``"grid"`` or ``"sobol"``.
        seed: the preset's own run seed.
        description: one line for humans.

    Example::

        >>> dataset_preset("rixner-o2-initial").kwargs()["properties"]
        'rixner_o2'
    """

    name: str
    process: str
    properties: str
    n_phi: int
    per_phi: int
    design: str
    seed: int
    description: str = ""

    @property
    def n_samples(self):
        """Number of triads, ``n_phi * per_phi``."""
        return self.n_phi * self.per_phi

    def kwargs(self):
        """Keyword arguments for :func:`~psppyro.data.generate` (add ``path``)."""
        return {
            "process": self.process,
            "properties": self.properties,
            "n_phi": self.n_phi,
            "per_phi": self.per_phi,
            "design": self.design,
            "seed": self.seed,
            "preset_name": self.name,
        }

    def generate(self, path, **overrides):
        """Generate (or resume) this dataset at ``path``; ``overrides`` go to ``generate``."""
        from .generate import generate

        return generate(**{**self.kwargs(), "path": path, **overrides})


def _p(name, process, properties, n_phi, per_phi, design, seed, description):
    return DatasetPreset(name, process, properties, n_phi, per_phi, design, seed, description)


#: The named datasets, by name (sizes at ``scale=1``).
DATASET_PRESETS = {
    p.name: p
    for p in (
        _p(
            "pspgen-case1-train",
            "pspgen36",
            "log_permeability",
            2500,
            4,
            "uniform",
            10_001,
            "PSP-GEN case 1 training set: 36x36, 2-D phi, 10 000 triads",
        ),
        _p(
            "pspgen-case1-test",
            "pspgen36",
            "log_permeability",
            500,
            4,
            "uniform",
            10_002,
            "PSP-GEN case 1 test set: 2000 triads",
        ),
        _p(
            "pspgen-case1-reference",
            "pspgen36",
            "log_permeability",
            400,
            500,
            "grid",
            10_003,
            "PSP-GEN case 1 reference: 20x20 phi grid x 500 microstructures",
        ),
        _p(
            "pspgen-case3-train",
            "pspgen36",
            "log_permeability",
            2500,
            1,
            "uniform",
            30_001,
            "PSP-GEN case 3 training set: one microstructure per phi",
        ),
        _p(
            "pspgen-case4-train",
            "pspgen128",
            "log_permeability",
            2500,
            4,
            "uniform",
            40_001,
            "PSP-GEN case 4 training set: 128x128 (sizes as case 1, our reading)",
        ),
        _p(
            "pspgen-case4-test",
            "pspgen128",
            "log_permeability",
            500,
            4,
            "uniform",
            40_002,
            "PSP-GEN case 4 test set: 128x128",
        ),
        _p(
            "pspgen-case4-reference",
            "pspgen128",
            "log_permeability",
            400,
            500,
            "grid",
            40_003,
            "PSP-GEN case 4 reference: 20x20 grid x 500 at 128x128 (costly: use scale)",
        ),
        _p(
            "pspgen-case5-train",
            "pspgen10d",
            "log_permeability",
            10_000,
            1,
            "uniform",
            50_001,
            "PSP-GEN case 5 training set: 10-D phi, 10 000 x 1",
        ),
        _p(
            "pspgen-case5-test",
            "pspgen10d",
            "log_permeability",
            500,
            4,
            "uniform",
            50_002,
            "PSP-GEN case 5 test set: 10-D phi, 500 x 4",
        ),
        _p(
            "pspgen-paper-case1-train",
            "pspgen36-paper",
            "log_permeability_paper",
            2500,
            4,
            "uniform",
            110_001,
            "PSP-GEN case 1 training set, reconstructed simulator: 36x36, 10 000 triads",
        ),
        _p(
            "pspgen-paper-case1-test",
            "pspgen36-paper",
            "log_permeability_paper",
            500,
            4,
            "uniform",
            110_002,
            "PSP-GEN case 1 test set, reconstructed simulator: 2000 triads",
        ),
        _p(
            "pspgen-paper-case1-reference",
            "pspgen36-paper",
            "log_permeability_paper",
            400,
            500,
            "grid",
            110_003,
            "PSP-GEN case 1 reference, reconstructed simulator: 20x20 phi grid x 500",
        ),
        _p(
            "pspgen-paper-case3-train",
            "pspgen36-paper",
            "log_permeability_paper",
            2500,
            1,
            "uniform",
            130_001,
            "PSP-GEN case 3 training set, reconstructed simulator: one microstructure per phi",
        ),
        _p(
            "pspgen-paper-case4-train",
            "pspgen128-paper",
            "log_permeability_paper",
            2500,
            4,
            "uniform",
            140_001,
            "PSP-GEN case 4 training set, reconstructed simulator: 128x128 (sizes as case 1)",
        ),
        _p(
            "pspgen-paper-case4-test",
            "pspgen128-paper",
            "log_permeability_paper",
            500,
            4,
            "uniform",
            140_002,
            "PSP-GEN case 4 test set, reconstructed simulator: 128x128",
        ),
        _p(
            "pspgen-paper-case4-reference",
            "pspgen128-paper",
            "log_permeability_paper",
            400,
            500,
            "grid",
            140_003,
            "PSP-GEN case 4 reference, reconstructed simulator: 20x20 grid x 500 at 128x128 "
            "(costly: use scale)",
        ),
        _p(
            "pspgen-paper-case5-train",
            "pspgen10d-paper",
            "log_permeability_paper",
            10_000,
            1,
            "uniform",
            150_001,
            "PSP-GEN case 5 training set, reconstructed simulator: 10-D phi, 10 000 x 1",
        ),
        _p(
            "pspgen-paper-case5-test",
            "pspgen10d-paper",
            "log_permeability_paper",
            500,
            4,
            "uniform",
            150_002,
            "PSP-GEN case 5 test set, reconstructed simulator: 10-D phi, 500 x 4",
        ),
        _p(
            "rixner-o1-initial",
            "rixner64",
            "rixner_o1",
            2048,
            1,
            "uniform",
            60_001,
            "Rixner et al. objective O1: initial labelled set, phi ~ N(0, I), 64x64",
        ),
        _p(
            "rixner-o2-initial",
            "rixner64",
            "rixner_o2",
            4096,
            1,
            "uniform",
            60_002,
            "Rixner et al. objective O2: initial labelled set, phi ~ N(0, I), 64x64",
        ),
    )
}


def dataset_preset(name, scale=1.0):
    """A :class:`DatasetPreset` by name, its number of φ values multiplied by ``scale``.

    Args:
        name: one of :data:`DATASET_PRESETS`.
        scale: positive factor on the number of φ values (grids: on the points per axis by its
            square root). ``per_phi``, the process and the properties never change.

    Returns:
        :class:`DatasetPreset`.

    Raises:
        ValueError: for an unknown name or a scale that is not a finite positive number.

    Example::

        >>> dataset_preset("pspgen-case1-train", scale=0.01).n_samples
        100
    """
    if not isinstance(name, str) or name not in DATASET_PRESETS:
        raise ValueError(f"name must be one of {sorted(DATASET_PRESETS)}, got {name!r}")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not (math.isfinite(scale) and scale > 0)
    ):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    p = DATASET_PRESETS[name]
    if scale == 1:
        return p
    if p.design == "grid":
        points = round(math.sqrt(p.n_phi))
        n_phi = max(1, round(points * math.sqrt(scale))) ** 2
    else:
        n_phi = max(1, round(p.n_phi * scale))
    return replace(p, n_phi=n_phi)
