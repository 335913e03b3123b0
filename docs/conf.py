"""Sphinx configuration of the skcandist documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skcandist  # noqa: E402

project = "skcandist"
author = "the skcandist developers"
copyright = "2026, the skcandist developers"
release = skcandist.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autosummary_generate = False
autodoc_default_options = {}
autodoc_mock_imports = []
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
nitpicky = False
