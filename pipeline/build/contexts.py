"""Build contexts: the few files read from a source archive, and the folder a build runs in.

Where it sits: `dockerfile` reads the Dockerfile (and, for templates, the manifests the template
looks at) with `read_files`, then `unpack`s the archive into a private temporary folder that the
`docker` CLI sends to BuildKit as the build context (see `buildkit` for why a folder).

Sources are hostile. The archive was checked by `sources.inspect` (no absolute or `..` names, no
devices, bounded size and count); unpacking uses tarfile's `data` filter on top, so no member lands
outside the folder or through a link that leads out of it, and no link points out of it either.
The Dockerfile the build uses is always Slipway's own copy, written outside the context: the CLI
never reads a file the source chose through a symlink. A `.dockerignore` that is a symlink counts
as absent (as `sources.pack` treats it), since the CLI would read it through the link.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.errors import InvalidSource

DOCKERIGNORE = ".dockerignore"


def read_files(source: bytes, names: Sequence[str], *, limit: int = 1024 * 1024) -> dict[str, str]:
    """Small text files from the archive (for detect rules and rendering)."""
    wanted = set(names)
    found: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(source), mode="r:*") as tar:
        for member in tar.getmembers():
            name = _norm(member.name)
            if name in wanted and member.isfile() and member.size <= limit:
                fh = tar.extractfile(member)
                if fh is not None:
                    found[name] = fh.read().decode("utf-8", errors="replace")
    return found


def unpack(source: bytes, into: Path) -> Path:
    """The archive unpacked into `into` (created, must not exist); returns it."""
    into.mkdir(mode=0o700)
    try:
        with tarfile.open(fileobj=io.BytesIO(source), mode="r:*") as tar:
            listed = {_norm(m.name) for m in tar.getmembers() if m.isdir()}
            tar.extractall(into, filter="data")
    except tarfile.FilterError as e:
        raise InvalidSource(
            f"source archive entry is refused: {e} (links must stay inside the source folder)"
        ) from e
    _open_implicit_folders(into, listed=listed)
    ignore = into / DOCKERIGNORE
    if ignore.is_symlink():
        ignore.unlink()
    return into


def _open_implicit_folders(root: Path, *, listed: set[str]) -> None:
    """Folders the archive only implies (`slipway deploy --source` lists files, not folders) are
    made by tarfile under the process umask, 077 in the control plane: copied into an image they
    would be unreadable by the app's user. They get 0755, what git or a plain `mkdir` would
    give; folders the archive lists keep their own mode. `root` itself stays private."""
    for folder in root.rglob("*"):
        implicit = folder.relative_to(root).as_posix() not in listed
        if implicit and folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)


def write_dockerfile(text: str, *, folder: Path) -> Path:
    """The Dockerfile the build reads, alone in its own folder outside the context."""
    folder.mkdir(mode=0o700)
    path = folder / "Dockerfile"
    path.write_text(text)
    return path


def _norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))
