"""`slipway backup FILE` and `slipway restore FILE`: run on the Slipway machine itself, as the
user that owns the data dir (they read and write it directly, not through the API).

With `--with-images` the images the revisions pin are copied out of Slipway's registry byte for
byte (`build.imagecopy`); a restore stages them and pushes them at once if the registry answers,
else the control plane pushes them when it starts (`app.restoredimages`)."""

from __future__ import annotations

import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.build import imagecopy
from pipeline.build.registry import RegistryClient
from pipeline.cli.output import fail, out
from pipeline.core.errors import SlipwayError
from pipeline.core.settings import Settings
from pipeline.store import backups


def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the archive (.tar.gz).")],
    with_images: Annotated[
        bool,
        typer.Option(
            "--with-images",
            help="Also copy the images the revisions run, byte for byte, from Slipway's registry.",
        ),
    ] = False,
) -> None:
    """A consistent copy of this Slipway, taken while it runs: database, signing keys, secrets,
    git repositories, tokens and webhook secrets (and, with --with-images, the images)."""
    settings = Settings.from_env()
    copied: list[imagecopy.ImageSummary] = []

    def images(tar: tarfile.TarFile, *, images: tuple[str, ...], scratch: Path) -> None:
        with RegistryClient(timeout_s=60, insecure=settings.insecure_registries) as client:
            copied.append(imagecopy.write_images(tar, images=images, registry=settings.registry,
                                                 client=client, scratch=scratch))  # fmt: skip

    try:
        manifest = backups.backup(settings, file, images=images if with_images else None)
    except SlipwayError as e:
        raise fail(e.message) from e
    out.print(f"backup of {settings.data_dir} written to {file} "
              f"({manifest.database}; {', '.join(manifest.entries) or 'no files'})")  # fmt: skip
    for summary in copied:
        _print_images(summary, registry=settings.registry)


def _print_images(summary: imagecopy.ImageSummary, *, registry: str) -> None:
    out.print(f"images: {len(summary.images)} from {registry}, {_mb(summary.size)} "
              f"({summary.blobs} blobs)")  # fmt: skip
    for image in summary.skipped:
        out.print(f"  not copied: {image} (not in Slipway's registry {registry}: "
                  "the restored machine pulls it from where it is)")  # fmt: skip
    for image in summary.missing:
        out.print(f"  not copied: {image} (no longer in the registry: its revision was "
                  "removed while the backup ran)")  # fmt: skip


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


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
    staged = backups.staged_images(settings.data_dir)
    if staged.is_dir():
        _push_now(settings, staged)


def _push_now(settings: Settings, staged: Path) -> None:
    """The registry is up (a restore onto a running machine): push right away; otherwise the
    control plane does it when it starts."""
    later = f"the control plane pushes them to {settings.registry} when it starts"
    with RegistryClient(timeout_s=60, insecure=settings.insecure_registries) as client:
        if not client.ping(settings.registry):
            out.print(f"images staged in {staged}: {later}")
            return
        try:
            done = imagecopy.push_staged(staged, registry=settings.registry, client=client)
        except SlipwayError as e:
            out.print(f"images staged in {staged}, not pushed yet ({e.message}): {later}")
            return
    if done.source != settings.registry:
        out.print(f"note: the revisions name {done.source}, the registry the images came from; "
                  f"SLIPWAY_REGISTRY is {settings.registry}: set it to {done.source}")  # fmt: skip
    sent = f"{done.pushed} blobs sent, {_mb(done.size)}; {done.present} already there"
    out.print(f"images: {done.manifests} manifests pushed to {settings.registry} ({sent})")
