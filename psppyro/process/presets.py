r"""Named process set-ups of the seed papers, and rebuilding processes from their configuration.

===================  =====  ====================================================================
name                 φ dim  set-up
===================  =====  ====================================================================
``pspgen36``         2      36², :class:`PSPGenDensity`, void fraction 2/3 (hard), Cahn–Hilliard
                            D = 10, γ = 2, T = 5 (PSP-GEN, 2-D φ; the literal reading)
``pspgen128``        2      128², as ``pspgen36`` but Cahn–Hilliard γ = 10
``pspgen10d``        10     36², :class:`PSPGen10DDensity`, otherwise as ``pspgen36``
``pspgen36-paper``   2      as ``pspgen36`` with filter amplitude S
                            (``filter_amplitude="density"``) and Cahn–Hilliard grid spacing
                            dx = 2 pixels (the reconstructed paper reading)
``pspgen128-paper``  2      as ``pspgen128`` (γ = 10) with amplitude S and dx = 2
``pspgen10d-paper``  10     as ``pspgen10d`` with amplitude S and dx = 2
``rixner64``         100    64², :class:`SpectralMixtureDensity` (Q = 100, w_max = 65, σ = 12),
                            volume fraction 0.5, ε = 25; ``sample`` thresholds hard, ``model``
                            relaxed
``filtered3d``       3      51³, :class:`GaussianFilterDensity` σ ∈ [1, 7]³ (the paper's grid
                            {1, 3, 5, 7}³), uniform noise, volume fraction 0.5 (hard)
===================  =====  ====================================================================

Readings of the sources (where they leave room):

* ``pspgen10d``: the 10-D PSP-GEN example changes only the spectral density; we keep the 36² grid,
  the void fraction 2/3 and the Cahn–Hilliard step of ``pspgen36``.
* Two readings of PSP-GEN. The *literal* presets (``pspgen36``, ``pspgen128``, ``pspgen10d``)
  follow the text: filter √S, Cahn–Hilliard on a one-pixel grid. The ``-paper`` presets are a
  reconstruction that reproduces the paper's published fingerprints (its Tables 1–3 and
  Figure 3a): the filter is S itself (power spectrum S², :class:`GaussianRandomField`'s
  ``filter_amplitude="density"``) and Cahn–Hilliard runs on a grid of spacing dx = 2 pixels
  (in pixel units the Laplacian is a quarter of the one-pixel grid's: D_eff = D/4 and
  γ_eff = γ/4), with D, γ, T and the time step as in the literal presets. They
  go with the property map ``"log_permeability_paper"`` (a slightly permeable solid). The paper
  states neither detail; see ``docs/pspgen_reconstruction.md`` for the reasoning and the
  measured fingerprints of both readings, and ``docs/architecture.md`` § "Two readings of the
  PSP-GEN simulator". dx is never tuned to design results.
* ``rixner64``: the paper's process is the *relaxed* threshold (ε = 25) because its inference needs
  gradients; its data and properties are computed on binary images. So the preset's :meth:`sample`
  returns binary images (``threshold="hard"``; ``sample(..., threshold="relaxed")`` gives the
  relaxed ones) and :meth:`~GaussianRandomField.model` is always relaxed with ε = 25.
* ``filtered3d``: the volume fraction is not fixed by the issue; 0.5 (symmetric phases) is used.

Any constructor argument of :class:`GaussianRandomField` can be overridden, e.g.
``preset("pspgen36", phase_field=None)`` for the process without Cahn–Hilliard.
"""

from __future__ import annotations

from .cahn_hilliard import CahnHilliard
from .grf import GaussianRandomField
from .spectral import (
    GaussianFilterDensity,
    PSPGen10DDensity,
    PSPGenDensity,
    SpectralMixtureDensity,
    density_from_config,
)

__all__ = ["PAPER_CH_DX", "PRESETS", "from_config", "preset"]
#: Cahn–Hilliard grid spacing (pixels) of the reconstructed ``-paper`` presets.
PAPER_CH_DX = 2.0

