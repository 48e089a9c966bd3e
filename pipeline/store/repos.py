"""Where pushed source lives: one bare git repository per service in the data dir."""

from __future__ import annotations

from pathlib import Path

from dulwich.refs import Ref
from dulwich.repo import Repo

from pipeline.core import names


class Repositories:
    def __init__(self, root: Path) -> None:
        self._root = root

    def path(self, service: str) -> Path:
        return self._root / f"{names.validate_service_name(service)}.git"

    def open(self, service: str, *, create: bool) -> Repo | None:
        path = self.path(service)
        if (path / "HEAD").exists():
            return Repo(str(path))
        if not create:
            return None
        path.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(path))
        # `git clone` of the service checks out its deploy branch.
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
        return repo
