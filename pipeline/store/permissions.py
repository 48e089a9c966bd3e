"""The data dir is its owner's alone: folders 0700, files 0600 (owner bits only).

The data dir holds what a local user must not read: the database (with `--env` values, also in
SQLite's WAL), uploaded sources, pushed repositories, build and daemon logs, the secret and
signing keys, HAProxy's config and sockets. The composition root calls `private_data_dir` before
anything is written: the process umask becomes 077, so every file the control plane and its
children (HAProxy, the resolver, the metadata server) create is owner-only, and whatever an older
Slipway or another tool left readable is tightened. A file that keeps its permission bits on
purpose (git packs, see `store.repos`) is tightened with `tighten` as it is written.

Below `store` so the store's own writers use it; the composition root (`app.platform`) calls it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

UMASK = 0o077  # group and other: no bits


def private_data_dir(data_dir: Path) -> list[str]:
    """Set the process umask, make the data dir if missing and tighten what is in it; returns
    what could not be tightened (owned by another user), for a warning."""
    os.umask(UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return tighten(data_dir)


def tighten(root: Path) -> list[str]:
    """Drop the group and other bits of `root` and of everything below it. Symlinks are neither
    followed nor changed (chmod would change their target, which may be outside)."""
    refused: list[str] = []
    _owner_only(root, refused)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            _owner_only(Path(folder, name), refused)
    return refused


def _owner_only(path: Path, refused: list[str]) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & UMASK:
            return
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~UMASK)
    except FileNotFoundError:
        return  # removed while the walk went on (a finished build's files)
    except PermissionError:
        refused.append(str(path))
