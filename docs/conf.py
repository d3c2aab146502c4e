"""Sphinx configuration of the cmse-speechbrain documentation site.

Build (warnings are errors; about half a minute, most of it importing torch
and SpeechBrain for autodoc)::

    pip install -e ".[docs]"
    sphinx-build -W docs docs/_build/html

The pages are MyST Markdown (they read on GitHub as they are); the API
reference is generated from the package's numpy-style docstrings.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The worktree's package, whether or not it is the one installed.
sys.path.insert(0, str(ROOT))

import cmse_speechbrain  # noqa: E402

project = "cmse-speechbrain"
author = "cmse-speechbrain contributors"
copyright = "2026, cmse-speechbrain contributors"
release = version = cmse_speechbrain.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# Quotes and ellipses only: "--option" in prose stays two hyphens.
smartquotes_action = "qe"

# MyST: headings get anchors (GitHub's style), so [x](page.md#a-heading) works
# on GitHub and in the site alike.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# The docstrings are SpeechBrain-style numpy sections ("Arguments", "Returns",
# "Example") with doctested examples.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"

html_theme = "alabaster"
html_title = f"cmse-speechbrain {release}"
html_theme_options = {
    "description": "CMCR-Net speech enhancement for SpeechBrain",
    "page_width": "1240px",
    "sidebar_width": "250px",
    "body_max_width": "none",
}
html_show_sourcelink = False
html_copy_source = False
html_static_path = ["_static"]
# Does nothing unless a page is opened with ?selftest (tests/test_docs.py).
html_js_files = ["selftest.js"]
html_css_files = ["custom.css"]
