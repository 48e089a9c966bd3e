"""Images copied byte for byte: the manifest walk (which digests a manifest refers to), the
archive layout `write_images` produces, and `push_staged` bringing it back into an empty
registry with the same digests and tags.

The store's part (which images a backup hands the writer, where a restore stages them) runs on
a real SQLite data dir. The registry here is an in-process one (a dict of blobs and manifests,
checking digests the way distribution does); tests/integration/test_backup.py runs the same code
against the real registry and a restored platform.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from pipeline.build import imagecopy
from pipeline.build.imagecopy import References, blob_path, push_staged, references, write_images
from pipeline.build.registry import ImageRef, parse
from pipeline.core.errors import InvalidInput, NotFound
from pipeline.core.settings import Settings
from pipeline.store import backups, db
from pipeline.store.state import Store

REGISTRY = "127.0.0.1:5000"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_IMAGE = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_IMAGE = "application/vnd.docker.distribution.manifest.v2+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


D1, D2, D3 = (digest(bytes([n])) for n in (1, 2, 3))


class MemoryRegistry:
    """Blobs and manifests per repository; refuses what the real registry refuses."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # by digest and by tag
        self.blob_reads = 0

    def manifest(self, ref: ImageRef, at: str) -> tuple[str, bytes]:
        try:
            return self.manifests[(ref.repository, at)]
        except KeyError:
            raise NotFound(f"{ref.pinned(at)} not found") from None

    def read_blob(self, ref: ImageRef, digest: str, into: BinaryIO) -> int:
        self.blob_reads += 1
        data = self.blobs[(ref.repository, digest)]
        into.write(data)
        return len(data)

    def tags(self, repository: str) -> list[str]:
        repo = parse(f"{repository}:latest").repository
        return sorted(at for r, at in self.manifests if r == repo and ":" not in at)

    def resolve(self, reference: str) -> str:
        ref = parse(reference)
        return ref.pinned(digest(self.manifest(ref, ref.tag)[1]))

    def has_blob(self, ref: ImageRef, digest: str) -> bool:
        return (ref.repository, digest) in self.blobs

    def push_blob(self, ref: ImageRef, at: str, source: BinaryIO, *, size: int) -> None:
        data = source.read()
        assert len(data) == size and digest(data) == at, "DIGEST_INVALID"
        self.blobs[(ref.repository, at)] = data

    def put_manifest(self, ref: ImageRef, at: str, *, media_type: str, body: bytes) -> None:
        refs = references(media_type, body)
        for needed in refs.blobs:
            assert (ref.repository, needed) in self.blobs, f"BLOB_UNKNOWN {needed}"
        for child in refs.children:
            assert (ref.repository, child) in self.manifests, f"MANIFEST_UNKNOWN {child}"
        self.manifests[(ref.repository, at)] = (media_type, body)
        self.manifests[(ref.repository, digest(body))] = (media_type, body)

    # building content for a test
    def image(self, repo: str, layers: list[bytes], *, media_type: str = DOCKER_IMAGE) -> str:
        config = json.dumps({"rootfs": {"diff_ids": [digest(b) for b in layers]}}).encode()
        for blob in (config, *layers):
            self.blobs[(repo, digest(blob))] = blob
        body = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest(b), "size": len(b)} for b in layers],
        }).encode()  # fmt: skip
        self.put_manifest(parse(f"{REGISTRY}/{repo}:x"), digest(body),
                          media_type=media_type, body=body)  # fmt: skip
        return digest(body)

    def index(self, repo: str, children: list[str]) -> str:
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_IMAGE, "digest": d, "size": 1} for d in children],
        }).encode()  # fmt: skip
        self.put_manifest(parse(f"{REGISTRY}/{repo}:x"), digest(body),
                          media_type=OCI_INDEX, body=body)  # fmt: skip
        return digest(body)

    def tag(self, repo: str, tag: str, at: str) -> None:
        self.manifests[(repo, tag)] = self.manifests[(repo, at)]

    def content(self) -> dict[tuple[str, str], bytes]:
        """Everything stored by digest: what a restore must bring back identically."""
        out = {k: v for k, v in self.blobs.items()}
        out.update({k: v[1] for k, v in self.manifests.items() if k[1].startswith("sha256:")})
        return out


