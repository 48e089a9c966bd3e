"""Build times per build template: the first build, and the rebuild after a one-line app change.

Needs a running Slipway (`./scripts/up`, or SLIPWAY_URL/SLIPWAY_TOKEN). The first build is made
cold for the dependency layer (a fresh marker in the dependency manifest), so it installs from
PyPI/npm; the rebuild changes one line of application code and should reuse that layer. The
figure is rebuild/first. Build time is from the request to "Built and pushed" (build + push).

    .venv/bin/python bench/builds.py
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.build import sources
from pipeline.cli.client import Client

PY_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bench v1\\n"]
"""
NODE_APP = "const ms = require('ms');\nrequire('http').createServer((q, r) => " \
           "r.end('bench v1 ' + ms(60000) + '\\n')).listen(process.env.PORT);\n"  # fmt: skip


def python_app(folder: Path, marker: str) -> Callable[[], None]:
    (folder / "requirements.txt").write_text(f"# {marker}\nsix==1.16.0\n")
    (folder / "app.py").write_text(PY_APP)
    return lambda: (folder / "app.py").write_text(PY_APP.replace("v1", "v2"))


def node_app(folder: Path, marker: str) -> Callable[[], None]:
    package = {"name": "bench", "version": "1.0.0", "description": marker,
               "scripts": {"start": "node server.js"}, "dependencies": {"ms": "2.1.3"}}  # fmt: skip
    (folder / "package.json").write_text(json.dumps(package))
    (folder / "server.js").write_text(NODE_APP)
    return lambda: (folder / "server.js").write_text(NODE_APP.replace("v1", "v2"))


def static_app(folder: Path, marker: str) -> Callable[[], None]:
    (folder / "index.html").write_text(f"<!-- {marker} -->\nbench v1\n")
    return lambda: (folder / "index.html").write_text(f"<!-- {marker} -->\nbench v2\n")


def procfile_app(folder: Path, marker: str) -> Callable[[], None]:
    (folder / "Procfile").write_text(f"web: httpd -f -p $PORT -h /app/www  # {marker}\n")
    (folder / "www").mkdir(exist_ok=True)
    (folder / "www" / "index.html").write_text("bench v1\n")
    return lambda: (folder / "www" / "index.html").write_text("bench v2\n")


TEMPLATES: dict[str, tuple[Callable[[Path, str], Callable[[], None]], list[tuple[str, str]]]] = {
    "python": (python_app, []),
    "node": (node_app, []),
    "static": (static_app, []),
    "procfile": (procfile_app, [("base_image", "slipway/busybox:1.35-bookworm")]),
}


def build_seconds(
    client: Client, service: str, folder: Path, params: list[tuple[str, str]]
) -> float:
    archive = sources.pack(folder)
    started = time.monotonic()
    built = 0.0
    for event in client.stream(
        "POST", f"/v1/services/{service}/deployments", params=params, content=archive,
        headers={"Content-Type": "application/gzip"},
    ):  # fmt: skip
        if event.get("event") == "stage" and str(event.get("text", "")).startswith("Built"):
            built = time.monotonic() - started
        if event.get("event") == "error":
            raise SystemExit(f"{service}: {event['message']}\n{event.get('log_tail', '')}")
    return built


def main() -> int:
    client = Client.from_env()
    marker = secrets.token_hex(4)
    rows = []
    for name, (make, params) in TEMPLATES.items():
        service = f"bench-{name}"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            change = make(folder, marker)
            first = build_seconds(client, service, folder, params)
            change()
            rebuild = build_seconds(client, service, folder, params)
        client.request("DELETE", f"/v1/services/{service}")
        rows.append((name, first, rebuild))
        print(f"{name:9} first {first:6.2f} s   one-line rebuild {rebuild:6.2f} s   "
              f"ratio {rebuild / first:5.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
