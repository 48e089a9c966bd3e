"""The metadata server's connections, bounded: no caller can hold the server's threads.

The server (`identity.metadata`) gives each connection a thread. Without bounds an instance that
opens connections and sends nothing, or a byte at a time, holds a thread each for as long as it
likes (20 half-open connections from one container held 20 threads past 78 s), and every other
instance waits for its token behind them. So:

- a request must arrive whole, request line and headers, within `Limits.request_s` of the server
  starting to wait for it. It is a deadline on all the reads of that request, not a timeout per
  read that a byte now and then would renew; an idle keep-alive connection ends the same way.
- one peer address holds at most `Limits.per_peer` connections and all peers together at most
  `Limits.connections`. A connection over either cap is closed as it is accepted, before a thread
  exists for it. A caller is its source address (`identity.callers`), so the per-peer cap is a cap
  per instance: one instance's flood leaves the others' share untouched.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


@dataclass(frozen=True, kw_only=True)
class Limits:
    # google-auth gives the metadata server 3 s per request; a real caller sends its request at
    # once, so 10 s only ever cuts off a caller that is not sending one.
    request_s: float = 10.0
    # A token request takes milliseconds; 16 at once is more than a busy instance needs.
    per_peer: int = 16
    connections: int = 256


class _DeadlineReads(io.RawIOBase):
    """A connection's reads, each allowed only what is left until `deadline`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = float("inf")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class BoundedHandler(BaseHTTPRequestHandler):
    """A request handler whose reads of each request share one deadline (`Limits.request_s`)."""

    server: BoundedServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket file: replaced by one that keeps the deadline
        self._reads = _DeadlineReads(self.connection)
        self.rfile = io.BufferedReader(self._reads)

    def handle_one_request(self) -> None:
        # The base class answers a TimeoutError while reading by closing the connection.
        self._reads.deadline = time.monotonic() + self.server.limits.request_s
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # The request is in: the answer gets a timeout of its own, not what the reads left.
        self.connection.settimeout(self.server.limits.request_s)
        return parsed


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, with connections capped per peer address and in all."""

    daemon_threads = True
    request_queue_size = 128  # the accept loop is quick; the backlog only absorbs bursts

    def __init__(
        self, address: tuple[str, int], handler: type[BoundedHandler], *, limits: Limits
    ) -> None:
        super().__init__(address, handler)
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[Any, str] = {}  # accepted connections -> peer address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Runs in the accept loop, before a thread is made; False closes the connection."""
        peer = str(client_address[0])
        with self._lock:
            if len(self._open) >= self.limits.connections:
                return False
            if Counter(self._open.values())[peer] >= self.limits.per_peer:
                return False
            self._open[request] = peer
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def open_connections(self) -> dict[str, int]:
        """Connections held per peer address right now."""
        with self._lock:
            return dict(Counter(self._open.values()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A peer that resets or vanishes is not the server's error: no traceback for it.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)
