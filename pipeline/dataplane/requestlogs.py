"""Request logs: HAProxy writes one line per request into a ring of its own and forwards the
ring over a unix stream socket; the control plane keeps the last few lines per service in memory
for `slipway logs --requests`.

Where this sits: `render` adds `frontend_lines(site)` to both frontends; the composition root
(`app.platform`) starts `RequestLogs.listen`; `api.logs` reads and follows it.

Why this shape:
- The request path stays cheap and never waits. HAProxy formats about 80 bytes into an
  in-memory ring (`log uxst@...` makes one, 16 KiB); its forwarder sends the ring in batches.
  A control plane that is away or behind costs lines (HAProxy counts them as dropped), never a
  delayed request. A datagram socket was tried first: the same CPU in HAProxy, but one wake-up
  per request for the reader and, with Linux's default queue of 10 datagrams, a sixth of the
  lines lost under load; the stream keeps them all and the reader splits many per read.
- Nothing grows on disk: each service keeps its last `REQUESTS_KEPT` lines in a ring, and at
  most `SERVICES_KEPT` rings are kept. A control-plane restart starts empty; HAProxy reconnects to
  the same path and sends what its ring still holds. Each HAProxy worker (one per reload, while
  old ones finish) has its own connection.
- The line is `<ms since epoch> <backend> <server> <status> <active ms> <method> <path>`: the
  time is when the response ended (`date(0,ms)` at log time), the backend names the revision
  (`names.backend_name`), the server the instance (or the activator while one was started,
  read as `activator`: its server is named after the revision; or `<NOSRV>` when HAProxy
  answered itself). The path comes last and without the query string: the query can carry
  secrets, and a path may be long (the line is cut at `LINE_MAX`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import selectors
import socket
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pipeline.core import names
from pipeline.core.logs import get as get_log
from pipeline.dataplane.model import Site

SOCKET_NAME = "requests.sock"
LINE_MAX = 2048  # HAProxy's `len`; the accepted range is 80 to 65535
REQUESTS_KEPT = 1000  # per service
SERVICES_KEPT = 512  # the least recently written ring goes first
READ_MAX = 256 * 1024
# How long lines gather between reads. Waking the reader for each line cost HAProxy about 9 us of
# CPU per request on the test machine; reading every 50 ms, about 5 (docs/logs.md). A follower
# sees a request at most this much later.
GATHER_S = 0.05
LOG_FORMAT = "%[date(0,ms)] %b %s %ST %Ta %HM %HPO"
NO_SERVER = "<NOSRV>"
BACKEND_PREFIX = "rev-"  # names.backend_name
_REVISION = re.compile(r"^([a-z][-a-z0-9]*)-\d{5,}$")  # names.revision_name: <service>-00001


@dataclass(frozen=True, kw_only=True)
class RequestLine:
    time_ms: int  # when the response ended
    revision: str
    instance: str  # server name (`i-ab12`, `activator`), "" when HAProxy answered itself
    method: str
    path: str
    status: int  # -1: no response (the client went away first)
    duration_ms: int  # HAProxy's Ta: request received to response sent; -1 when cut short


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def frontend_lines(site: Site) -> list[str]:
    """The lines each frontend carries to log its requests here."""
    return [
        f"log uxst@{socket_path(site.run_dir)} len {LINE_MAX} format raw local0 info",
        f'log-format "{LOG_FORMAT}"',
        "option dontlognull",  # a connection that sent nothing is no request
    ]


def service_of(revision: str) -> str:
    m = _REVISION.match(revision)
    return m.group(1) if m else ""


def _service_of_backend(backend: bytes) -> str:
    name = backend.decode("ascii", errors="replace")
    return service_of(name.removeprefix(BACKEND_PREFIX)) if name.startswith(BACKEND_PREFIX) else ""


def parse(raw: bytes) -> tuple[str, RequestLine] | None:
    """(service, line) for a request a revision backend took; None for anything else (the API,
    unknown hosts, a line that is not ours)."""
    fields = raw.decode("utf-8", errors="replace").rstrip("\n").split(" ", 6)
    if len(fields) != 7 or not fields[1].startswith(BACKEND_PREFIX):
        return None
    stamp, backend, server, status, active, method, path = fields
    revision = backend.removeprefix(BACKEND_PREFIX)
    service = service_of(revision)
    try:
        numbers = int(stamp), int(status), int(active)
    except ValueError:
        return None
    if not service:
        return None
    return service, RequestLine(
        time_ms=numbers[0],
        revision=revision,
        instance=_instance(server),
        method=method,
        path=path,
        status=numbers[1],
        duration_ms=numbers[2],
    )


def _instance(server: str) -> str:
    """What a line says served the request: the instance's server name, `activator` for any
    revision's activator server (`names.activator_server_name`), "" for HAProxy itself."""
    if server == NO_SERVER:
        return ""
    return "activator" if names.is_activator_server(server) else server


OnLine = Callable[[RequestLine], None]
_Watcher = tuple[str, OnLine]  # (revision or "" for all, callback)


