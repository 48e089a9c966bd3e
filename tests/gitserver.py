"""A git smart-HTTP server over a folder of repositories, for tests that clone by URL.

It stands for GitHub (or any git host), which cannot be reached from these machines: the same
smart HTTP protocol dulwich speaks to github.com, served by dulwich's own WSGI server on a free
loopback port. Slipway only clones https by default; the test platforms allow `http` for this
server (SLIPWAY_GIT_SCHEMES=https,http), the one difference from a real host.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dulwich.repo import Repo
from dulwich.server import Backend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain


class _Folder(Backend):
    """`/<owner>/<repo>` under a folder (dulwich's FileSystemBackend wants paths relative to
    its root, while smart HTTP hands it the URL path)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def open_repository(self, path: str | bytes) -> Repo:
        text = path.decode() if isinstance(path, bytes) else path  # upload-pack hands bytes
        return Repo(str(self._root / text.strip("/")))


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """Serve `root/<owner>/<repo>` (working trees or bare repositories) at the yielded base URL."""
    app = make_wsgi_chain(_Folder(root))
    server = make_server(
        "127.0.0.1", 0, app,
        handler_class=WSGIRequestHandlerLogger, server_class=WSGIServerLogger,
    )  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
