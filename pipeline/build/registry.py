"""Image references and the registry's HTTP API (OCI distribution v2).

Revisions pin images by digest. `resolve` turns `host/repo:tag` into `host/repo@sha256:…` by
asking the registry (HEAD on the manifest), so a tag moving later never changes a revision.
`delete` removes the images of garbage-collected revisions that Slipway built (`unused_images`);
`tags` lists a repository's tags, for `services delete` to remove them all. The blob and
manifest calls (`manifest`, `read_blob`, `has_blob`, `push_blob`, `put_manifest`) copy images
byte for byte, so digests survive a backup and restore (`imagecopy`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import httpx

from pipeline.core import names
from pipeline.core.errors import InvalidInput, NotFound, Unavailable
from pipeline.core.records import Revision

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def parse(reference: str) -> ImageRef:
    """Parse `registry/repo[:tag][@digest]`; the registry part is required (no Docker Hub)."""
    ref = reference.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidInput(f"image {reference!r}: digest must look like sha256:<64 hex>")
    first, _, rest = ref.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        raise InvalidInput(
            f"image {reference!r} names no registry: use a full reference such as "
            "127.0.0.1:5000/team/app:1.0 (no public registry is reachable from Slipway)"
        )
    repo, tag = rest, ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise InvalidInput(f"image {reference!r}: invalid tag {tag!r}")
    if not _REPO.fullmatch(repo):
        raise InvalidInput(f"image {reference!r}: invalid repository name {repo!r}")
    if not tag and not digest:
        tag = "latest"
    return ImageRef(registry=first, repository=repo, tag=tag, digest=digest)


def _scheme(registry: str, insecure: Collection[str] = ()) -> str:
    """Plain HTTP for loopback (as Docker does by default) and for the registries named insecure
    (`SLIPWAY_REGISTRY_INSECURE`: e.g. an in-cluster registry Service without TLS)."""
    loopback = registry.rsplit(":", 1)[0] in ("localhost", "127.0.0.1", "[::1]")
    return "http" if loopback or registry in insecure else "https"


def unused_images(
    collected: Iterable[Revision], remaining: Iterable[Revision], *, registry: str
) -> list[str]:
    """Pure: images of garbage-collected revisions that may be deleted from the registry.

    Only what Slipway built and pushed to its own registry (a revision with a build, under
    `<registry>/<service>`); never an image a user deployed by reference, which is theirs. An
    image another revision still runs (a redeploy with new env keeps the digest) stays."""
    in_use = {_digest_of(r.image) for r in remaining}
    out: set[str] = set()
    for rev in collected:
        own = f"{names.image_repository(registry, rev.service)}@"
        if rev.build_id and rev.image.startswith(own) and _digest_of(rev.image) not in in_use:
            out.add(rev.image)
    return sorted(out)


def _digest_of(image: str) -> str:
    return image.rpartition("@")[2]


def _manifest_url(ref: ImageRef, at: str, insecure: Collection[str] = ()) -> str:
    """The manifest of `ref` at a tag or digest, on the registry's v2 API."""
    return f"{_scheme(ref.registry, insecure)}://{ref.registry}/v2/{ref.repository}/manifests/{at}"


def _blobs_url(ref: ImageRef, tail: str, insecure: Collection[str] = ()) -> str:
    return f"{_scheme(ref.registry, insecure)}://{ref.registry}/v2/{ref.repository}/blobs/{tail}"


