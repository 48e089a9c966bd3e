"""A small client for HAProxy's runtime API (the admin and master unix sockets).

The manager (`process.py`) uses it to change servers without a reload when only instances
changed, to read what a running HAProxy actually has (so a restarted control plane adopts it),
and to watch a reload complete. One command per connection, the way `socat` does it: send the
line, close our side, read until HAProxy closes.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import Unavailable

# `show servers state` srv_admin_state bits (management guide, "show servers state").
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, config, resolution
_ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
_OP_UP = frozenset({1, 2})


class CommandRejected(Unavailable):
    """HAProxy answered but refused the command (e.g. deleting a server that has connections)."""


@dataclass(frozen=True, kw_only=True)
class ServerState:
    """One server as the running HAProxy sees it."""

    name: str
    address: str
    port: int
    admin: str  # "ready" | "drain" | "maint": what Slipway asked for
    up: bool  # operational state: health checks may have taken it down
    weight: int
    maxconn: int  # 0 = unlimited
    sessions: int  # current sessions (scur)
    queued: int  # requests waiting for this server (qcur)

    @property
    def draining(self) -> bool:
        # The config file renders draining as weight 0; the runtime API as the drain state.
        return self.admin == "drain" or (self.admin == "ready" and self.weight == 0)


class Socket:
    """One HAProxy CLI socket (admin or master)."""

    def __init__(self, path: Path, *, timeout_s: float = 5.0) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def command(self, line: str, *, payload: str = "") -> str:
        """Send one command (with `payload`: `<line> <<`, its lines, then an empty line)."""
        if "\n" in line or ";" in line:
            raise ValueError(f"one runtime command per call, got {line!r}")
        if payload and any(not part.strip() for part in payload.rstrip("\n").split("\n")):
            raise ValueError("a runtime payload ends at its first empty line: drop blank lines")
        data = f"{line} <<\n{payload.rstrip()}\n\n" if payload else f"{line}\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout_s)
                conn.connect(str(self.path))
                conn.sendall(data.encode())
                # The master CLI answers only once it sees the end of our input.
                conn.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unavailable(
                f"HAProxy is not running: nothing answers on {self.path} ({exc.strerror}); "
                "start the data plane with ./scripts/up"
            ) from exc
        except OSError as exc:
            raise Unavailable(
                f"HAProxy's socket {self.path} failed during {line.split()[0]!r}: {exc}; "
                "check that HAProxy is running (./scripts/up starts it)"
            ) from exc
        return b"".join(chunks).decode(errors="replace")


class Runtime:
    """The commands Slipway needs from the admin socket of the current worker."""

    def __init__(self, admin_socket: Path, *, timeout_s: float = 5.0) -> None:
        self.socket = Socket(admin_socket, timeout_s=timeout_s)

    def info(self) -> dict[str, str]:
        out = self.socket.command("show info")
        pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def backends(self) -> set[str]:
        out = self.socket.command("show backend")
        return {line.strip() for line in out.splitlines() if line.strip() and line[0] != "#"}

    def show_servers(self, backend: str) -> list[ServerState]:
        stats = {row["svname"]: row for row in self._stat(backend, kind=4)}
        return _server_states(self._servers_state(backend), stats)

    def all_servers(self) -> dict[str, list[ServerState]]:
        """Every backend's servers (by backend name) in two commands, whatever the number of
        backends: a pass that asked backend by backend grew with the services."""
        rows = self._all_servers_state()
        stats: dict[str, dict[str, dict[str, str]]] = {}
        for row in self.show_stat(kind=4):
            stats.setdefault(row["pxname"], {})[row["svname"]] = row
        by_backend: dict[str, list[list[str]]] = {}
        for fields in rows:
            by_backend.setdefault(fields[1], []).append(fields)
        return {
            name: _server_states(states, stats.get(name, {})) for name, states in by_backend.items()
        }

    def servers_down(self) -> dict[str, set[str]]:
        """Per backend, the servers not up (HAProxy's checks or observed errors hold them down,
        or they are in maintenance), in one `show servers state` for every backend."""
        down: dict[str, set[str]] = {}
        for fields in self._all_servers_state():
            if int(fields[5]) not in _OP_UP:
                down.setdefault(fields[1], set()).add(fields[3])
        return down

    def sessions(self, backend: str) -> int:
        """Current sessions on the backend, including requests queued for a free instance."""
        for row in self._stat(backend, kind=2):
            if row["svname"] == "BACKEND":
                return _int(row.get("scur")) + _int(row.get("qcur"))
        raise CommandRejected(f"HAProxy has no backend {backend!r}")

    def show_stat(self, *, kind: int = 6) -> list[dict[str, str]]:
        """Every backend and server row of `show stat` (`kind`: 2 backends, 4 servers, 6 both),
        as HAProxy's CSV header names them.

        Counters are the current worker's: a reload starts them from zero (Prometheus reads that
        as a counter reset).
        """
        out = self.socket.command(f"show stat -1 {kind} -1")
        if not out.startswith("# "):
            raise CommandRejected(f"HAProxy did not answer `show stat`: {out.strip()}")
        return list(csv.DictReader(io.StringIO(out[2:])))

    def server_sessions(self, backend: str) -> dict[str, int]:
        return {row["svname"]: _int(row.get("scur")) for row in self._stat(backend, kind=4)}

    def add_server(self, backend: str, name: str, args: str) -> None:
        """Add a server; HAProxy creates it in maintenance, so `set_ready`/`drain` must follow."""
        self._expect(f"add server {backend}/{name} {args}", "New server registered.")

    def enable_health(self, backend: str, name: str) -> None:
        # Checks on a dynamic server stay off until asked for, unlike servers from the file.
        self._expect(f"enable health {backend}/{name}")

    def set_ready(self, backend: str, name: str) -> None:
        self._expect(f"set server {backend}/{name} state ready")

    def drain(self, backend: str, name: str) -> None:
        self._expect(f"set server {backend}/{name} state drain")

    def maint(self, backend: str, name: str) -> None:
        self._expect(f"set server {backend}/{name} state maint")

    def set_weight(self, backend: str, name: str, weight: int) -> None:
        self._expect(f"set weight {backend}/{name} {weight}")

    def set_maxconn(self, backend: str, name: str, maxconn: int) -> None:
        self._expect(f"set maxconn server {backend}/{name} {maxconn}")

    def set_address(self, backend: str, name: str, address: str, port: int) -> None:
        out = self.socket.command(f"set server {backend}/{name} addr {address} port {port}")
        if "changed" not in out and out.strip():
            raise CommandRejected(f"HAProxy refused the new address of {backend}/{name}: {out}")

    def del_server(self, backend: str, name: str) -> None:
        """Delete a server; HAProxy refuses unless it is in maintenance and has no connections."""
        self._expect(f"del server {backend}/{name}", "Server deleted.")

    def show_map(self, path: Path) -> dict[str, str]:
        """A map file's entries as the running worker has them (key -> value)."""
        out = self.socket.command(f"show map {path}")
        entries: dict[str, str] = {}
        for line in out.splitlines():
            fields = line.split(" ", 2)
            if len(fields) == 3 and fields[0].startswith("0x"):
                entries[fields[1]] = fields[2]
            elif line.strip():
                raise CommandRejected(f"HAProxy has no map {path}: {out.strip()}")
        return entries

    def add_map(self, path: Path, key: str, value: str) -> None:
        self._expect(f"add map {path} {key} {value}")

    def del_map(self, path: Path, key: str) -> None:
        self._expect(f"del map {path} {key}")

    def set_map(self, path: Path, key: str, value: str) -> None:
        self._expect(f"set map {path} {key} {value}")

    # -- TLS certificates (HAProxy's "ssl cert" transactions and crt-lists) -------------------

    def ssl_certs(self) -> tuple[set[str], set[str]]:
        """(certificate files loaded, files with an uncommitted transaction)."""
        loaded: set[str] = set()
        pending: set[str] = set()
        for line in self.socket.command("show ssl cert").splitlines():
            name = line.strip()
            if name and not name.startswith("#"):
                (pending if name.startswith("*") else loaded).add(name.lstrip("*"))
        return loaded, pending

    def ssl_cert_serial(self, path: str) -> str:
        """The serial of a loaded certificate as `show ssl cert <file>` prints it ("" if none)."""
        for line in self.socket.command(f"show ssl cert {path}").splitlines():
            if line.startswith("Serial:"):
                return line.split(":", 1)[1].strip()
        return ""

    def crt_list(self, crt_list: str) -> set[str]:
        """The certificate files a crt-list names."""
        out = self.socket.command(f"show ssl crt-list {crt_list}")
        if not out.startswith("#"):
            raise CommandRejected(f"HAProxy has no crt-list {crt_list}: {out.strip()}")
        return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}

    def new_ssl_cert(self, path: str) -> None:
        self._expect_in(f"new ssl cert {path}", "New empty certificate store")

    def set_ssl_cert(self, path: str, pem: str) -> None:
        out = self.socket.command(f"set ssl cert {path}", payload=pem)
        if "Transaction created" not in out and "Transaction updated" not in out:
            raise CommandRejected(f"HAProxy refused the certificate for {path}: {out.strip()}")

    def commit_ssl_cert(self, path: str) -> None:
        self._expect_in(f"commit ssl cert {path}", "Success!")

    def abort_ssl_cert(self, path: str) -> None:
        self._expect_in(f"abort ssl cert {path}", "Transaction aborted")

    def add_crt_list(self, crt_list: str, path: str) -> None:
        self._expect_in(f"add ssl crt-list {crt_list} {path}", "Success!")

    def del_crt_list(self, crt_list: str, path: str) -> None:
        self._expect_in(f"del ssl crt-list {crt_list} {path}", "deleted in crtlist")

    def del_ssl_cert(self, path: str) -> None:
        self._expect_in(f"del ssl cert {path}", "deleted!")

    def _all_servers_state(self) -> list[list[str]]:
        out = self.socket.command("show servers state")
        lines = out.splitlines()
        if not lines or not lines[0].strip().isdigit():
            raise CommandRejected(f"HAProxy did not answer `show servers state`: {out.strip()}")
        return [line.split() for line in lines[1:] if line.strip() and not line.startswith("#")]

    def _servers_state(self, backend: str) -> list[list[str]]:
        out = self.socket.command(f"show servers state {backend}")
        lines = out.splitlines()
        if lines and not lines[0].strip().isdigit():
            raise CommandRejected(f"HAProxy has no backend {backend!r}: {out.strip()}")
        return [line.split() for line in lines[1:] if line.strip() and not line.startswith("#")]

    def _stat(self, backend: str, *, kind: int) -> list[dict[str, str]]:
        # kind is HAProxy's type mask: 2 = backend row, 4 = server rows.
        out = self.socket.command(f"show stat {backend} {kind} -1")
        if not out.startswith("# "):
            raise CommandRejected(f"HAProxy has no backend {backend!r}: {out.strip()}")
        return list(csv.DictReader(io.StringIO(out[2:])))

    def _expect_in(self, command: str, success: str) -> None:
        out = self.socket.command(command)
        if success not in out:
            raise CommandRejected(f"HAProxy refused {command!r}: {out.strip() or 'no answer'}")

    def _expect(self, command: str, success: str = "") -> None:
        out = self.socket.command(command).strip()
        if out != success:
            raise CommandRejected(f"HAProxy refused {command!r}: {out or 'no answer'}")


