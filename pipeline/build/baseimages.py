"""Slipway's base images, made from the Debian package archive: `ensure_base_images` and the
`python -m pipeline.build.baseimages` entry point (scripts/image and `slipway base-images`).

Nothing here pulls: the catalogue (`build.basecatalog`) says what each image is, `build.rootfs`
assembles its root filesystem, and this module packs the tree and loads it with `docker import`,
building only what is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import docker
import docker.errors
import requests
from structlog.typing import FilteringBoundLogger

from pipeline.build.basecatalog import CATALOG, DEFAULT_SET, BaseImage, import_changes, lookup
from pipeline.build.rootfs import busybox_rootfs, debootstrap_rootfs
from pipeline.core import logs
from pipeline.core.errors import SlipwayError, Unavailable
from pipeline.engines.dockerclient import ENGINE_DOWN, connect


def mounts_under(mountinfo_text: str, root: Path) -> list[str]:
    """Mount points at or below `root` in /proc/self/mountinfo text, deepest first."""
    prefix = str(root).rstrip("/")
    points = []
    for line in mountinfo_text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def tar_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """tarfile filter for a root filesystem: numeric owners only, and nothing inside /dev,
    /proc or /sys (the runtime mounts its own)."""
    top, _, rest = info.name.partition("/")
    if top in ("dev", "proc", "sys") and rest:
        return None
    info.uname = info.gname = ""
    return info


def ensure_base_images(
    client: docker.DockerClient,
    *,
    references: Iterable[str] | None = None,
    force: bool = False,
    log: FilteringBoundLogger | None = None,
) -> list[str]:
    """Build the base images that are missing (all of them with `force`); return those built."""
    log = log or logs.get(component="baseimages")
    images = [lookup(ref) for ref in (DEFAULT_SET if references is None else references)]
    with _engine_errors():
        client.ping()
        existing = [(image, _image_id(client, image.reference)) for image in images]
    wanted = [(image, old) for image, old in existing if force or old is None]
    if not wanted:
        return []
    work = Path(tempfile.mkdtemp(prefix="slipway-baseimages-"))
    try:
        cache = work / "debs"
        cache.mkdir()
        for image, old in wanted:
            _build(
                client,
                image,
                work=work / image.reference.replace("/", "_"),
                cache=cache,
                log=log.bind(image=image.reference),
            )
            if old is not None:
                _remove_if_unused(client, old)
    finally:
        _remove_tree(work)
    return [image.reference for image, _ in wanted]


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        image_id: str = client.images.get(reference).id
    except docker.errors.ImageNotFound:
        return None
    return image_id


def _remove_if_unused(client: docker.DockerClient, image_id: str) -> None:
    """Drop the image a rebuild replaced, unless containers or child images still use it."""
    with suppress(docker.errors.APIError):
        client.images.remove(image_id)


def _build(
    client: docker.DockerClient,
    image: BaseImage,
    *,
    work: Path,
    cache: Path,
    log: FilteringBoundLogger,
) -> None:
    rootfs = work / "rootfs"
    work.mkdir()
    log.info("base_image.build", how=image.how)
    if image.how == "busybox":
        busybox_rootfs(work=work, rootfs=rootfs, log=log)
    else:
        debootstrap_rootfs(image, rootfs=rootfs, cache=cache, log=log)
    tar_path = work / "rootfs.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=tar_member)
    repository, _, tag = image.reference.rpartition(":")
    with _engine_errors():
        output = client.api.import_image(
            src=str(tar_path), repository=repository, tag=tag, changes=import_changes(image)
        )
    for line in str(output).splitlines():
        message = json.loads(line) if line.strip().startswith("{") else {}
        if "error" in message:
            raise Unavailable(
                f"Docker Engine refused to import {image.reference}: {message['error']}"
            )
    log.info("base_image.built", size=tar_path.stat().st_size)


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Map docker-py and socket errors met mid-build to Unavailable."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as e:
        raise Unavailable(ENGINE_DOWN.format(detail=e.__class__.__name__)) from e


def _remove_tree(path: Path) -> None:
    """rmtree that first detaches anything a failed debootstrap left mounted inside (/proc,
    /sys), so it can never delete through a mount into the host."""
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if mounts_under(Path("/proc/self/mountinfo").read_text(), path):
        raise Unavailable(
            f"cannot clean up {path}: something is still mounted inside; "
            "unmount it and remove the directory by hand"
        )
    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build.baseimages",
        description="Build Slipway's base images if missing.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument("references", nargs="*", metavar="REF", help=", ".join(CATALOG))
    parser.add_argument("--all", action="store_true", help="also the slow ones (node)")
    args = parser.parse_args(argv)
    logs.configure()
    references = args.references or list(CATALOG if args.all else DEFAULT_SET)
    try:
        built = ensure_base_images(connect(), references=references, force=args.force)
    except SlipwayError as e:
        print(e.message, file=sys.stderr)
        return 1
    for reference in references:
        print(f"{'built' if reference in built else 'present'} {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
