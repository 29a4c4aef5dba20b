r"""Benchmark cases: the seed papers' protocols run end to end (``psppyro benchmark NAME``).

A case generates (or reuses) its data sets, trains its models, designs, checks every design by true
simulation and writes ``results.json``, a Markdown table ``results.md`` in the paper's layout
(with the paper's own numbers beside ours), its figures and a per-stage wall-time table into one
output folder. Cases sit on top of the stack (they use ``data``, ``models``, ``design`` and
``diagnostics``; nothing imports them).

Each case lives in one module that defines

.. code-block:: python

    def run(name: str, *, scale: float, out: pathlib.Path, seed: int, progress: bool) -> dict

where ``scale`` shrinks every size (data set, epochs, Monte Carlo and simulation counts) for quick
runs (``scale=1`` is the paper's protocol) and the returned dict is what ``results.json`` holds.
:data:`CASES` maps each case name to its module (imported only when the case runs, so listing the
cases is instant) and a one-line description.

Example::

    >>> "pspgen-paper-case1" in case_names()
    True
    >>> describe_cases().splitlines()[0].split()[0]
    'pspgen-paper-case1'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["CASES", "case_names", "describe_cases", "get_case"]

#: name → (module that defines ``run``, one-line description).
CASES: dict[str, tuple[str, str]] = {
    "pspgen-paper-case1": (
        "psppyro.cases.pspgen_paper",
        "PSP-GEN Case 1: 2-D phi, 36^2 Cahn-Hilliard, three permeability boxes (L, M, R)",
    ),
    "pspgen-paper-case3": (
        "psppyro.cases.pspgen_paper",
        "PSP-GEN Case 3: Case 1 with a small training set (2 500 x 1 triads)",
    ),
    "pspgen-paper-case4": (
        "psppyro.cases.pspgen_paper",
        "PSP-GEN Case 4: 128^2 microstructures, the boxes of the paper's Table 3",
    ),
    "pspgen-paper-case2": (
        "psppyro.cases.generale",
        "PSP-GEN Case 2: cross-region design (trained outside M_d); PSP-GEN, competitor, BO",
    ),
    "pspgen-paper-case5": (
        "psppyro.cases.generale",
        "PSP-GEN Case 5: 10-D phi, low/high corner boxes; PSP-GEN, SV-MOGP competitor, BO",
    ),
    "rixner-o1": (
        "psppyro.cases.rixner",
        "Rixner & Koutsourelakis Case 1 (O1): rixner64, P(kappa in K), VB-EM + active learning "
        "vs random data",
    ),
    "rixner-o2": (
        "psppyro.cases.rixner",
        "Rixner & Koutsourelakis Case 2 (O2): target density of (K_11, K_22), vf 0.5 and 0.3",
    ),
    "vae-regression": (
        "psppyro.cases.inversion",
        "VAE-Regression (Sardeshmukh): 3-D filtered volumes, C11; forward vs Reg-only CNN, "
        "Gaussian vs mixture one-shot inverse",
    ),
    "gan-mdn": (
        "psppyro.cases.inversion",
        "GAN + MDN (Mao): rixner64 images, K11; REP of 30 one-shot samples per target vs latent "
        "optimization",
    ),
}


def case_names() -> list[str]:
    """The registered case names, in registration order.

    Example::

        >>> case_names()[:1]
        ['pspgen-paper-case1']
    """
    return list(CASES)


def describe_cases() -> str:
    """One line per case: its name and description (for ``psppyro benchmark --list``).

    Example::

        >>> "Case 3" in describe_cases()
        True
    """
    width = max(len(n) for n in CASES)
    return "\n".join(f"{n:<{width}}  {d}" for n, (_, d) in CASES.items())


def get_case(name: str) -> Callable[..., dict]:
    """The ``run`` function of case ``name`` (its module is imported now).

    Raises:
        ValueError: ``name`` is not a registered case (the message lists them).

    Example::

        >>> get_case("no-such-case")
        Traceback (most recent call last):
        ...
        ValueError: case must be one of ['pspgen-paper-case1', ...], got 'no-such-case'
    """
    if name not in CASES:
        raise ValueError(f"case must be one of {case_names()}, got {name!r}")
    module = importlib.import_module(CASES[name][0])
    return module.run
