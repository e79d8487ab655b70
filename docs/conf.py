"""Sphinx configuration of the omnist documentation.

Build with ``python -m sphinx -b html docs docs/_build/html``. The build imports omnist, so its
dependencies must be installed. It fetches nothing from the network.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

# autodoc imports the package from the repository root, so a build works without installing omnist.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The version comes from pyproject.toml, so a package that fails to import still gives a build in which
# autodoc reports the import error.
with open(ROOT / "pyproject.toml", "rb") as file:
    _project = tomllib.load(file)["project"]

project = "omnist"
author = "omnist developers"
copyright = "omnist developers"
version = _project["version"]
release = _project["version"]

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: anchors for headings down to level 3, so pages can link to sections with [text](page.md#anchor).
myst_heading_anchors = 3

# Docstrings are numpydoc style. Their Returns sections are prose in the scanpy manner, not ``name : type``
# entries, so napoleon renders Returns as a plain section instead of parsing each line as a return value.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = ["Returns"]

# api.md lists each object in an autosummary table and documents it with an autodoc directive on the same
# page, so no stub pages are generated into the source tree.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"

html_theme = "alabaster"
html_title = f"omnist {release}"
