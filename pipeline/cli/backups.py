"""`slipway backup FILE` and `slipway restore FILE`: run on the Slipway machine itself, as the
user that owns the data dir (they read and write it directly, not through the API)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import fail, out
from pipeline.core.errors import SlipwayError
from pipeline.core.settings import Settings
from pipeline.store import backups


def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the archive (.tar.gz).")],
) -> None:
    """A consistent copy of this Slipway, taken while it runs: database, signing keys, secrets,
    git repositories, tokens and webhook secrets."""
    settings = Settings.from_env()
    try:
        manifest = backups.backup(settings, file)
    except SlipwayError as e:
        raise fail(e.message) from e
    out.print(f"backup of {settings.data_dir} written to {file} "
              f"({manifest.database}; {', '.join(manifest.entries) or 'no files'})")  # fmt: skip


def restore(
    file: Annotated[Path, typer.Argument(help="An archive made by `slipway backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a data dir that already has services.")
    ] = False,
) -> None:
    """Bring a backup into this machine's data dir (the control plane stopped); `./scripts/up`
    then brings every service back to the same revisions, traffic and tags."""
    settings = Settings.from_env()
    try:
        manifest = backups.restore(settings, file, force=force)
    except SlipwayError as e:
        raise fail(e.message) from e
    made = datetime.fromtimestamp(manifest.created, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.print(f"restored the backup of {made} (Slipway {manifest.version}) into "
              f"{settings.data_dir}: start it with ./scripts/up")  # fmt: skip
