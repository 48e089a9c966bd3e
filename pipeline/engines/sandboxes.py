"""Network sandboxes made ahead of time, so starting an instance does not set up a network.

On the Docker Engine most of a container's start is its network: a new network namespace, a veth
on Slipway's bridge, and the embedded resolver's rules (run through a hook that executes dockerd's
binary again). On the 2-core development VM, starting a container on Slipway's network took
~380 ms; starting one that joins a running container's namespace (`--network container:ID`), ~95
ms. So, as Kubernetes does with its pod sandboxes, each instance runs in a namespace held by a
small idle container (`busybox sleep`, no capabilities, read-only, 64 MiB), and the engine keeps
`spares` of them ready, made by a thread of its own after each one is taken: a wake from zero
then starts only the app.

A sandbox holds one instance for that instance's life and is removed with it (a namespace an app
has run in is never handed to another). Its address is the instance's address. The cost is one
more container per instance (its containerd shim, ~2.5 MB private memory on this VM); `spares=0`
turns the pool off, and a sandbox that cannot be made (no static busybox on the host, dockerd
refusing) makes the engine start instances on the network directly, as before.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests

from pipeline.core import names
from pipeline.core.logs import get as get_log

LABEL_ROLE = f"{names.LABEL_PREFIX}.role"
ROLE_SANDBOX = "sandbox"
LABEL_SANDBOX = f"{names.LABEL_PREFIX}.sandbox"  # on an instance: the sandbox it runs in
LABEL_DNS = f"{names.LABEL_PREFIX}.sandbox-dns"  # the resolver the sandbox was made with
IMAGE_REPOSITORY = "slipway/sandbox"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: runs in an image with nothing else
SLEEP_S = 2**31 - 1
ORPHAN_AGE_S = 60.0  # a sandbox no instance names is removed once this old (never mid-start)
RETRY_S = 5.0


@dataclass(frozen=True)
class Sandbox:
    id: str
    address: str
    dns: str  # the resolver its instance will use (a spare made before a change is dropped)


def is_sandbox(labels: dict[str, str]) -> bool:
    return labels.get(LABEL_ROLE) == ROLE_SANDBOX


def image_tar(busybox: bytes) -> bytes:
    """A root filesystem holding only busybox, as `docker import` takes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(busybox), 0o755
        tar.addfile(info, io.BytesIO(busybox))
    return out.getvalue()


def sandbox_kwargs(*, image: str, platform: str, network: str, dns: str) -> dict[str, Any]:
    """docker-py's `create_container` arguments for one sandbox (pure: the caller names it)."""
    host_config: dict[str, Any] = {
        "network_mode": network,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        # Bounds, not needs (the sleeping busybox uses ~0.1 MB): `runc init` runs inside the
        # container's cgroup while it starts, with its own threads and memory, so tighter limits
        # (16 MiB, 4 pids) failed a start on a loaded machine ("cannot start a stopped process").
        "mem_limit": 64 * 2**20,
        "pids_limit": 64,
        "restart_policy": {"Name": "no"},
        "log_config": {"Type": "none", "Config": {}},
    }
    if dns:
        # Instances share the sandbox's resolv.conf: Docker refuses `dns` on a joined container.
        host_config["dns"] = [dns]
    return {
        "image": image,
        "entrypoint": [str(BUSYBOX), "sleep", str(SLEEP_S)],
        "user": "65534:65534",
        # Nothing to shut down cleanly, and `sleep` as PID 1 ignores SIGTERM: `docker stop`
        # (scripts/down) would otherwise wait out its timeout on every sandbox.
        "stop_signal": "SIGKILL",
        "labels": {
            names.LABEL_MANAGED: "true",
            names.LABEL_PLATFORM: platform,
            LABEL_ROLE: ROLE_SANDBOX,
            LABEL_DNS: dns,
        },
        "name": f"{platform}-sandbox-{secrets.token_hex(4)}",
        "host_config": host_config,  # network_mode alone attaches it to `network`
    }


def orphans(
    sandboxes: dict[str, float], named: Iterable[str], keep: Iterable[str], *, now: float
) -> list[str]:
    """Sandboxes (id -> created, epoch s) that no container names, that are not kept (spare or
    being started into), and are old enough that no start can still be on its way to them."""
    held = set(named) | set(keep)
    return sorted(i for i, created in sandboxes.items()
                  if i not in held and now - created >= ORPHAN_AGE_S)  # fmt: skip


