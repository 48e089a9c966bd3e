"""Source archives: the CLI packs a folder, the control plane checks and keeps what it received.

`pack` honours `.dockerignore` and `.gitignore` (git's own matching rules) and never ships `.git/`.
`inspect` runs on the server before anything is built: a source that is not a gzip tar, escapes
its root, or has nothing to build from is refused with the reason and the fix.

Sources are hostile (a pushed tree, a webhook's repository): ignore files are never read through
a symlink (a `.dockerignore -> /etc/shadow` would make the server read a host file) and are
capped in size, and an archive's member count and unpacked size are bounded while it is read,
before any of it reaches a disk.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from pipeline.core.errors import InvalidSource

IGNORE_FILES = (".gitignore", ".dockerignore")
ALWAYS_IGNORED = (".git/",)
MAX_SOURCE_BYTES = 512 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_MEMBERS = 50_000
MAX_IGNORE_FILE_BYTES = 256 * 1024


def ignore_spec(root: Path) -> pathspec.GitIgnoreSpec:
    lines: list[str] = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        lines.extend(_ignore_lines(root / name))
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignore_lines(path: Path) -> list[str]:
    """An ignore file's lines; a symlink or anything but a regular file counts as absent."""
    if path.is_symlink() or not path.is_file():
        return []
    size = path.stat().st_size
    if size > MAX_IGNORE_FILE_BYTES:
        raise InvalidSource(
            f"{path.name} is {size // 1024} KiB, over the {MAX_IGNORE_FILE_BYTES // 1024} KiB "
            f"limit: keep it to patterns (a {path.name} lists patterns, not files)"
        )
    return path.read_text(errors="replace").splitlines()


def included_files(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the files (and symlinks) that go into the archive, sorted."""
    spec = ignore_spec(root)
    paths: list[str] = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if spec.match_file(rel):
            continue
        paths.append(rel)
    yield from sorted(paths)


def pack(root: Path) -> bytes:
    """A gzip tar of the folder, reproducible (sorted, zeroed mtimes and owners)."""
    if not root.is_dir():
        raise InvalidSource(f"{root} is not a folder: pass the folder that holds your app")
    buf = io.BytesIO()
    # gzip's header carries a timestamp: written with mtime 0, the same folder packs to the same
    # bytes (the Docker layer cache and the tests rely on it).
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for rel in included_files(root):
            info = tar.gettarinfo(str(root / rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with (root / rel).open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


@dataclass(frozen=True, kw_only=True)
class SourceInfo:
    files: tuple[str, ...]

    def has(self, path: str) -> bool:
        return path in self.files


def inspect(data: bytes) -> SourceInfo:
    """Check an uploaded archive without extracting it; returns the file list."""
    if len(data) > MAX_SOURCE_BYTES:
        raise InvalidSource(
            f"source archive is {len(data) // (1024 * 1024)} MiB, over the "
            f"{MAX_SOURCE_BYTES // (1024 * 1024)} MiB limit: add large files to .dockerignore"
        )
    files: list[str] = []
    for m in _members(data):
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts:
            raise InvalidSource(f"source archive entry {m.name!r} escapes the source folder")
        if m.isdev():
            raise InvalidSource(f"source archive entry {m.name!r} is a device file")
        if m.issparse():
            raise InvalidSource(f"source archive entry {m.name!r} is a sparse file")
        if m.isfile():
            files.append(str(PurePosixPath(*[x for x in p.parts if x != "."])))
    return SourceInfo(files=tuple(sorted(files)))


def _members(data: bytes) -> list[tarfile.TarInfo]:
    """The archive's members, read one header at a time and refused as soon as the count or the
    unpacked size passes its bound: a small upload must not expand into a full disk."""
    members: list[tarfile.TarInfo] = []
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                members.append(member)
                unpacked += max(member.size, 0)
                if len(members) > MAX_MEMBERS:
                    raise InvalidSource(
                        f"source archive has over {MAX_MEMBERS} entries: add generated or "
                        "vendored folders to .dockerignore"
                    )
                if unpacked > MAX_UNPACKED_BYTES:
                    raise InvalidSource(
                        f"source archive unpacks to over {MAX_UNPACKED_BYTES // (1024 * 1024)} "
                        "MiB: add large files to .dockerignore"
                    )
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise InvalidSource(
            f"source upload is not a readable tar archive ({e}): send a gzip tar of the folder, "
            "as `slipway deploy --source DIR` does"
        ) from e
    return members
