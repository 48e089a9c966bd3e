"""Helper processes the control plane starts once and then leaves running on their own: they
must outlive a control-plane crash (instances keep resolving names while it restarts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dnslib import DNSRecord

from pipeline.logs import get as get_log


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _answers(address: str, name: str) -> bool:
    try:
        reply = DNSRecord.question(name).send(address, 53, timeout=1)
    except OSError:
        return False
    return bool(DNSRecord.parse(reply).rr)


def ensure_dns(*, run_dir: Path, logs_dir: Path, address: str, domain: str) -> bool:
    """Make sure the internal resolver answers on `address`:53; False if it cannot run."""
    log = get_log(component="dns")
    pid_file = run_dir / "dns.pid"
    probe = f"probe.{domain}"
    pid = _alive(pid_file)
    if (
        pid is not None
        and pid_file.read_text().split()[1:] == [address]
        and _answers(address, probe)
    ):
        return True
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    run_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    with (logs_dir / "dns.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "dns", "--bind", address, "--domain", domain],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not in the control plane's process group
        )
    pid_file.write_text(f"{proc.pid} {address}\n")
    for _ in range(50):
        if _answers(address, probe):
            log.info("dns_started", address=address, domain=domain, pid=proc.pid)
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.warning(
        "dns_unavailable",
        address=address,
        reason="the internal resolver did not start (it needs root for port 53); "
        f"see {logs_dir / 'dns.log'}. Instances cannot reach other services by name.",
    )
    return False


def stop(pid_file: Path) -> None:
    pid = _alive(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def _flavored(address: str, port: int) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection(address, port, timeout=1)
        conn.request("GET", "/", headers={"Metadata-Flavor": "Google"})
        ok = conn.getresponse().getheader("Metadata-Flavor") == "Google"
        conn.close()
    except OSError:
        return False
    return ok


def ensure_metadata(
    *, run_dir: Path, logs_dir: Path, address: str, port: int, args: list[str]
) -> bool:
    """Make sure the metadata server (pipeline.identity.metadata) answers on `address:port`;
    False if it cannot run. `args` are its command-line options; a change restarts it."""
    log = get_log(component="metadata")
    pid_file = run_dir / "metadata.pid"
    record = [address, str(port), *args]
    pid = _alive(pid_file)
    if pid is not None and pid_file.read_text().split()[1:] == record and _flavored(address, port):
        return True
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _flavored(address, port):
                break
            time.sleep(0.1)
    run_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pipeline.cli", "metadata", "--bind", address, "--port",
            str(port), *args]  # fmt: skip
    with (logs_dir / "metadata.log").open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the control plane, like the resolver
        )
    pid_file.write_text(" ".join([str(proc.pid), *record]) + "\n")
    for _ in range(100):
        if _flavored(address, port):
            log.info("metadata_started", address=address, port=port, pid=proc.pid)
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.warning(
        "metadata_unavailable",
        address=address,
        port=port,
        reason=f"the metadata server did not start; see {logs_dir / 'metadata.log'}. "
        "Instances get no identity tokens.",
    )
    return False