def remove(client: docker.DockerClient, ident: str) -> None:
    """Remove a sandbox, never failing its caller: one left behind (dockerd away, a removal
    already under way) is an orphan the control plane's next listing sweeps."""
    try:
        client.api.remove_container(ident, force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
        get_log(component="sandboxes").warning(
            "sandbox_remove_failed", sandbox=ident[:12], error=str(e)
        )


class SandboxPool:
    def __init__(
        self,
        client: docker.DockerClient,
        *,
        platform: str,
        network: str,
        spares: int,
        dns: Callable[[], str],
        mark: Callable[[str], None] = lambda _ident: None,
        busybox: Path = BUSYBOX,
    ) -> None:
        self._client = client
        self._platform = platform
        self._network = network
        self._wanted = spares
        self._dns = dns  # read at each make: the resolver is known only once the network is
        self._mark = mark  # tells the engine's container cache a container changed
        self._busybox = busybox
        self._lock = threading.Lock()
        self._spares: list[Sandbox] = []
        self._claimed: set[str] = set()  # taken, its instance not yet created
        self._image = ""
        self._broken = ""  # why the last sandbox could not be made (an instance started directly)
        self._unmakeable = False  # no sandbox image: not tried again on a start's path
        self._wake = threading.Event()
        self._closed = False
        self._log = get_log(component="sandboxes")
        self._thread = threading.Thread(target=self._refill, name="sandboxes", daemon=True)

    def start(self, existing: dict[str, str]) -> None:
        """Adopt the spares a previous process left (sandbox id -> its dns label, those no
        instance names), then keep the pool full from a thread of its own."""
        for ident, dns in existing.items():
            if len(self._spares) < self._wanted and dns == self._dns():
                address = self._address(ident)
                if address:
                    self._spares.append(Sandbox(ident, address, dns))
                    continue
            self.remove(ident)
        self._thread.start()
        self._wake.set()

    @property
    def broken(self) -> str:
        return self._broken

    def spares(self) -> list[Sandbox]:
        with self._lock:
            return list(self._spares)

    def held(self) -> set[str]:
        """Sandboxes that must not be swept: the spares and those being started into."""
        with self._lock:
            return {s.id for s in self._spares} | set(self._claimed)

    def take(self) -> Sandbox | None:
        """A ready sandbox (a spare, else one made now); None when none can be made."""
        with self._lock:
            dns = self._dns()
            while self._spares:
                sandbox = self._spares.pop(0)
                if sandbox.dns == dns:
                    self._claimed.add(sandbox.id)
                    self._wake.set()
                    return sandbox
                threading.Thread(target=self.remove, args=(sandbox.id,), daemon=True).start()
        self._wake.set()
        if self._unmakeable:
            return None  # no image can be made: the refill thread keeps trying, starts do not
        made = self._make() or self._make()  # a start failing under load is tried again, once
        if made is not None:
            with self._lock:
                self._claimed.add(made.id)
        return made

    def drop_exited(self, states: dict[str, str]) -> None:
        """Spares the listing (sandbox id -> state) shows exited or paused (by hand) are removed
        and made again, instead of failing the start that would take them."""
        with self._lock:
            dead = [s for s in self._spares if states.get(s.id, "running") != "running"]
            self._spares = [s for s in self._spares if s not in dead]
        for sandbox in dead:
            self.remove(sandbox.id)
        if dead:
            self._wake.set()

    def settled(self, sandbox: Sandbox) -> None:
        """Its instance exists (or failed and the sandbox is removed): no longer claimed."""
        with self._lock:
            self._claimed.discard(sandbox.id)

    def remove(self, ident: str) -> None:
        try:
            remove(self._client, ident)
        finally:
            self._mark(ident)

    def close(self) -> None:
        """Stop refilling and remove the spares (a closing engine's tests leave nothing)."""
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a sandbox being made is removed before this returns
        with self._lock:
            spares, self._spares = self._spares, []
        for sandbox in spares:
            self.remove(sandbox.id)

    def _refill(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            while not self._closed:
                with self._lock:
                    short = len(self._spares) < self._wanted
                if not short:
                    break
                made = self._make()
                if made is None:
                    time.sleep(RETRY_S)  # dockerd away or refusing: try again, not in a loop
                    continue
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._spares.append(made)
                if closed:
                    self.remove(made.id)

    def _make(self) -> Sandbox | None:
        ident = ""
        try:
            dns = self._dns()
            kwargs = sandbox_kwargs(
                image=self._ensure_image(), platform=self._platform, network=self._network, dns=dns
            )
            host_config = self._client.api.create_host_config(**kwargs.pop("host_config"))
            ident = str(self._client.api.create_container(**kwargs, host_config=host_config)["Id"])
            self._client.api.start(ident)
            address = self._address(ident)
            if not address:
                raise RuntimeError(f"no address on {self._network}")
            self._mark(ident)
            self._broken = ""
            self._unmakeable = False
            return Sandbox(ident, address, dns)
        except (OSError, RuntimeError, docker.errors.DockerException,
                requests.exceptions.RequestException) as e:  # fmt: skip
            if ident:
                self.remove(ident)
            if not self._broken:
                fix = "install busybox-static (Debian) and check dockerd"
                self._log.warning("sandbox_unavailable", error=str(e), fix=fix)
            self._broken = str(e) or type(e).__name__
            return None

    def _address(self, ident: str) -> str:
        try:
            attrs = self._client.api.inspect_container(ident)
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            return ""
        if not (attrs.get("State") or {}).get("Running"):
            return ""
        nets: dict[str, Any] = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        return str((nets.get(self._network) or {}).get("IPAddress") or "")

    def _ensure_image(self) -> str:
        if self._image:
            return self._image
        self._unmakeable = True  # until the image exists
        busybox = self._busybox.read_bytes()
        if b"ld-linux" in busybox[:4096] or not shutil.which(str(self._busybox)):
            raise RuntimeError(f"{self._busybox} is not a static executable")
        tag = hashlib.sha256(busybox).hexdigest()[:12]
        image = f"{IMAGE_REPOSITORY}:{tag}"
        try:
            self._client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            self._client.api.import_image_from_data(
                image_tar(busybox), repository=IMAGE_REPOSITORY, tag=tag
            )
        self._image, self._unmakeable = image, False
        return image
