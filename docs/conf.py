"""Sphinx configuration of the avalanche-freeze documentation (``make docs``)."""

from importlib.metadata import version as _version

project = "avalanche-freeze"
author = "the avalanche-freeze maintainers"
release = _version("avalanche-freeze")
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 4  # "page.md#a-heading" links, as on GitHub
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "avalanche-freeze"
