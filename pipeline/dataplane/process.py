"""Run HAProxy and bring it to a rendered data plane: start, reload, or runtime changes.

The reconciler calls `HAProxyManager.apply(plane)` on every pass. When the plane is the one the
same worker was last brought to in full, it does nothing (asks only which worker runs). Otherwise
it writes the full config (so a later reload or restart sees every current server), then does
the least it can: start HAProxy if it is not running; reload it hitlessly through the master
when the structure changed (backends, split or private routes, timeouts); otherwise add, drain,
ready and delete servers, move single-revision hosts and invokers (`mapsync`), and swap
certificates (`tlssync`), through the runtime API. Which runtime commands is decided purely in
`changes` and `tlschanges`, against what HAProxy itself reports, so a restarted control plane
adopts a running HAProxy instead of trusting its own memory; this module only reads, sends and
waits.

HAProxy runs as its own daemon in master-worker mode (-W -D): it keeps serving when the Python
process that started it exits, and the master hands the listening sockets to each new worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.core import names
from pipeline.core.errors import Unavailable
from pipeline.dataplane.changes import Change, server_changes
from pipeline.dataplane.mapsync import MapSync, read_text, write_atomically
from pipeline.dataplane.model import DataPlane, Site
from pipeline.dataplane.procs import Procs
from pipeline.dataplane.render import RESERVED_BACKENDS, render, structure_of_config
from pipeline.dataplane.runtime import CommandRejected, Runtime, Socket
from pipeline.dataplane.tlssync import TlsSync

_START_TIMEOUT_S = 10.0
_POLL_S = 0.05


class HAProxyManager:
    def __init__(self, *, site: Site, binary: str = "haproxy") -> None:
        self.site = site
        self.binary = binary
        self.runtime = Runtime(site.admin_socket)
        self.master = Socket(site.master_socket)
        self.tls = TlsSync(site=site, runtime=self.runtime)  # certificates: files, runtime API
        self.maps = MapSync(site=site, runtime=self.runtime)  # routes and invokers maps
        # What the running HAProxy loaded, as a structure key. Read back from run_dir when
        # HAProxy is already running, so a restarted control plane does not reload for nothing;
        # checked against the live backends in `_loaded_structure`.
        self._loaded: str | None = None
        # The last plane rendered, its text and structure: a pass that changes nothing (most
        # passes) renders nothing, and the config file is compared only after a change.
        self._rendered: tuple[DataPlane, str, str] | None = None
        self._installed = ""  # the text last written to the config file by this manager
        # The plane the running worker was last brought to in full (no delete left pending),
        # and that worker's pid. Most passes hand the same plane again: then nothing is read
        # back from HAProxy (at 500 services reading back every server and map entry took about
        # 50 ms of a 208 ms quiet reconcile pass). A new worker (a reload by anyone, a restart)
        # or a new manager reads everything back as before.
        self._synced: tuple[DataPlane, int] | None = None

    # -- state -------------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        try:
            pid = int(self.site.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def is_running(self) -> bool:
        return self._worker() is not None

    def worker_pid(self) -> int:
        return int(self.runtime.info()["Pid"])

    def _worker(self) -> int | None:
        """The running worker's pid, or None when HAProxy is not running (`is_running`)."""
        if self.master_pid() is None:
            return None
        try:
            return self.worker_pid()
        except Unavailable:
            return None

    def sessions(self, backend: str) -> int:
        return self.runtime.sessions(backend)

    def server_sessions(self, backend: str) -> dict[str, int]:
        return self.runtime.server_sessions(backend)

    # -- apply -------------------------------------------------------------------------------

    def apply(self, plane: DataPlane) -> str:
        """Bring HAProxy to `plane`; says what it did: "started", "reloaded",
        "runtime: N changes" or "unchanged"."""
        worker = self._worker()
        if worker is not None and self._synced == (plane, worker):
            return "unchanged"
        self._synced = None
        text, wanted = self._render(plane)
        # Before any check or reload: the config refers to them, and a new worker loads them.
        self.maps.write(plane)
        self.tls.write(plane)
        if worker is None:
            self._install(text)
            self._start()
            self._remember(wanted)
            self.tls.loaded(plane)
            return "started"
        if self._loaded_structure(plane) != wanted:
            self._install(text)
            self._reload(plane)
            self._remember(wanted)
            self.tls.loaded(plane)
            return "reloaded"
        # Same structure: only server lines differ. Servers first: a host moved to a new
        # revision's backend finds its instances there.
        changes, pending = self._sync_servers(plane)
        changes += self.maps.sync(plane) + self.tls.sync(plane)
        # The file is still checked (about 40 ms), as the next reload or restart will load it,
        # but after the changes: nothing running reads it, and a server waiting for it (a thawed
        # or new instance, the activator forwarding meanwhile) would wait those 40 ms too.
        if text != self._installed and read_text(self.site.config_file) != text:
            self._install(text)
        if not pending:
            self._synced = (plane, worker)
        if not changes and not pending:
            return "unchanged"
        summary = f"runtime: {changes} changes"
        if pending:
            summary += f" ({', '.join(pending)} still has connections: deleted on a later apply)"
        return summary

    def _render(self, plane: DataPlane) -> tuple[str, str]:
        """The config text and structure key of `plane`, rendered once per distinct plane."""
        if self._rendered is None or self._rendered[0] != plane:
            text = render(plane, site=self.site)
            self._rendered = (plane, text, structure_of_config(text) or "")
        return self._rendered[1], self._rendered[2]

    def validate(self, text: str) -> None:
        """Raise Unavailable with HAProxy's own words if `text` is not a valid config."""
        self._ensure_run_dir()
        with tempfile.NamedTemporaryFile(
            "w", dir=self.site.run_dir, prefix=".check-", suffix=".cfg", delete=False
        ) as tmp:
            tmp.write(text)
        try:
            self._check(Path(tmp.name))
        finally:
            os.unlink(tmp.name)

    def stop(self, *, graceful: bool = False, timeout_s: float = 10.0) -> None:
        """Stop master and workers: SIGUSR1 lets in-flight requests finish (bounded by
        hard-stop-after), SIGTERM stops at once."""
        pid = self.master_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGUSR1 if graceful else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"HAProxy (master pid {pid}) did not stop within {timeout_s:.0f}s; "
                    f"kill it with `kill -KILL {pid}`"
                )
            time.sleep(_POLL_S)
        self._loaded = None
        self._loaded_file.unlink(missing_ok=True)

    # -- steps -------------------------------------------------------------------------------

    def _install(self, text: str) -> None:
        """Validate, then replace the config file: a config HAProxy rejects never lands."""
        self.validate(text)
        write_atomically(self.site.config_file, text)
        self._installed = text

    def _check(self, path: Path) -> None:
        # Not -q: it would silence the very errors this message must carry.
        result = self._run([self.binary, "-c", "-f", str(path)])
        if result.returncode != 0:
            output = (result.stdout + result.stderr).splitlines()
            errors = "\n".join(line for line in output if "[NOTICE]" not in line)
            raise Unavailable(
                "HAProxy rejected the rendered configuration, so the running one stays in place:\n"
                f"{_tail(errors)}\n"
                "this is a bug in Slipway's renderer or data plane; please report it with this "
                "message"
            )

    def _start(self) -> None:
        self._ensure_run_dir()
        log = self.site.run_dir / "haproxy-start.log"
        with open(log, "wb") as out:
            # Output goes to a file, not a pipe: the daemon would keep a pipe open forever.
            # A new session keeps HAProxy out of our process group and its signals.
            result = subprocess.run(
                [
                    self.binary,
                    "-W",
                    "-D",
                    "-p",
                    str(self.site.pid_file),
                    "-S",
                    f"{self.site.master_socket},mode,600",
                    "-f",
                    str(self.site.config_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                check=False,
                timeout=_START_TIMEOUT_S,
            )
        if result.returncode != 0:
            raise Unavailable(
                f"HAProxy did not start (exit {result.returncode}):\n{_tail(log.read_text())}\n"
                f"is something else listening on {self.site.bind}?"
            )
        # Both sockets: the worker answers on the admin socket before the master listens on
        # its own (a `reload` sent at once was refused, every time, on HAProxy 2.6).
        self._wait(self._answers, what="HAProxy to answer on its admin and master sockets")

    def _answers(self) -> bool:
        if not self.is_running():
            return False
        try:
            return self._procs().worker is not None
        except Unavailable:
            return False

    def _reload(self, plane: DataPlane) -> None:
        before = self._procs()
        self.master.command("reload")  # the master closes our connection as it re-executes

        def reloaded() -> bool:
            try:
                now = self._procs()
            except Unavailable:
                return False  # the master is re-executing
            if now.failed > before.failed:
                raise Unavailable(
                    "HAProxy's master refused to load the new configuration and kept the old "
                    f"one; run `{self.binary} -c -f {self.site.config_file}` to see why"
                )
            return now.worker not in (None, before.worker) and self._has_backends(plane)

        self._wait(reloaded, what="the reloaded HAProxy worker")

    def _has_backends(self, plane: DataPlane) -> bool:
        try:
            live = self.runtime.backends() - RESERVED_BACKENDS
        except Unavailable:
            return False
        return live == {b.name for b in plane.backends}

    def _procs(self) -> Procs:
        return Procs.parse(self.master.command("show proc"))

    def _remember(self, loaded: str) -> None:
        # Written only once HAProxy runs the config: a crash between writing haproxy.cfg and
        # reloading must not make the next manager believe the new structure is loaded.
        self._loaded = loaded
        write_atomically(self._loaded_file, f"{loaded}\n")

    def _loaded_structure(self, plane: DataPlane) -> str | None:
        if self._loaded is None:
            # Adopting a running HAProxy: trust the record only if the live backends agree.
            recorded = read_text(self._loaded_file).strip()
            if recorded and self._has_backends(plane):
                self._loaded = recorded
        return self._loaded

    @property
    def _loaded_file(self) -> Path:
        return self.site.run_dir / "loaded.structure"

    def _sync_servers(self, plane: DataPlane) -> tuple[int, list[str]]:
        sent, pending = 0, []
        live = self.runtime.all_servers()  # two commands, however many backends
        for backend in sorted(plane.backends, key=lambda b: b.name):
            running = {
                s.name: s
                for s in live.get(backend.name, ())
                if not names.is_activator_server(s.name)  # part of the structure, not an instance
            }
            for change in server_changes(backend, running):
                try:
                    self._send(change)
                except CommandRejected:
                    if change.op != "delete":
                        raise
                    # In-flight requests still use it; the caller drains before removing, and
                    # the next apply deletes it once they are done.
                    pending.append(f"{backend.name}/{change.server}")
                    continue
                sent += 1
        return sent, pending

    def _send(self, change: Change) -> None:
        """One runtime command."""
        b, name = change.backend, change.server
        match change.op:
            case "add":
                self.runtime.add_server(b, name, change.args)
            case "health":
                self.runtime.enable_health(b, name)
            case "ready":
                self.runtime.set_ready(b, name)
            case "drain":
                self.runtime.drain(b, name)
            case "maint":
                self.runtime.maint(b, name)
            case "weight":
                self.runtime.set_weight(b, name, change.number)
            case "maxconn":
                self.runtime.set_maxconn(b, name, change.number)
            case "address":
                self.runtime.set_address(b, name, change.address, change.port)
            case "delete":
                self.runtime.del_server(b, name)

    def _wait(self, ready: Callable[[], bool], *, what: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"timed out after {_START_TIMEOUT_S:.0f}s waiting for {what}; see "
                    f"{self.site.run_dir / 'haproxy-start.log'} and `show proc` on "
                    f"{self.site.master_socket}"
                )
            time.sleep(_POLL_S)

    def _ensure_run_dir(self) -> None:
        self.site.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.site.run_dir, 0o700)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, check=False, timeout=_START_TIMEOUT_S
            )
        except FileNotFoundError as exc:
            raise Unavailable(
                f"HAProxy binary {self.binary!r} not found; install the haproxy package "
                "(apt-get install haproxy) or set the binary path"
            ) from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A daemon's exit may leave a zombie if nothing reaps it: that is not a running HAProxy.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
