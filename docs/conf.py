"""Sphinx configuration for psppyro's documentation (``make docs``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "psppyro"
author = "psppyro developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
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