def stat_columns(out: str, *names: str) -> list[tuple[str, ...]]:
    """Only the named columns of each `show stat` row, in that order ("" where absent): about a
    quarter of csv.DictReader's time on 500 backends' ~100-column rows (the load a pass reads)."""
    reader = csv.reader(io.StringIO(out[2:]))
    header = next(reader, [])
    at = [header.index(n) if n in header else -1 for n in names]
    return [tuple(row[i] if 0 <= i < len(row) else "" for i in at) for row in reader if row]


def _server_states(states: list[list[str]], stats: dict[str, dict[str, str]]) -> list[ServerState]:
    """`show servers state` rows joined with their `show stat` rows (by server name)."""
    servers = []
    for fields in states:
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight
        # ... srv_port is the 19th field (format version 1).
        name, address = fields[3], fields[4]
        admin_bits = int(fields[6])
        admin = (
            "maint"
            if admin_bits & _ADMIN_MAINT
            else "drain"
            if admin_bits & _ADMIN_DRAIN
            else "ready"
        )
        row = stats.get(name, {})
        servers.append(
            ServerState(
                name=name,
                address=address,
                port=int(fields[18]),
                admin=admin,
                up=int(fields[5]) in _OP_UP,
                weight=int(fields[7]),
                maxconn=_int(row.get("slim")),
                sessions=_int(row.get("scur")),
                queued=_int(row.get("qcur")),
            )
        )
    return sorted(servers, key=lambda s: s.name)


def _int(value: str | None) -> int:
    return int(value) if value else 0