def _doc(**fields: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, **fields}).encode()


def _desc(d: str) -> dict[str, Any]:
    return {"digest": d, "size": 1, "mediaType": "x"}


@pytest.mark.parametrize(
    ("media_type", "body", "expected"),
    [
        pytest.param(DOCKER_IMAGE, _doc(config=_desc(D1), layers=[_desc(D2), _desc(D3)]),
                     References(media_type=DOCKER_IMAGE, blobs=(D1, D2, D3)), id="docker-schema2"),
        pytest.param(OCI_IMAGE, _doc(config=_desc(D1), layers=[_desc(D2)]),
                     References(media_type=OCI_IMAGE, blobs=(D1, D2)), id="oci-manifest"),
        pytest.param(OCI_IMAGE, _doc(config=_desc(D1), layers=[_desc(D2), _desc(D2)]),
                     References(media_type=OCI_IMAGE, blobs=(D1, D2)),
                     id="a-layer-twice-is-one-blob"),
        pytest.param(OCI_INDEX, _doc(manifests=[_desc(D1), _desc(D2)]),
                     References(media_type=OCI_INDEX, children=(D1, D2)), id="oci-index"),
        pytest.param(DOCKER_LIST, _doc(manifests=[_desc(D3)]),
                     References(media_type=DOCKER_LIST, children=(D3,)),
                     id="docker-manifest-list"),
        pytest.param("application/json", _doc(mediaType=OCI_INDEX, manifests=[_desc(D1)]),
                     References(media_type=OCI_INDEX, children=(D1,)),
                     id="type-declared-in-the-body"),
    ],
)  # fmt: skip
def test_references_name_the_children_of_an_index_and_the_blobs_of_an_image(
    media_type: str, body: bytes, expected: References
) -> None:
    assert references(media_type, body) == expected


