"""A stand-in for the route a real cluster's pods have to its registry (see
tests/knative/test_chart_install.py): the local registry listens on the host's loopback, which no
pod reaches, so the control plane in the cluster is given `HTTP_PROXY` pointing here, a forward
proxy on the pod bridge's gateway address that passes requests for that registry, and nothing
else, to it."""

from __future__ import annotations

import http.client
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

BRIDGE = "slipcni0"  # scripts/cluster's pod bridge; its address is the pods' gateway


class RegistryProxy:
    """An HTTP forward proxy that passes requests for `registry` only (see the module docstring)."""

    def __init__(self, *, bind: str, registry: str) -> None:
        self.registry = registry
        self.forwarded: list[str] = []
        self.server = ThreadingHTTPServer((bind, 0), self._handler())
        self.url = f"http://{bind}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RegistryProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _forward(self) -> None:
                url = urlsplit(self.path)
                if url.scheme != "http" or url.netloc != proxy.registry:
                    self.send_error(403, f"this proxy forwards to {proxy.registry} only")
                    return
                proxy.forwarded.append(f"{self.command} {url.path}")
                conn = http.client.HTTPConnection(proxy.registry, timeout=30)
                hop = ("host", "proxy-connection", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                target = url.path + (f"?{url.query}" if url.query else "")
                conn.request(self.command, target, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                conn.close()

            do_GET = do_HEAD = _forward

        return Handler


def bridge_address() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", BRIDGE], capture_output=True,
                         text=True, check=False).stdout.split()  # fmt: skip
    assert "inet" in out, f"no IPv4 address on the pod bridge {BRIDGE} (is the cluster up?)"
    return out[out.index("inet") + 1].split("/")[0]