class RequestLogs:
    """The rings, and who follows them. A ring keeps lines as they came and parses them when
    read: the receiving thread does a split, two dict lookups and an append per request. The
    `on_line` callbacks run on that thread with the lock held (so no line is missed or seen
    twice by a follower): they must not block."""

    def __init__(self, *, kept: int = REQUESTS_KEPT, services_kept: int = SERVICES_KEPT) -> None:
        self._kept = kept
        self._services_kept = services_kept
        self._rings: OrderedDict[str, deque[bytes]] = OrderedDict()
        self._services: dict[bytes, str] = {}  # backend -> service ("": not a revision's)
        self._watchers: dict[str, list[_Watcher]] = {}
        self._lock = threading.Lock()
        self._receiver: _Receiver | None = None

    @classmethod
    def listen(cls, path: Path) -> RequestLogs:
        """Rings fed from the socket at `path`; without a socket (it cannot be bound) the rings
        stay empty and the control plane runs on."""
        logs = cls()
        try:
            logs._receiver = _Receiver(path, on_lines=logs.receive)
        except OSError as e:
            get_log(component="requests").warning("request_log_socket_failed", path=str(path),
                                                  error=str(e))  # fmt: skip
        return logs

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()

    def receive(self, *lines: bytes) -> None:
        """Keep lines as HAProxy sent them; they are parsed when read."""
        kept = [(service, line) for line in lines if (service := self._service_of(line))]
        if not kept:
            return
        with self._lock:
            for service, line in kept:
                self._keep(service, line)

    def _service_of(self, line: bytes) -> str:
        fields = line.split(b" ", 2)
        if len(fields) < 3:
            return ""
        service = self._services.get(fields[1])
        if service is None:
            if len(self._services) > SERVICES_KEPT * 8:
                self._services.clear()  # backends come and go with revisions
            service = self._services[fields[1]] = _service_of_backend(fields[1])
        return service

    def _keep(self, service: str, line: bytes) -> None:
        ring = self._rings.get(service)
        if ring is None:
            ring = self._rings[service] = deque(maxlen=self._kept)
            while len(self._rings) > self._services_kept:
                self._rings.popitem(last=False)
        self._rings.move_to_end(service)
        ring.append(line)
        watchers = self._watchers.get(service)
        parsed = parse(line) if watchers else None
        if parsed is None:
            return
        for revision, on_line in watchers or ():
            if not revision or parsed[1].revision == revision:
                on_line(parsed[1])

    def watch(
        self,
        service: str,
        *,
        revision: str = "",
        since_ms: int | None = None,
        tail: int | None = None,
        on_line: OnLine | None = None,
    ) -> tuple[list[RequestLine], Callable[[], None]]:
        """The kept lines that match, and (with `on_line`) every later match until the returned
        function is called."""
        watcher = (revision, on_line) if on_line is not None else None
        with self._lock:
            lines = list(self._rings.get(service, ()))
            if watcher is not None:
                self._watchers.setdefault(service, []).append(watcher)
        kept = [
            line
            for _, line in filter(None, map(parse, lines))
            if (not revision or line.revision == revision)
            and (since_ms is None or line.time_ms >= since_ms)
        ]
        if tail is not None:
            kept = kept[len(kept) - tail :] if tail > 0 else []
        return kept, functools.partial(self._unwatch, service, watcher)

    def _unwatch(self, service: str, watcher: _Watcher | None) -> None:
        with self._lock:
            watchers = self._watchers.get(service, [])
            if watcher in watchers:
                watchers.remove(watcher)
            if not watchers:
                self._watchers.pop(service, None)


class _Receiver:
    """The listening socket and the thread that reads every connection to it."""

    def __init__(self, path: Path, *, on_lines: Callable[..., None]) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as HAProxy's run dir
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # left by a control plane that stopped: ours to take over
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(path))
            os.chmod(path, 0o600)  # HAProxy runs as this user; nobody else may write lines
            self._sock.listen(16)
        except OSError:
            self._sock.close()
            raise
        self._on_lines = on_lines
        self._closed = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._pending: dict[socket.socket, bytes] = {}
        threading.Thread(target=self._run, name="request-logs", daemon=True).start()

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                events = self._selector.select(timeout=1.0)  # the timeout sees `close`
                for key, _ in events:
                    if key.fileobj is self._sock:
                        self._accept()
                    else:
                        self._read(cast(socket.socket, key.fileobj))
                if events:
                    # Let lines gather before reading again: a reader waiting on every line
                    # costs HAProxy a wake-up per request (`GATHER_S` above).
                    self._closed.wait(GATHER_S)
        finally:
            for conn in list(self._pending):
                conn.close()
            self._selector.close()
            self._sock.close()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            conn, _ = self._sock.accept()
            conn.setblocking(False)
            self._selector.register(conn, selectors.EVENT_READ)
            self._pending[conn] = b""

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(READ_MAX)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # that HAProxy worker stopped
            self._selector.unregister(conn)
            self._pending.pop(conn, None)
            conn.close()
            return
        *lines, rest = (self._pending[conn] + data).split(b"\n")
        self._pending[conn] = rest if len(rest) <= READ_MAX else b""  # no line is that long
        self._on_lines(*lines)