@pytest.mark.parametrize(
    ("media_type", "body", "message"),
    [
        pytest.param("application/vnd.docker.distribution.manifest.v1+prettyjws",
                     _doc(fsLayers=[]), "is not one Slipway copies", id="schema1"),
        pytest.param(OCI_IMAGE, b"{not json", "is not JSON", id="not-json"),
        pytest.param(OCI_IMAGE, _doc(config=_desc("sha256:../../etc/passwd"), layers=[]),
                     "is not a sha256 digest", id="digest-as-a-path"),
        pytest.param(OCI_INDEX, _doc(manifests=[{"size": 1}]), "is not a sha256 digest",
                     id="descriptor-without-digest"),
    ],
)  # fmt: skip
def test_references_refuse_what_cannot_be_copied(
    media_type: str, body: bytes, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        references(media_type, body)


def _backup(source: MemoryRegistry, images: list[str], tmp: Path) -> tuple[Path, Any]:
    archive = tmp / "images.tar"
    with tarfile.open(archive, "w") as tar:
        summary = write_images(tar, images=images, registry=REGISTRY, client=source,
                               scratch=tmp)  # fmt: skip
    return archive, summary


def _seeded() -> tuple[MemoryRegistry, dict[str, str]]:
    reg = MemoryRegistry()
    shared = b"base layer shared by every image"
    v1 = reg.image("kept/app", [shared, b"v1 files"])
    v2 = reg.image("kept/app", [shared, b"v2 files"], media_type=OCI_IMAGE)
    arm = reg.image("multi/app", [shared, b"arm files"], media_type=OCI_IMAGE)
    amd = reg.image("multi/app", [shared, b"amd files"], media_type=OCI_IMAGE)
    idx = reg.index("multi/app", [arm, amd])
    reg.tag("kept/app", "1", v1)
    reg.tag("kept/app", "2", v2)
    reg.tag("kept/app", "other", reg.image("kept/app", [b"a revision already collected"]))
    return reg, {"v1": v1, "v2": v2, "arm": arm, "amd": amd, "index": idx}


def test_the_archive_holds_each_blob_once_and_lists_children_before_their_index(
    tmp_path: Path,
) -> None:
    reg, d = _seeded()
    images = [f"{REGISTRY}/kept/app@{d['v1']}", f"{REGISTRY}/kept/app@{d['v2']}",
              f"{REGISTRY}/multi/app@{d['index']}", f"{REGISTRY}/kept/app@{d['v1']}"]  # fmt: skip
    archive, summary = _backup(reg, images, tmp_path)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        listing = json.loads(tar.extractfile("images/manifests.json").read())  # type: ignore[union-attr]
        blobs = {n: tar.extractfile(n).read() for n in names if "/blobs/" in n}  # type: ignore[union-attr]
    assert len(names) == len(set(names)), "a blob was written twice"
    for name, data in blobs.items():
        assert name == f"images/{blob_path(digest(data))}", "a blob is not stored at its digest"
    order = [(e["repository"], e["digest"]) for e in listing["manifests"]]
    assert order.index(("multi/app", d["arm"])) < order.index(("multi/app", d["index"]))
    assert order.index(("multi/app", d["amd"])) < order.index(("multi/app", d["index"]))
    tags = {e["digest"]: e["tags"] for e in listing["manifests"]}
    assert tags[d["v1"]] == ["1"] and tags[d["v2"]] == ["2"], "tags on copied images are kept"
    assert listing["registry"] == REGISTRY
    # Only what the pinned images need: the collected revision's layer stays out.
    assert digest(b"a revision already collected") not in {digest(b) for b in blobs.values()}
    assert sorted(summary.images) == sorted(set(images))
    assert summary.blobs == len(blobs)
    assert summary.size == sum(len(b) for b in blobs.values())
    assert reg.blob_reads == summary.blobs - len(listing["manifests"]), "a blob read twice"


def test_images_outside_the_registry_are_skipped_and_vanished_ones_reported(
    tmp_path: Path,
) -> None:
    reg, d = _seeded()
    elsewhere = f"registry.example.com/team/app@{d['v1']}"
    gone = f"{REGISTRY}/kept/app@{D3}"
    _, summary = _backup(reg, [elsewhere, gone, f"{REGISTRY}/kept/app@{d['v1']}"], tmp_path)
    assert summary.skipped == [elsewhere]
    assert summary.missing == [gone]
    assert summary.images == [f"{REGISTRY}/kept/app@{d['v1']}"]


def _staged(archive: Path, tmp: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "out", filter="data")
    return tmp / "out" / imagecopy.ROOT


def test_a_staged_copy_pushed_to_an_empty_registry_has_the_same_digests_and_tags(
    tmp_path: Path,
) -> None:
    reg, d = _seeded()
    pinned = [f"{REGISTRY}/kept/app@{d['v1']}", f"{REGISTRY}/kept/app@{d['v2']}",
              f"{REGISTRY}/multi/app@{d['index']}"]  # fmt: skip
    archive, _ = _backup(reg, pinned, tmp_path)
    staged = _staged(archive, tmp_path)
    fresh = MemoryRegistry()

    summary = push_staged(staged, registry=REGISTRY, client=fresh)

    collected = _parts(reg, "kept/app", digest(reg.manifests[("kept/app", "other")][1]))
    assert fresh.content() == {k: v for k, v in reg.content().items() if k not in collected}
    for tag, at in (("1", d["v1"]), ("2", d["v2"])):
        assert fresh.resolve(f"{REGISTRY}/kept/app:{tag}") == f"{REGISTRY}/kept/app@{at}"
    with pytest.raises(NotFound):
        fresh.resolve(f"{REGISTRY}/kept/app:other")
    # The shared base layer: sent once per repository, found there for the second image.
    assert summary.manifests == 5 and summary.present == 2
    assert not staged.exists(), "the staging folder stays after a complete push"


def _parts(reg: MemoryRegistry, repo: str, at: str) -> set[tuple[str, str]]:
    media_type, body = reg.manifests[(repo, at)]
    return {(repo, at), *((repo, b) for b in references(media_type, body).blobs)}


def test_pushing_again_sends_only_what_the_registry_lacks(tmp_path: Path) -> None:
    reg, d = _seeded()
    archive, _ = _backup(reg, [f"{REGISTRY}/kept/app@{d['v1']}"], tmp_path)
    summary = push_staged(_staged(archive, tmp_path), registry=REGISTRY, client=reg)
    assert summary.pushed == 0 and summary.present == 3 and summary.manifests == 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param("listing", "manifests.json is missing or damaged", id="listing-gone"),
        pytest.param("manifest", "does not match its digest", id="manifest-altered"),
        pytest.param("blob", "lack blob", id="blob-gone"),
    ],
)
def test_a_damaged_staging_folder_is_refused_with_the_fix(
    tmp_path: Path, damage: str, message: str
) -> None:
    reg, d = _seeded()
    archive, _ = _backup(reg, [f"{REGISTRY}/kept/app@{d['v1']}"], tmp_path)
    staged = _staged(archive, tmp_path)
    manifest = staged / blob_path(d["v1"])
    layer = staged / blob_path(digest(b"v1 files"))
    if damage == "listing":
        (staged / "manifests.json").write_text("{")
    elif damage == "manifest":
        manifest.write_bytes(manifest.read_bytes() + b" ")
    else:
        layer.unlink()
    with pytest.raises(InvalidInput, match=message) as e:
        push_staged(staged, registry=REGISTRY, client=MemoryRegistry())
    assert "restore" in e.value.message
    assert staged.exists(), "a failed push keeps the staged images for the next try"


