"""Where pushed source lives: one bare git repository per service in the data dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dulwich.config import ConfigFile
from dulwich.object_store import DiskObjectStore
from dulwich.pack import Pack
from dulwich.refs import Ref
from dulwich.repo import Repo

from pipeline.core import names
from pipeline.store import permissions


class PrivatePacks(DiskObjectStore):
    """dulwich makes every pack it receives 0444, as git does, whatever the umask; in the data
    dir a pushed pack is its owner's alone, like every other file (`store.permissions`)."""

    def add_thin_pack(
        self,
        read_all: Callable[[int], bytes],
        read_some: Callable[[int], bytes] | None,
        progress: Callable[..., None] | None = None,
        *,
        max_input_size: int | None = None,
    ) -> Pack:
        pack = super().add_thin_pack(read_all, read_some, progress, max_input_size=max_input_size)
        permissions.tighten(Path(self.pack_dir))
        return pack


class Repositories:
    def __init__(self, root: Path) -> None:
        self._root = root

    def path(self, service: str) -> Path:
        return self._root / f"{names.validate_service_name(service)}.git"

    def open(self, service: str, *, create: bool) -> Repo | None:
        path = self.path(service)
        if (path / "HEAD").exists():
            return _open(path)
        if not create:
            return None
        path.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(path))
        # `git clone` of the service checks out its deploy branch.
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
        repo.close()
        return _open(path)


def _open(path: Path) -> Repo:
    config = ConfigFile.from_path(str(path / "config"))
    objects = PrivatePacks.from_config(str(path / "objects"), config)
    return Repo(str(path), object_store=objects)