PRESETS = {
    "pspgen36": "PSP-GEN 2-D: 36x36, anisotropic SDF (phi in [1,9]x[0.2,2]), void fraction 2/3, "
    "Cahn-Hilliard D=10 gamma=2 T=5",
    "pspgen128": "PSP-GEN 2-D at 128x128: as pspgen36 with Cahn-Hilliard gamma=10",
    "pspgen10d": "PSP-GEN 10-D: 36x36, five-term SDF (phi in [1,9]^5 x [0.02,2]^5), void fraction "
    "2/3, Cahn-Hilliard D=10 gamma=2 T=5",
    "rixner64": "Rixner & Koutsourelakis: 64x64, spectral mixture Q=100 (phi in R^100, N(0,I) "
    "prior), volume fraction 0.5; sample hard, model relaxed eps=25",
    "pspgen36-paper": "PSP-GEN 2-D reconstructed (paper reading): as pspgen36 with filter "
    "amplitude S (power S^2) and Cahn-Hilliard grid spacing dx=2; use with "
    "log_permeability_paper",
    "pspgen128-paper": "PSP-GEN 2-D at 128x128 reconstructed: as pspgen128 (gamma=10) with "
    "amplitude S and Cahn-Hilliard dx=2",
    "pspgen10d-paper": "PSP-GEN 10-D reconstructed: as pspgen10d with amplitude S and "
    "Cahn-Hilliard dx=2",
    "filtered3d": "VAE-Regression 3-D: 51^3, uniform noise convolved with an anisotropic Gaussian "
    "(sigma in [1,7]^3 pixels), volume fraction 0.5",
}


def preset(name: str, **overrides) -> GaussianRandomField:
    """A process set-up of the seed papers by name (see the module table and :data:`PRESETS`).

    Args:
        name (str): one of ``PRESETS``.
        **overrides: constructor arguments of :class:`GaussianRandomField` replacing the preset's
            (e.g. ``phase_field=None``, ``threshold="relaxed"``).

    Returns:
        GaussianRandomField: the process.

    Raises:
        ValueError: if ``name`` is unknown (the message lists the known names).

    Example::

        >>> proc = preset("pspgen36", phase_field=None)
        >>> proc.shape, proc.d_phi
        ((36, 36), 2)
        >>> paper = preset("pspgen36-paper")
        >>> paper.filter_amplitude, paper.phase_field.dx
        ('density', 2.0)
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"name must be one of {sorted(PRESETS)}, got {name!r}")
    paper = name.endswith("-paper")
    if paper:
        name = name[: -len("-paper")]
    if name == "pspgen36":
        kwargs = dict(shape=(36, 36), sdf=PSPGenDensity(), volume_fraction=2 / 3)
        ch = dict(D=10.0, gamma=2.0, T=5.0)
    elif name == "pspgen128":
        kwargs = dict(shape=(128, 128), sdf=PSPGenDensity(), volume_fraction=2 / 3)
        ch = dict(D=10.0, gamma=10.0, T=5.0)
    elif name == "pspgen10d":
        kwargs = dict(shape=(36, 36), sdf=PSPGen10DDensity(), volume_fraction=2 / 3)
        ch = dict(D=10.0, gamma=2.0, T=5.0)
    elif name == "rixner64":
        kwargs = dict(shape=(64, 64), sdf=SpectralMixtureDensity(100, 65.0, 12.0),
                      volume_fraction=0.5, eps=25.0)
        ch = None
    else:  # filtered3d
        kwargs = dict(shape=(51, 51, 51), sdf=GaussianFilterDensity(3, (1.0, 7.0)),
                      volume_fraction=0.5, noise="uniform")
        ch = None
    kwargs["threshold"] = "hard"
    if paper:
        kwargs["filter_amplitude"] = "density"
        ch["dx"] = PAPER_CH_DX
    if "phase_field" not in overrides:
        kwargs["phase_field"] = CahnHilliard(**ch) if ch is not None else None
    kwargs.update(overrides)
    return GaussianRandomField(**kwargs)


def from_config(config):
    """Rebuild a process (or a spectral density) from its ``config()`` dictionary.

    Args:
        config (dict): from :meth:`GaussianRandomField.config` or
            :meth:`~psppyro.process.SpectralDensity.config`; a phase field is rebuilt from its own
            config (``{"type": "CahnHilliard", ...}`` → ``CahnHilliard(**kwargs)``).

    Returns:
        GaussianRandomField or SpectralDensity: an object with the same configuration.

    Raises:
        ValueError: on an unknown type, or a phase field stored without a rebuildable config.

    Example::

        >>> proc = preset("rixner64")
        >>> from_config(proc.config()).config() == proc.config()
        True
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"config must be a dict with a 'type' key, got {config!r}")
    if config["type"] != "GaussianRandomField":
        return density_from_config(config)
    kwargs = {k: v for k, v in config.items() if k not in ("type", "sdf", "phase_field")}
    kwargs["shape"] = tuple(kwargs["shape"])
    kwargs["sdf"] = density_from_config(config["sdf"])
    pf = config.get("phase_field")
    if pf is None:
        kwargs["phase_field"] = None
    elif isinstance(pf, dict) and pf.get("type") == "CahnHilliard":
        kwargs["phase_field"] = CahnHilliard(**{k: v for k, v in pf.items() if k != "type"})
    else:
        raise ValueError(
            f"config['phase_field'] must be None or a CahnHilliard config, got {pf!r}; a phase "
            f"field without config() cannot be rebuilt"
        )
    return GaussianRandomField(**kwargs)