def test_blob_paths_are_derived_from_the_digest_only() -> None:
    assert blob_path(D1) == f"blobs/sha256/{D1.removeprefix('sha256:')}"
    with pytest.raises(InvalidInput):
        blob_path("sha256:" + "0" * 63 + "/")


def _platform(data: Path) -> tuple[Settings, Store]:
    """A data dir with a real SQLite database holding one service."""
    settings = Settings(data_dir=data, registry=REGISTRY)
    data.mkdir()
    engine = db.make_engine(settings.db_url)
    db.migrate(engine)
    store = Store(db.session_factory(engine))
    store.put_service("kept", spec={"spec": {"template": {"spec": {"containers": [{}]}}}})
    return settings, store


def test_a_backup_hands_the_writer_every_pinned_image_and_a_restore_stages_them(
    tmp_path: Path,
) -> None:
    reg, d = _seeded()
    settings, store = _platform(tmp_path / "first")
    for n in ("v1", "v2", "v1"):  # a redeploy with new env keeps the digest
        store.create_revision("kept", image=f"{REGISTRY}/kept/app@{d[n]}",
                              template={}, template_hash=n)  # fmt: skip
    handed: list[tuple[str, ...]] = []

    def images(tar: tarfile.TarFile, *, images: tuple[str, ...], scratch: Path) -> None:
        handed.append(images)
        write_images(tar, images=images, registry=REGISTRY, client=reg, scratch=scratch)

    archive = tmp_path / "b.tar.gz"
    assert backups.backup(settings, archive, images=images).images
    assert handed == [tuple(sorted(f"{REGISTRY}/kept/app@{d[n]}" for n in ("v1", "v2")))]

    second = Settings(data_dir=tmp_path / "second", registry=REGISTRY)
    staged = backups.staged_images(second.data_dir)
    assert backups.restore(second, archive).images
    assert (staged / "manifests.json").is_file()
    assert (staged / blob_path(d["v2"])).read_bytes() == reg.manifests[("kept/app", d["v2"])][1]

    # An archive without images leaves no images of an earlier restore behind to be pushed.
    plain = tmp_path / "plain.tar.gz"
    assert not backups.backup(settings, plain).images
    backups.restore(second, plain, force=True)
    assert not staged.exists()
