"""Helper processes the control plane starts once and then leaves running on their own: they
must outlive a control-plane crash (instances keep resolving names, and requests at zero keep
being activated, while it restarts). `running` lets the control plane restart one that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

from dnslib import DNSRecord

from pipeline.core.logs import get as get_log
from pipeline.store import permissions

# Recorded with each daemon's options: a running daemon whose record matches is reused across
# control-plane restarts and upgrades, so bump this when running daemons must be replaced by new
# code. 2: the metadata server bounds its connections (issue 13). 3: the activator is a
# daemon too (issue 18).
GENERATION = "3"


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    # A helper this control plane started and that died is its zombie child until reaped, and
    # a zombie still takes signal 0: reap it here, or a dead activator would look alive.
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass  # not our child (started by an earlier control plane): signal 0 was the answer
    return pid


def _answers(address: str, name: str) -> bool:
    try:
        reply = DNSRecord.question(name).send(address, 53, timeout=1)
    except OSError:
        return False
    return bool(DNSRecord.parse(reply).rr)


def ensure_dns(*, run_dir: Path, logs_dir: Path, address: str, domain: str) -> bool:
    """Make sure the internal resolver answers on `address`:53; False if it cannot run."""
    return _ensure(
        name="dns",
        run_dir=run_dir,
        logs_dir=logs_dir,
        record=[address],
        argv=["dns", "--bind", address, "--domain", domain],
        answers=lambda: _answers(address, f"probe.{domain}"),
        tries=50,
        unavailable="the internal resolver did not start (it needs root for port 53); "
        "instances cannot reach other services by name",
        address=address,
        domain=domain,
    )


def _ensure(
    *,
    name: str,
    run_dir: Path,
    logs_dir: Path,
    record: list[str],
    argv: list[str],
    answers: Callable[[], bool],
    tries: int,
    unavailable: str,
    **context: object,
) -> bool:
    """Reuse the running helper if it was started with `record` and answers; else (re)start it
    in its own session, so it outlives the control plane."""
    log = get_log(component=name)
    record = [*record, f"generation={GENERATION}"]
    pid_file = run_dir / f"{name}.pid"
    pid = _alive(pid_file)
    if pid is not None and pid_file.read_text().split()[1:] == record and answers():
        return True
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):  # let it free its port before the new one binds
            if not answers():
                break
            time.sleep(0.1)
    run_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    with (logs_dir / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not in the control plane's process group
            umask=permissions.UMASK,  # as the control plane's: what it writes is private
        )
    pid_file.write_text(" ".join([str(proc.pid), *record]) + "\n")
    for _ in range(tries):
        if answers():
            log.info(f"{name}_started", pid=proc.pid, **context)
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.warning(
        f"{name}_unavailable", reason=f"{unavailable}; see {logs_dir / (name + '.log')}", **context
    )
    return False


def running(run_dir: Path, name: str) -> bool:
    """Is the helper `name` (dns, metadata, activator) still alive? Only its pid: a check that
    cannot mistake a busy helper for a dead one (restarting the activator cuts its sessions)."""
    return _alive(run_dir / f"{name}.pid") is not None


def stop(pid_file: Path) -> None:
    pid = _alive(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def _http_answers(
    address: str, port: int, headers: dict[str, str], check: Callable[[HTTPResponse], bool]
) -> bool:
    """Does a GET / on `address:port` get the answer `check` knows its own helper by? A port
    that is open is not enough: another process (or the helper's predecessor) may hold it."""
    try:
        conn = HTTPConnection(address, port, timeout=1)
        conn.request("GET", "/", headers=headers)
        ok = check(conn.getresponse())
        conn.close()
    except OSError:
        return False
    return ok


def _flavored(reply: HTTPResponse) -> bool:
    """The metadata server echoes the header every GCE metadata client sends."""
    return reply.getheader("Metadata-Flavor") == "Google"


def _activates(reply: HTTPResponse) -> bool:
    """The activator's own refusal of a request without a revision: it is the activator that
    listens there (it has no path of its own; every path is an app's)."""
    return reply.status == 400 and reply.read().startswith(b"slipway: activator")


def _ensure_http(
    *,
    name: str,
    run_dir: Path,
    logs_dir: Path,
    address: str,
    port: int,
    args: list[str],
    headers: dict[str, str],
    check: Callable[[HTTPResponse], bool],
    unavailable: str,
) -> bool:
    """`_ensure` for a helper that listens on HTTP at `address:port`; its subcommand is `name`."""
    return _ensure(
        name=name,
        run_dir=run_dir,
        logs_dir=logs_dir,
        record=[address, str(port), *args],
        argv=[name, "--bind", address, "--port", str(port), *args],
        answers=lambda: _http_answers(address, port, headers, check),
        tries=100,
        unavailable=unavailable,
        address=address,
        port=port,
    )


def ensure_metadata(
    *, run_dir: Path, logs_dir: Path, address: str, port: int, args: list[str]
) -> bool:
    """Make sure the metadata server (pipeline.app.metadataserver) answers on `address:port`;
    False if it cannot run. `args` are its command-line options; a change restarts it."""
    return _ensure_http(
        name="metadata",
        run_dir=run_dir,
        logs_dir=logs_dir,
        address=address,
        port=port,
        args=args,
        headers={"Metadata-Flavor": "Google"},
        check=_flavored,
        unavailable="the metadata server did not start; instances get no identity tokens",
    )


def ensure_activator(
    *, run_dir: Path, logs_dir: Path, address: str, port: int, args: list[str]
) -> bool:
    """Make sure the activator (pipeline.app.activatorserver) answers on `address:port`;
    False if it cannot run. `args` are its other options; a change restarts it."""
    return _ensure_http(
        name="activator",
        run_dir=run_dir,
        logs_dir=logs_dir,
        address=address,
        port=port,
        args=args,
        headers={},
        check=_activates,
        unavailable="the activator did not start; revisions at zero get HAProxy's 503",
    )
