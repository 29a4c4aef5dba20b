"""Sphinx configuration for psppyro's documentation (``make docs``).

The tutorial notebooks live in ``tutorials/`` (built from ``tutorials/src/`` by
``tutorials/_build_notebooks.py``); Sphinx reads documents only below ``docs/``, so they are copied
to ``docs/tutorials/`` (git-ignored) on every build and rendered by myst-nb without executing them
(``nb_execution_mode = "off"``: they are stored without outputs; the test suite executes them).
"""

import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.abspath(".."))

_DOCS = Path(__file__).resolve().parent
_COPIES = _DOCS / "tutorials"
shutil.rmtree(_COPIES, ignore_errors=True)
_COPIES.mkdir()
for _nb in sorted((_DOCS.parent / "tutorials").glob("[0-9][0-9]_*.ipynb")):
    shutil.copy2(_nb, _COPIES / _nb.name)

project = "psppyro"
author = "psppyro developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",  # includes myst_parser: Markdown pages and notebooks
]
nb_execution_mode = "off"
# $…$ and $$…$$ math in the notebooks' Markdown cells
myst_enable_extensions = ["dollarmath"]
# Markdown headings get anchors, so docstrings and pages can link to
# ``architecture.md#cell-and-units`` and the like.
myst_heading_anchors = 3
# Type hints are rendered in the signatures, with short names (``Tensor``, not ``torch.Tensor``).
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "sphinx_rtd_theme"
exclude_patterns = ["_build"]

# Docstrings write absolute values as |Δc|; reST would read them as substitutions.
rst_prolog = r"""
.. |Δc| replace:: \|Δc\|
.. |Δ ln k| replace:: \|Δ ln k\|
.. |k_extrapolated − k_finest| replace:: \|k_extrapolated − k_finest\|
.. |k(κ_s) − k_Stokes| replace:: \|k(κ_s) − k_Stokes\|
.. |k| replace:: \|k\|
"""

# Every other |x| in a docstring is an absolute value too, not a substitution: escape it before
# reST sees it (outside ``literals`` and doctest lines), so a new docstring writing |ŷ − y*| does
# not need a line above.
_DEFINED = set(re.findall(r"^\.\. \|([^|]+)\| replace::", rst_prolog, re.MULTILINE))
_BARS = re.compile(r"(?<![\\\w|])\|([^\s|`](?:[^|`]*[^\s|`\\])?)\|(?![\w|])")
_LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(line):
    if line.lstrip().startswith((">>>", "...")):
        return line
    parts = _LITERAL.split(line)
    for i in range(0, len(parts), 2):  # even parts are outside ``literals``
        parts[i] = _BARS.sub(
            lambda m: m.group(0) if m.group(1) in _DEFINED else rf"\|{m.group(1)}\|", parts[i]
        )
    return "".join(parts)


def _escape_absolute_values(app, what, name, obj, options, lines):
    lines[:] = [_escape_bars(line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _escape_absolute_values)
