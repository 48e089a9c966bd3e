"""Images copied byte for byte between Slipway's registry and a backup archive.

Revisions pin images by digest, so a backup must bring back the very bytes: `docker save` and
`docker push` recompress layers and change digests. `write_images` walks each pinned image
through the registry's v2 API (an index's children, then each manifest's config and layers) and
writes every blob once, checked against its sha256 as it is read; `push_staged` sends a restored
copy back (blobs the registry lacks, then manifests by digest, children before their index, then
the tags that pointed at them). The archive part, under `images/`:

    images/manifests.json        {"registry": ..., "manifests": [{"repository", "digest",
                                  "media_type", "tags"}, ...]}  children before their index
    images/blobs/sha256/<hex>    every manifest, config and layer, once per digest
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pipeline.build.registry import ImageRef, parse
from pipeline.core.errors import InvalidInput, NotFound

INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})  # fmt: skip
IMAGE_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
})  # fmt: skip
ROOT = "images"
LISTING = "manifests.json"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_MAX_DEPTH = 3  # an index of image manifests; nothing nests deeper in practice


class Registry(Protocol):
    """The registry calls a copy makes (`registry.RegistryClient` is the real one)."""

    def manifest(self, ref: ImageRef, digest: str) -> tuple[str, bytes]: ...
    def read_blob(self, ref: ImageRef, digest: str, into: BinaryIO) -> int: ...
    def tags(self, repository: str) -> list[str]: ...
    def resolve(self, reference: str) -> str: ...
    def has_blob(self, ref: ImageRef, digest: str) -> bool: ...
    def push_blob(self, ref: ImageRef, digest: str, source: BinaryIO, *, size: int) -> None: ...
    def put_manifest(self, ref: ImageRef, at: str, *, media_type: str, body: bytes) -> None: ...


@dataclass(frozen=True, kw_only=True)
class References:
    """What one manifest points at: the manifests an index lists, an image's config and layers;
    and its media type (the registry's, or the one the manifest declares when that is vague)."""

    media_type: str
    children: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()


@dataclass(kw_only=True)
class ImageSummary:
    images: list[str] = field(default_factory=list)  # pinned references, copied whole
    skipped: list[str] = field(default_factory=list)  # not in Slipway's registry: pulled again
    missing: list[str] = field(default_factory=list)  # deleted from the registry meanwhile
    blobs: int = 0
    size: int = 0  # bytes of every blob and manifest written


@dataclass(kw_only=True)
class PushSummary:
    source: str = ""  # the registry the images were copied from (revisions name its address)
    manifests: int = 0
    pushed: int = 0  # blobs sent
    present: int = 0  # blobs the registry already had
    size: int = 0  # bytes sent


def blob_path(digest: str) -> str:
    """Where a blob lives under `images/` (the digest checked: it becomes a file name)."""
    found = _DIGEST.fullmatch(digest)
    if not found:
        raise InvalidInput(f"{digest!r} is not a sha256 digest: the image listing is damaged")
    return f"blobs/sha256/{found.group(1)}"


def references(media_type: str, body: bytes) -> References:
    """Pure: the digests one manifest refers to, by its media type (or the one it declares)."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"a manifest of type {media_type!r} is not JSON: {e}") from e
    kind = media_type if media_type in INDEX_TYPES | IMAGE_TYPES else doc.get("mediaType", "")
    if kind in INDEX_TYPES:
        return References(media_type=kind, children=tuple(_digests(doc.get("manifests") or [])))
    if kind in IMAGE_TYPES:
        blobs = _digests([doc.get("config") or {}, *(doc.get("layers") or [])])
        return References(media_type=kind, blobs=tuple(dict.fromkeys(blobs)))
    raise InvalidInput(
        f"manifest type {kind or media_type!r} is not one Slipway copies: push the image as "
        "a Docker schema 2 or OCI image (docker push and BuildKit both do)"
    )


def _digests(descriptors: list[Any]) -> list[str]:
    out = []
    for d in descriptors:
        digest = d.get("digest", "") if isinstance(d, dict) else ""
        blob_path(digest)  # refuse anything that is not a sha256 digest
        out.append(digest)
    return out


def write_images(
    tar: tarfile.TarFile, *, images: Sequence[str], registry: str, client: Registry,
    scratch: Path,
) -> ImageSummary:  # fmt: skip
    """Copy every pinned image of `images` that lives in `registry` into `tar` under images/."""
    writer = _ArchiveWriter(tar=tar, client=client, scratch=scratch)
    summary = ImageSummary()
    for image in sorted(set(images)):
        ref = parse(image)
        if ref.registry != registry or not ref.digest:
            summary.skipped.append(image)
            continue
        try:
            writer.manifest(ref, ref.digest, depth=0)
        except NotFound:
            summary.missing.append(image)
            continue
        summary.images.append(image)
    listing = {"registry": registry, "manifests": writer.listing(registry)}
    _add(tar, f"{ROOT}/{LISTING}", io.BytesIO(json.dumps(listing, indent=2).encode()))
    summary.blobs, summary.size = len(writer.blobs), writer.size
    return summary


class _ArchiveWriter:
    def __init__(self, *, tar: tarfile.TarFile, client: Registry, scratch: Path) -> None:
        self._tar, self._client, self._scratch = tar, client, scratch
        self.blobs: set[str] = set()
        self.size = 0
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}  # in order: children first

    def manifest(self, ref: ImageRef, digest: str, *, depth: int) -> None:
        if (ref.repository, digest) in self._entries:
            return
        if depth > _MAX_DEPTH:
            raise InvalidInput(f"{ref.pinned(digest)}: manifests nest deeper than {_MAX_DEPTH}")
        media_type, body = self._client.manifest(ref, digest)
        refs = references(media_type, body)
        for child in refs.children:
            self.manifest(ref, child, depth=depth + 1)
        for blob in refs.blobs:
            self._blob(ref, blob)
        if digest not in self.blobs:
            self._store(digest, io.BytesIO(body))
        self._entries[(ref.repository, digest)] = {
            "repository": ref.repository, "digest": digest, "media_type": refs.media_type,
            "tags": [],
        }  # fmt: skip

    def listing(self, registry: str) -> list[dict[str, Any]]:
        """The manifests, each with the tags that point at it now (a spec naming `app:1` still
        resolves after the restore)."""
        for repository in sorted({repo for repo, _ in self._entries}):
            for tag in self._client.tags(f"{registry}/{repository}"):
                try:
                    pinned = self._client.resolve(f"{registry}/{repository}:{tag}")
                except NotFound:
                    continue  # deleted since it was listed
                entry = self._entries.get((repository, pinned.rpartition("@")[2]))
                if entry is not None:
                    entry["tags"].append(tag)
        return list(self._entries.values())

    def _blob(self, ref: ImageRef, digest: str) -> None:
        if digest in self.blobs:
            return
        with tempfile.TemporaryFile(dir=self._scratch) as fh:
            self._client.read_blob(ref, digest, fh)
            fh.seek(0)
            self._store(digest, fh)

    def _store(self, digest: str, data: BinaryIO) -> None:
        self.size += _add(self._tar, f"{ROOT}/{blob_path(digest)}", data)
        self.blobs.add(digest)


def _add(tar: tarfile.TarFile, name: str, data: BinaryIO) -> int:
    info = tarfile.TarInfo(name)
    info.size = data.seek(0, io.SEEK_END)
    data.seek(0)
    info.mode, info.mtime = 0o600, int(time.time())
    tar.addfile(info, data)
    return info.size


def push_staged(folder: Path, *, registry: str, client: Registry) -> PushSummary:
    """Send the images a restore staged in `folder` to `registry`, then remove `folder`.

    Level-triggered: a blob the registry has is skipped, a manifest put twice is the same
    manifest, so a push cut off half way is simply run again."""
    source, listing = _read_listing(folder)
    summary = PushSummary(source=source)
    for entry in listing:
        ref = ImageRef(registry=registry, repository=entry["repository"])
        body = _read_verified(folder, entry["digest"])
        for blob in references(entry["media_type"], body).blobs:
            _push_blob(folder, ref, blob, client=client, summary=summary)
        for at in (entry["digest"], *entry["tags"]):
            client.put_manifest(ref, at, media_type=entry["media_type"], body=body)
        summary.manifests += 1
    shutil.rmtree(folder)
    return summary


def _push_blob(
    folder: Path, ref: ImageRef, digest: str, *, client: Registry, summary: PushSummary
) -> None:
    if client.has_blob(ref, digest):
        summary.present += 1
        return
    path = folder / blob_path(digest)
    if not path.is_file():
        raise InvalidInput(f"the staged images in {folder} lack blob {digest}: restore again")
    size = path.stat().st_size
    with path.open("rb") as fh:
        client.push_blob(ref, digest, fh, size=size)  # the registry checks the digest
    summary.pushed += 1
    summary.size += size


def _read_listing(folder: Path) -> tuple[str, list[dict[str, Any]]]:
    try:
        raw = json.loads((folder / LISTING).read_text())
        source = str(raw["registry"])
        entries = [
            {"repository": str(e["repository"]), "digest": str(e["digest"]),
             "media_type": str(e["media_type"]), "tags": [str(t) for t in e.get("tags", [])]}
            for e in raw["manifests"]
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(
            f"{folder / LISTING} is missing or damaged ({e}): restore the backup again"
        ) from e
    return source, entries


def _read_verified(folder: Path, digest: str) -> bytes:
    path = folder / blob_path(digest)
    try:
        body = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"the staged images lack manifest {digest}: restore again") from e
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise InvalidInput(f"staged manifest {path} does not match its digest: restore again")
    return body
