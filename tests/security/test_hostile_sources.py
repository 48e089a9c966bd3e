"""Hostile sources: what a pushed tree or an upload can make the server read or unpack.

The archive cases go through the real API of a running control plane (the bytes a client would
send); the ignore-file cases run `sources.pack`, the code the server runs on a pushed tree, on a
real folder with real symlinks.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from pipeline.build import sources
from pipeline.core.errors import InvalidSource
from tests.integration.conftest import Slipway


def _tar(members: list[tarfile.TarInfo], *, data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO((data or {}).get(m.name, b"")) if m.size else None)
    return buf.getvalue()


def _member(name: str, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _header_only(name: str, claimed: int) -> bytes:
    """A gzip tar whose one header claims `claimed` bytes that never follow: the size check
    must refuse it from the header, before reading (or unpacking) any data."""
    return gzip.compress(_member(name, claimed).tobuf(format=tarfile.GNU_FORMAT))


def test_an_ignore_file_linked_to_a_host_file_is_not_read(tmp_path: Path) -> None:
    host_file = tmp_path / "host-only"
    host_file.write_text("app.py\n")  # would exclude app.py if the link were followed
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "app.py").write_text("print('hi')\n")
    (tree / ".dockerignore").symlink_to(host_file)
    (tree / ".gitignore").symlink_to("/etc/hostname")

    assert "app.py" in list(sources.included_files(tree))


def test_a_huge_ignore_file_is_refused_before_it_is_matched(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("".join(f"file-{i}\n" for i in range(200_000)))

    with pytest.raises(InvalidSource, match=r"\.gitignore is \d+ KiB, over the 256 KiB limit"):
        sources.pack(tmp_path)


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        pytest.param(_tar([_member(f"f{i}") for i in range(sources.MAX_MEMBERS + 1)]),
                     "over 50000 entries", id="member-count-bomb"),
        pytest.param(_header_only("big.bin", sources.MAX_UNPACKED_BYTES + 1),
                     "unpacks to over 1024 MiB", id="unpacked-size-bomb"),
        pytest.param(_tar([_member("../escape", 1)], data={"../escape": b"x"}),
                     "escapes the source folder", id="path-escape"),
        pytest.param(b"neither gzip nor tar " * 64, "not a readable tar archive", id="garbage"),
    ],
)  # fmt: skip
def test_archive_bombs_are_refused(slipway: Slipway, archive: bytes, reason: str) -> None:
    answer = httpx.post(
        f"http://127.0.0.1:{slipway.api_port}/v1/services/bomb/deployments",
        content=archive,
        headers={"Authorization": f"Bearer {slipway.token}", "Content-Type": "application/gzip"},
        timeout=120,
    )

    (event,) = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
    assert event["status"] == 400 and reason in event["message"], event
    assert not (slipway.data_dir / "sources").exists() or not any(
        (slipway.data_dir / "sources").iterdir()
    ), "a refused archive was kept"
