"""Files Slipway ships beside its code, found the same way however Slipway is installed.

The build templates live in the repository's top-level `buildtemplates/` folder. A wheel carries
them as the data-only package `pipeline._buildtemplates` (pyproject.toml maps the folder there),
so an installed Slipway, such as the control-plane image, reads them from inside its own
package; a checkout, and the editable install that imports from it, read them beside
`pipeline/`. `SLIPWAY_BUILDTEMPLATES` (pipeline.core.settings) overrides both.
"""

from __future__ import annotations

from pathlib import Path

# A path, not an importlib.resources Traversable: jinja2's FileSystemLoader and
# SLIPWAY_BUILDTEMPLATES want a folder on disk, and a wheel is always installed unpacked.
_PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/


def buildtemplates_dir() -> Path:
    """The folder holding `<template>/detect.toml`, `<template>/Dockerfile.j2` and
    `kubernetes/*.j2`: the installed package data if there is any, else the checkout's."""
    installed = _PACKAGE / "_buildtemplates"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "buildtemplates"
