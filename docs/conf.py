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
]
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
"""
