"""Source archives: the CLI packs a folder, the control plane checks and keeps what it received.

`pack` honours `.dockerignore` and `.gitignore` (git's own matching rules) and never ships `.git/`.
`inspect` runs on the server before anything is built: a source that is not a gzip tar, escapes
its root, or has nothing to build from is refused with the reason and the fix.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from pipeline.core.errors import InvalidSource

IGNORE_FILES = (".gitignore", ".dockerignore")
ALWAYS_IGNORED = (".git/",)
MAX_SOURCE_BYTES = 512 * 1024 * 1024


def ignore_spec(root: Path) -> pathspec.GitIgnoreSpec:
    lines: list[str] = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        f = root / name
        if f.is_file():
            lines.extend(f.read_text(errors="replace").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines)


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
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidSource(
            f"source upload is not a readable tar archive ({e}): send a gzip tar of the folder, "
            "as `slipway deploy --source DIR` does"
        ) from e
    files: list[str] = []
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts:
            raise InvalidSource(f"source archive entry {m.name!r} escapes the source folder")
        if m.isdev():
            raise InvalidSource(f"source archive entry {m.name!r} is a device file")
        if m.isfile():
            files.append(str(PurePosixPath(*[x for x in p.parts if x != "."])))
    return SourceInfo(files=tuple(sorted(files)))
