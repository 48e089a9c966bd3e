"""Request logs: HAProxy sends one line per request to a unix datagram socket; the control plane
keeps the last few per service in memory for `slipway logs --requests`.

Where this sits: `render` adds `frontend_lines(site)` to both frontends; the composition root
(`app.platform`) starts `RequestLogs.listen`; `api.logs` reads and follows it.

Why this shape:
- The request path stays cheap. HAProxy formats about 80 bytes and makes one non-blocking
  `sendto()`; a socket nobody reads, or one whose buffer is full, drops the line (HAProxy counts it
  in DroppedLogs) and never delays the request.
- Nothing grows on disk: each service keeps its last `REQUESTS_KEPT` requests in a ring, and at
  most `SERVICES_KEPT` rings are kept. A control-plane restart starts empty; HAProxy keeps sending
  to the same path (it does not connect the socket), so the new process only binds it again.
- The line is `<ms since epoch> <backend> <server> <status> <active ms> <method> <path>`: the
  time is when the response ended (`date(0,ms)` at log time), the backend names the revision
  (`names.backend_name`), the server the instance (or `activator` while one was started, or
  `<NOSRV>` when HAProxy answered itself). The path comes last and without the query string: the
  query can carry secrets, and a path may be long (the datagram is cut at `DATAGRAM_MAX`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.logs import get as get_log
from pipeline.dataplane.model import Site

SOCKET_NAME = "requests.sock"
DATAGRAM_MAX = 2048  # HAProxy's `len`; the accepted range is 80 to 65535
REQUESTS_KEPT = 1000  # per service
SERVICES_KEPT = 512  # the least recently written ring goes first
RECEIVE_BUFFER = 1 << 20  # bursts wait here while the reader thread catches up (kernel-capped)
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
        f"log {socket_path(site.run_dir)} len {DATAGRAM_MAX} format raw local0 info",
        f'log-format "{LOG_FORMAT}"',
        "option dontlognull",  # a connection that sent nothing is no request
    ]


def service_of(revision: str) -> str:
    m = _REVISION.match(revision)
    return m.group(1) if m else ""


def parse(datagram: bytes) -> tuple[str, RequestLine] | None:
    """(service, line) for a request a revision backend took; None for anything else (the API,
    unknown hosts, a line that is not ours)."""
    fields = datagram.decode("utf-8", errors="replace").rstrip("\n").split(" ", 6)
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
        instance="" if server == NO_SERVER else server,
        method=method,
        path=path,
        status=numbers[1],
        duration_ms=numbers[2],
    )


OnLine = Callable[[RequestLine], None]
_Watcher = tuple[str, OnLine]  # (revision or "" for all, callback)


class RequestLogs:
    """The rings, and who follows them. `on_line` callbacks run on the receiving thread with the
    lock held (so none is missed or seen twice): they must not block."""

    def __init__(self, *, kept: int = REQUESTS_KEPT, services_kept: int = SERVICES_KEPT) -> None:
        self._kept = kept
        self._services_kept = services_kept
        self._rings: OrderedDict[str, deque[RequestLine]] = OrderedDict()
        self._watchers: dict[str, list[_Watcher]] = {}
        self._lock = threading.Lock()
        self._receiver: _Receiver | None = None

    @classmethod
    def listen(cls, path: Path) -> RequestLogs:
        """Rings fed from the socket at `path`; without a socket (it cannot be bound) the rings
        stay empty and the control plane runs on."""
        logs = cls()
        try:
            logs._receiver = _Receiver(path, on_datagram=logs.receive)
        except OSError as e:
            get_log(component="requests").warning("request_log_socket_failed", path=str(path),
                                                  error=str(e))  # fmt: skip
        return logs

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()

    def receive(self, datagram: bytes) -> None:
        parsed = parse(datagram)
        if parsed is not None:
            self.add(*parsed)

    def add(self, service: str, line: RequestLine) -> None:
        with self._lock:
            ring = self._rings.get(service)
            if ring is None:
                ring = self._rings[service] = deque(maxlen=self._kept)
                while len(self._rings) > self._services_kept:
                    self._rings.popitem(last=False)
            self._rings.move_to_end(service)
            ring.append(line)
            for revision, on_line in self._watchers.get(service, ()):
                if not revision or line.revision == revision:
                    on_line(line)

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
            kept = [
                line
                for line in self._rings.get(service, ())
                if (not revision or line.revision == revision)
                and (since_ms is None or line.time_ms >= since_ms)
            ]
            if watcher is not None:
                self._watchers.setdefault(service, []).append(watcher)
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
    """The bound socket and the thread that reads it."""

    def __init__(self, path: Path, *, on_datagram: Callable[[bytes], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # left by a control plane that stopped: ours to take over
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind(str(path))
            os.chmod(path, 0o600)  # HAProxy runs as this user; nobody else may write lines
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(1.0)  # the loop sees `close` within a second
        self._on_datagram = on_datagram
        self._closed = threading.Event()
        threading.Thread(target=self._run, name="request-logs", daemon=True).start()

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    datagram = self._sock.recv(DATAGRAM_MAX + 1)
                except TimeoutError:
                    continue
                self._on_datagram(datagram)
        finally:
            self._sock.close()
