"""The resolver instances use: `<anything>.<domain>` is Slipway's internal listener.

Inside a container `hello.localhost` must not mean the container itself: instances are started
with this server as their DNS (Docker's embedded resolver forwards to it), and it answers every
name under Slipway's domain with the bridge gateway address, where HAProxy's internal listener
serves all services — cluster-local ones included. Other names are forwarded to the host's own
resolvers. It runs as its own small process, like HAProxy, so instances keep resolving while the
control plane restarts.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path

from dnslib import QTYPE, RR, A, DNSRecord

DEFAULT_UPSTREAM = ("127.0.0.53", 53)


def answer(query: bytes, *, domain: str, address: str) -> bytes | None:
    """Pure: the reply for a query under `domain`, or None if it is someone else's name."""
    request = DNSRecord.parse(query)
    name = str(request.q.qname).rstrip(".").lower()
    if name != domain and not name.endswith("." + domain):
        return None
    reply = request.reply()
    if request.q.qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=5))
    # AAAA and others: an empty NOERROR answer, so clients fall back to the A record.
    return bytes(reply.pack())


def upstream_from(resolv_conf: str) -> tuple[str, int]:
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1], 53
    return DEFAULT_UPSTREAM


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        data, sock = self.request
        try:
            reply = answer(data, domain=self.server.domain, address=self.server.address)
        except Exception:  # not DNS: drop it, as a resolver would
            return
        if reply is None:
            reply = self.server.forward(data)
        if reply:
            sock.sendto(reply, self.client_address)


class _Server(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, bind: tuple[str, int], *, domain: str, address: str, upstream: tuple[str, int]
    ) -> None:
        super().__init__(bind, _Handler)
        self.domain = domain
        self.address = address
        self.upstream = upstream

    def forward(self, data: bytes) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            try:
                s.sendto(data, self.upstream)
                return s.recv(4096)
            except OSError:
                return None


def serve(
    *, bind: str, port: int, domain: str, address: str, resolv_conf: Path = Path("/etc/resolv.conf")
) -> None:
    upstream = upstream_from(resolv_conf.read_text() if resolv_conf.exists() else "")
    with _Server((bind, port), domain=domain, address=address, upstream=upstream) as server:
        server.serve_forever()


def start_in_thread(*, bind: str, port: int, domain: str, address: str) -> _Server:
    """For tests: the same server on a thread."""
    server = _Server((bind, port), domain=domain, address=address, upstream=DEFAULT_UPSTREAM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