def _chunks(source: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := source.read(size):
        yield chunk


class RegistryClient:
    def __init__(self, *, timeout_s: float = 10.0, insecure: Collection[str] = ()) -> None:
        # `insecure`: registries (host[:port]) spoken to over plain HTTP besides loopback.
        self._insecure = frozenset(insecure)
        # One client for every request: a client per request builds a TLS context each time
        # (~10 ms idle, 0.1 s on a busy host), paid by every deploy that deletes an old image.
        # httpx clients are thread-safe; its pool keeps the registry's connection open.
        self._http = httpx.Client(timeout=timeout_s)

    # A short-lived client (a CLI command, a cleanup) closes its connections when done:
    # `with RegistryClient() as registry: ...`; the platform's own lives as long as it does.
    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def resolve(self, reference: str) -> str:
        """Return the digest-pinned reference, or raise NotFound / Unavailable."""
        ref = parse(reference)
        url = _manifest_url(ref, ref.digest or ref.tag, self._insecure)
        resp = self._send("HEAD", url, ref, headers={"Accept": MANIFEST_TYPES})
        if resp.status_code == 404:
            raise NotFound(
                f"image {reference} not found in registry {ref.registry}: push it first "
                f"(docker push {ref}) or check the name and tag"
            )
        if resp.status_code == 401:
            raise InvalidInput(
                f"registry {ref.registry} requires credentials for {ref.repository}: "
                "registry authentication is not supported yet"
            )
        if resp.status_code >= 400:
            raise Unavailable(f"registry {ref.registry} answered {resp.status_code} for {url}")
        digest = resp.headers.get("Docker-Content-Digest", "") or ref.digest
        if not _DIGEST.fullmatch(digest):
            raise Unavailable(f"registry {ref.registry} gave no digest for {reference}")
        return ref.pinned(digest)

    def delete(self, pinned: str) -> bool:
        """Delete a manifest by digest (its tags go with it); False if it was already gone.

        This only unlinks: the layers' space comes back when the registry's garbage collection
        runs (./scripts/up runs it before it starts Slipway's registry)."""
        ref = parse(pinned)
        if not ref.digest:
            raise InvalidInput(f"{pinned}: only a digest-pinned image can be deleted")
        resp = self._send("DELETE", _manifest_url(ref, ref.digest, self._insecure), ref)
        if resp.status_code == 404:
            return False
        if resp.status_code == 405:
            raise Unavailable(
                f"registry {ref.registry} does not allow deletes: set storage.delete.enabled "
                "in its configuration (./scripts/up's registry has it)"
            )
        if resp.status_code >= 400:
            raise Unavailable(f"registry {ref.registry} answered {resp.status_code} to DELETE")
        return True

    def tags(self, repository: str) -> list[str]:
        """The tags of `registry/repository` (`services delete` removes what they point at);
        none when the registry has no such repository."""
        ref = parse(f"{repository}:latest")
        scheme = _scheme(ref.registry, self._insecure)
        url = f"{scheme}://{ref.registry}/v2/{ref.repository}/tags/list"
        resp = self._send("GET", url, ref)
        if resp.status_code == 404:
            return []
        if resp.status_code >= 400:
            raise Unavailable(f"registry {ref.registry} answered {resp.status_code} for {url}")
        return [str(t) for t in resp.json().get("tags") or []]

    def manifest(self, ref: ImageRef, digest: str) -> tuple[str, bytes]:
        """The media type and exact bytes of the manifest `digest` in `ref`'s repository."""
        resp = self._send("GET", _manifest_url(ref, digest, self._insecure), ref,
                          headers={"Accept": MANIFEST_TYPES})  # fmt: skip
        if resp.status_code == 404:
            raise NotFound(f"image {ref.pinned(digest)} is no longer in registry {ref.registry}")
        self._check(resp, ref, "GET manifest")
        if "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
            raise Unavailable(f"registry {ref.registry} sent a manifest that is not {digest}")
        return resp.headers.get("Content-Type", "").split(";")[0].strip(), resp.content

    def read_blob(self, ref: ImageRef, digest: str, into: BinaryIO) -> int:
        """Copy blob `digest` into `into`, checking its sha256 as it is read; its size."""
        hashed, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", _blobs_url(ref, digest, self._insecure),
                                   follow_redirects=True) as resp:  # fmt: skip
                if resp.status_code == 404:
                    raise NotFound(f"blob {digest} of {ref.name} is missing from the registry")
                if resp.status_code >= 400:
                    resp.read()  # the error body, for the message
                self._check(resp, ref, "GET blob")
                for chunk in resp.iter_bytes(1 << 20):
                    hashed.update(chunk)
                    into.write(chunk)
                    size += len(chunk)
        except httpx.HTTPError as e:
            raise self._unreachable(ref, e) from e
        if "sha256:" + hashed.hexdigest() != digest:
            raise Unavailable(f"blob {digest} of {ref.name} read back with another digest")
        return size

    def has_blob(self, ref: ImageRef, digest: str) -> bool:
        resp = self._send("HEAD", _blobs_url(ref, digest, self._insecure), ref)
        if resp.status_code == 404:
            return False
        self._check(resp, ref, "HEAD blob")
        return True

    def push_blob(self, ref: ImageRef, digest: str, source: BinaryIO, *, size: int) -> None:
        """Monolithic upload: POST opens a session, one PUT ?digest= sends and commits it (the
        registry checks the digest itself)."""
        opened = self._send("POST", _blobs_url(ref, "uploads/", self._insecure), ref)
        self._check(opened, ref, "POST blob upload")
        location = str(opened.url.join(opened.headers.get("Location", "")))
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = self._http.put(f"{location}{sep}digest={digest}", content=_chunks(source),
                                  headers=headers)  # fmt: skip
        except httpx.HTTPError as e:
            raise self._unreachable(ref, e) from e
        self._check(resp, ref, f"PUT blob {digest}")

    def put_manifest(self, ref: ImageRef, at: str, *, media_type: str, body: bytes) -> None:
        """Store a manifest under a digest or a tag; its blobs (and children) must be there."""
        resp = self._send("PUT", _manifest_url(ref, at, self._insecure), ref,
                          headers={"Content-Type": media_type}, content=body)  # fmt: skip
        self._check(resp, ref, f"PUT manifest {at}")

    def _check(self, resp: httpx.Response, ref: ImageRef, what: str) -> None:
        if resp.status_code >= 400:
            detail = resp.text[:300].strip()
            raise Unavailable(f"registry {ref.registry} answered {resp.status_code} to {what} "
                              f"in {ref.repository}: {detail}".rstrip(": "))  # fmt: skip

    def _send(
        self,
        method: str,
        url: str,
        ref: ImageRef,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as e:
            raise self._unreachable(ref, e) from e

    @staticmethod
    def _unreachable(ref: ImageRef, e: httpx.HTTPError) -> Unavailable:
        return Unavailable(
            f"registry {ref.registry} is not reachable ({e.__class__.__name__}): "
            "start it with ./scripts/up or check the address"
        )

    def ping(self, registry: str) -> bool:
        try:
            resp = self._http.get(f"{_scheme(registry, self._insecure)}://{registry}/v2/")
        except httpx.HTTPError:
            return False
        return resp.status_code in (200, 401)
