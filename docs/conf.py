"""Sphinx configuration of the skcandist documentation."""

import inspect
import os
import sys
from pathlib import Path

from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
# The gallery's examples run inside this process: no model download, one thread
# per library (the machine this is built on may have two cores), no display.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

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
    "sphinx_gallery.gen_gallery",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# One page per public name (see api.rst), generated into generated/.
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = False  # a module's page lists its __all__
templates_path = ["_templates"]
autodoc_default_options = {}
autodoc_mock_imports = []
autodoc_typehints = "none"

exclude_patterns = ["_build", "examples"]
nitpicky = False

# The gallery: every script in examples/ runs at build time (filename_pattern
# matches every file); its output and matplotlib figures are rendered into
# auto_examples/. A failing example fails the build.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "reset_modules": ("matplotlib",),
    "doc_module": ("skcandist",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skcandist": None},
    "remove_config_comments": True,
    "show_memory": False,
    "download_all_examples": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skcandist {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_context = {"default_mode": "light"}
html_static_path = []


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _constant_docstring(app, what, name, obj, options, lines):
    """Give a module-level constant its ``#:`` comment, not its type's docstring.

    autodoc documents an instance of ``dict`` or ``tuple`` that has no comment in
    the module it is documented under with the docstring of ``dict`` or
    ``tuple``. Re-exported constants (``skcandist.datasets.PAPER_TEACHERS``) keep
    their comment in the private module that defines them: look it up there.
    """
    if what not in ("data", "attribute"):
        return
    type_doc = getattr(type(obj), "__doc__", None)
    if not isinstance(type_doc, str) or not type_doc:
        return
    if "\n".join(lines).strip() != inspect.cleandoc(type_doc).strip():
        return
    del lines[:]
    attr = name.rpartition(".")[2]
    for module in sorted(m for m in sys.modules if m.startswith("skcandist")):
        if getattr(sys.modules[module], attr, None) is not obj:
            continue
        try:
            comments = ModuleAnalyzer.for_module(module).find_attr_docs()
        except PycodeError:
            continue
        if ("", attr) in comments:
            lines.extend(comments[("", attr)])
            return


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
    app.connect("autodoc-process-docstring", _constant_docstring)
