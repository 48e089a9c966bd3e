"""`slipway images`: Slipway's base images, made from the OS package archive (no registry)."""

from __future__ import annotations

from typing import Annotated

import typer


def ensure(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
    all_images: Annotated[
        bool, typer.Option("--all", help="Also the slow ones (slipway/node).")
    ] = False,
    refs: Annotated[list[str] | None, typer.Argument(help="Image references.")] = None,
) -> None:
    """Make Slipway's base images from the OS package archive (no registry needed)."""
    from pipeline.build import baseimages

    argv = (["--force"] if force else []) + (["--all"] if all_images else []) + list(refs or [])
    raise typer.Exit(code=baseimages.main(argv))
