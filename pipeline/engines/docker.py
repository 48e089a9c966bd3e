"""The embedded engine: instances are containers on a Slipway-owned Docker bridge network.

`container_kwargs` is the pure builder (revision config in, docker-py arguments out); the
`DockerEngine` methods apply it. Ownership is by label: only containers carrying this platform's
labels are ever listed, stopped or removed.

Instances are untrusted. The network is a bridge with inter-container traffic off
(`enable_icc=false`): an instance reaches the host side of the bridge (the gateway, where the
resolver, the metadata server and the internal listener are) and nothing else on the network, so
a private service's container cannot be called around HAProxy's token check. Every instance also
gets the defaults below: a memory and a pids limit, `no-new-privileges`, and Docker's default
capabilities minus those a web server never needs.

The control plane's engine starts instances into network sandboxes made ahead of time
(`engines.sandboxes`): an instance's address is its sandbox's, and the listing resolves it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

# docker-py's own translation of `containers.run` keywords into the create call's arguments
# (host config, networking config): the start path calls the API directly, with the same keywords.
from docker.models.containers import _create_container_args

from pipeline.core import names
from pipeline.core.errors import NotFound, SlipwayError, Unavailable
from pipeline.core.revisions import RevisionConfig, contract_env
from pipeline.engines import dockerlist
from pipeline.engines.base import Instance
from pipeline.engines.dockerlogs import DockerLogs
from pipeline.engines.dockerwatch import ContainerCache
from pipeline.engines.sandboxes import (
    LABEL_SANDBOX,
    Sandbox,
    SandboxPool,
    orphans,
)
from pipeline.engines.sandboxes import remove as remove_sandbox

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


ISOLATION_OPTION = "com.docker.network.bridge.enable_icc"
DEFAULT_MEMORY = "512Mi"  # Cloud Run's default; `resources.limits.memory` overrides it
PIDS_LIMIT = 1024  # a fork bomb stops here instead of exhausting the host
# Of Docker's default set: raw sockets (ARP/ICMP spoofing on the bridge), device nodes, audit
# writes, file capabilities, capability transfer, chroot and setgid-bit keeping. Kept: CHOWN,
# DAC_OVERRIDE, FOWNER, SETUID/SETGID (entrypoints that drop root), KILL, NET_BIND_SERVICE.
DROPPED_CAPABILITIES = (
    "NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SETPCAP", "SYS_CHROOT", "FSETID",
)  # fmt: skip


def memory_bytes(quantity: str) -> int:
    m = _QUANTITY.fullmatch(quantity.strip())
    if not m:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(m.group(1)) * _FACTORS[m.group(2)])


def nano_cpus(quantity: str) -> int:
    q = quantity.strip()
    if q.endswith("m"):
        return int(float(q[:-1]) * 10**6)
    return int(float(q) * 10**9)


def container_kwargs(
    *,
    platform: str,
    network: str,
    service: str,
    revision: str,
    instance: str,
    config: RevisionConfig,
    metadata_host: str = "",
    dns: str = "",
    sandbox: str = "",
) -> dict[str, Any]:
    """docker-py's `run` keywords for one instance; with `sandbox`, it joins that container's
    network namespace (and resolver) instead of getting one of its own on `network`."""
    env = dict(config.env)
    env.update(
        contract_env(
            service=service, revision=revision, port=config.port, metadata_host=metadata_host
        )
    )
    kwargs: dict[str, Any] = {
        "image": config.image,
        "name": names.container_name(platform, revision, instance),
        "labels": names.instance_labels(
            platform=platform, service=service, revision=revision, instance=instance
        ),
        "environment": env,
        "network": network,
        "detach": True,
        # docker-init as PID 1 forwards SIGTERM, so apps that do not handle signals still stop
        # within the grace period instead of always waiting for SIGKILL.
        "init": True,
        "restart_policy": {"Name": "no"},  # the reconciler replaces instances, not dockerd
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
        "mem_limit": memory_bytes(config.memory_limit or DEFAULT_MEMORY),
        "pids_limit": PIDS_LIMIT,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": list(DROPPED_CAPABILITIES),
    }
    if sandbox:
        del kwargs["network"]
        kwargs["network_mode"] = f"container:{sandbox}"
        kwargs["labels"][LABEL_SANDBOX] = sandbox
    elif dns:
        # Names under Slipway's domain resolve to the internal listener
        # (pipeline.dataplane.resolver).
        kwargs["dns"] = [dns]
    if config.command:
        kwargs["entrypoint"] = list(config.command)
    if config.args:
        kwargs["command"] = list(config.args)
    if config.working_dir:
        kwargs["working_dir"] = config.working_dir
    if config.cpu_limit:
        kwargs["nano_cpus"] = nano_cpus(config.cpu_limit)
    return kwargs


def is_isolated(attrs: dict[str, Any]) -> bool:
    """Whether a network's inspect data has inter-container traffic switched off."""
    return (attrs.get("Options") or {}).get(ISOLATION_OPTION) == "false"


class DockerEngine:
    def __init__(
        self,
        client: docker.DockerClient,
        *,
        platform: str,
        network: str,
        metadata_host: str = "",
        follow_events: bool = False,
    ) -> None:
        self._client = client
        self._platform = platform
        self._network = network
        self.metadata_host = metadata_host  # GCE_METADATA_HOST, once the server answers
        self.dns = ""  # the internal resolver's address, once the network is known
        self._labels = [f"{names.LABEL_MANAGED}=true", f"{names.LABEL_PLATFORM}={platform}"]
        # The control plane's engine lists from a cache kept by dockerd's events (one thread and
        # one connection for the process's life: short-lived engines list directly).
        self.cache: ContainerCache | None = None
        if follow_events:
            self.cache = ContainerCache(client, self._labels)
            self.cache.start()
        self.sandboxes: SandboxPool | None = None

    def keep_sandboxes(self, spares: int) -> None:
        """Keep `spares` network sandboxes ready to start instances into (`engines.sandboxes`);
        the spares a previous control plane left are taken over. The control plane's engine
        only, once `dns` is known: other engines start instances on the network directly."""
        if spares <= 0:
            return
        pool = SandboxPool(
            self._client, platform=self._platform, network=self._network, spares=spares,
            dns=lambda: self.dns, mark=self._mark,
        )  # fmt: skip
        try:
            listed = self.listing()
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
            raise Unavailable(f"cannot list containers: {e}") from e
        pool.start(dockerlist.spares_left(listed))
        self.sandboxes = pool

    def _mark(self, ident: str) -> None:
        if self.cache is not None:
            self.cache.mark(ident)

    @contextlib.contextmanager
    def _changing(self, ident: str) -> Iterator[None]:
        """Marks the container changed once the change is done (or failed): the next listing
        re-reads it from dockerd instead of waiting for its event."""
        try:
            yield
        finally:
            self._mark(ident)

    def ensure_network(self) -> None:
        """The platform's isolated bridge, created if missing; one made before isolation existed
        is replaced (its instances are removed first; the reconciler starts them again)."""
        try:
            network = self._network_or_none()
            if network is not None and not is_isolated(network.attrs):
                self._replace_unisolated(network)
                network = None
            if network is None:
                self._client.networks.create(
                    self._network,
                    driver="bridge",
                    options={ISOLATION_OPTION: "false"},
                    labels={names.LABEL_MANAGED: "true", names.LABEL_PLATFORM: self._platform},
                )
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
            raise Unavailable(f"cannot create Docker network {self._network}: {e}") from e

    def _network_or_none(self) -> Any:
        """The network with exactly this name: docker's `names` filter matches substrings, so
        another network whose name merely contains ours must not be taken for it."""
        found = [n for n in self._client.networks.list(names=[self._network])
                 if n.name == self._network]  # fmt: skip
        if not found:
            return None
        found[0].reload()
        return found[0]

    def _replace_unisolated(self, network: Any) -> None:
        attached = (network.attrs.get("Containers") or {}).keys()
        strangers = []
        for cid in attached:
            container = self._client.containers.get(cid)
            if (container.labels or {}).get(names.LABEL_PLATFORM) != self._platform:
                strangers.append(container.name)
        if strangers:
            raise Unavailable(
                f"Docker network {self._network} predates instance isolation and has containers "
                f"Slipway does not own attached ({', '.join(sorted(strangers))}): disconnect them "
                f"(docker network disconnect {self._network} NAME) and start Slipway again"
            )
        for cid in attached:
            self._client.containers.get(cid).remove(force=True)
        network.remove()

    def gateway(self) -> str:
        """The bridge network's gateway: the host as instances see it."""
        try:
            network = self._network_or_none()
            if network is None:
                raise Unavailable(f"Docker network {self._network} does not exist")
            configs = network.attrs.get("IPAM", {}).get("Config") or []
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
            raise Unavailable(f"cannot inspect Docker network {self._network}: {e}") from e
        gateways = [c["Gateway"] for c in configs if c.get("Gateway") and ":" not in c["Gateway"]]
        if not gateways:
            raise Unavailable(f"Docker network {self._network} has no IPv4 gateway")
        return str(gateways[0])

    def subnet(self) -> str:
        """The bridge network's IPv4 subnet: the only sources the internal listener accepts."""
        network = self._network_or_none()
        configs = (network.attrs.get("IPAM", {}).get("Config") or []) if network else []
        subnets = [c["Subnet"] for c in configs if c.get("Subnet") and ":" not in c["Subnet"]]
        if not subnets:
            raise Unavailable(f"Docker network {self._network} has no IPv4 subnet")
        return str(subnets[0])

    def list_instances(self) -> list[Instance]:
        # One listing call, not docker-py's `containers.list`, which inspects every container
        # after listing: a container removed in between (a stop finishing) failed the whole
        # call, and the inspects were most of a reconcile pass. Only stopped containers are
        # inspected (for their exit code and error), and one gone meanwhile is simply left out.
        try:
            if self.cache is None:
                listed = self.listing()
            else:
                listed = self.cache.read(self.listing, lambda ids: self.listing(ids=ids))
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
            raise Unavailable(f"cannot list containers: {e}") from e
        sandboxes = dockerlist.sandboxes_of(listed)
        if self.sandboxes is not None:
            self._sweep(listed, sandboxes)
        instances = []
        for entry in listed:
            if str(entry["Id"]) in sandboxes:
                continue
            if dockerlist.is_live(entry):
                instances.append(dockerlist.live_instance(entry, sandboxes, network=self._network))
                continue
            try:
                instances.append(self._instance(self._client.containers.get(entry["Id"])))
            except docker.errors.NotFound:
                continue  # removed since the listing: nothing left to manage
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
                raise Unavailable(f"cannot inspect container {entry['Id'][:12]}: {e}") from e
        return instances

    def listing(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """GET /containers/json for this platform's containers (only `ids`, when given), as
        dockerd returns it: what `dockerlist` reads. Docker errors are the caller's to turn."""
        filters: dict[str, Any] = {"label": self._labels}
        if ids is not None:
            filters["id"] = ids
        listed: list[dict[str, Any]] = self._client.api.containers(all=True, filters=filters)
        return listed

    def _sweep(self, listed: list[dict[str, Any]], sandboxes: dict[str, dict[str, Any]]) -> None:
        """Remove sandboxes no container names any more (their instance removed by hand, or a
        start that died between the two), once old enough that no start is still on its way."""
        assert self.sandboxes is not None
        self.sandboxes.drop_exited({i: str(e.get("State")) for i, e in sandboxes.items()})
        named = dockerlist.named_sandboxes(listed)
        created = {i: float(e.get("Created") or 0) for i, e in sandboxes.items()}
        for ident in orphans(created, named, self.sandboxes.held(), now=time.time()):
            self.sandboxes.remove(ident)

    def _instance(self, c: Any, *, sandbox: Sandbox | None = None) -> Instance:
        attrs: dict[str, Any] = c.attrs
        labels: dict[str, str] = attrs["Config"]["Labels"] or {}
        state: dict[str, Any] = attrs.get("State") or {}
        nets: dict[str, Any] = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        own = str((nets.get(self._network) or {}).get("IPAddress") or "")
        address = sandbox.address if sandbox is not None else own  # joined: no network of its own
        running = bool(state.get("Running"))
        return Instance(
            id=str(c.id),
            name=str(c.name),
            service=labels.get(names.LABEL_SERVICE, ""),
            revision=labels.get(names.LABEL_REVISION, ""),
            instance=labels.get(names.LABEL_INSTANCE, ""),
            address=address if running else "",
            running=running,
            frozen=running and bool(state.get("Paused")),
            exit_code=None if running else int(state.get("ExitCode") or 0),
            error=str(state.get("Error") or ""),
        )

    def start_instance(
        self, *, service: str, revision: str, instance: str, config: RevisionConfig
    ) -> Instance:
        sandbox = self.sandboxes.take() if self.sandboxes is not None else None
        kwargs = container_kwargs(
            platform=self._platform,
            network=self._network,
            service=service,
            revision=revision,
            instance=instance,
            config=config,
            metadata_host=self.metadata_host,
            dns=self.dns,
            sandbox=sandbox.id if sandbox else "",
        )
        try:
            # Three calls on a wake's path: create, start, inspect (docker-py's `run` plus a
            # reload was five with the image check: ~10-30 ms more before the app even starts).
            ident = self._create(kwargs)
            with self._changing(ident):
                self._client.api.start(ident)
                container = self._client.containers.prepare_model(
                    self._client.api.inspect_container(ident)
                )
        except docker.errors.ImageNotFound as e:
            self._discard(sandbox)
            raise NotFound(f"image {config.image} not found: {e.explanation}") from e
        except docker.errors.APIError as e:
            # A sandbox removed by hand since it was made fails the start here: the next pass
            # starts the instance again, into another.
            self._discard(sandbox)
            raise SlipwayError(f"cannot start {kwargs['name']}: {e.explanation}") from e
        except requests.exceptions.ConnectionError as e:
            self._discard(sandbox)
            raise Unavailable("Docker Engine is not reachable: is dockerd running?") from e
        finally:
            if sandbox is not None and self.sandboxes is not None:
                self.sandboxes.settled(sandbox)
        return self._instance(container, sandbox=sandbox)

    def _discard(self, sandbox: Sandbox | None) -> None:
        if sandbox is not None:
            self._remove_sandbox(sandbox.id)

    def _remove_sandbox(self, ident: str) -> None:
        """Remove a sandbox whose instance is gone (by any engine: a lone start's engine has no
        pool, and the sandbox was not its own)."""
        with self._changing(ident):
            remove_sandbox(self._client, ident)

    def _create(self, kwargs: dict[str, Any]) -> str:
        """Create the container (its id); an image not here yet is pulled first, once."""
        args = _create_container_args(
            {"command": None, **kwargs, "version": self._client.api._version}
        )
        try:
            return str(self._client.api.create_container(**args)["Id"])
        except docker.errors.ImageNotFound:
            self._pull(str(kwargs["image"]))
            return str(self._client.api.create_container(**args)["Id"])

    def _pull(self, image: str) -> None:
        try:
            self._client.api.pull(image)
        except docker.errors.APIError as e:
            raise NotFound(
                f"image {image} could not be pulled: {e.explanation}: is it in the registry?"
            ) from e

    def stop_instance(self, instance: Instance, *, grace_s: float) -> None:
        with self._changing(instance.id):
            try:
                container = self._client.containers.get(instance.id)
                labels = container.labels or {}
                if labels.get(names.LABEL_PLATFORM) != self._platform:
                    return  # never touch a container that is not ours
                sandbox = labels.get(LABEL_SANDBOX, "")
                if container.status == "paused":
                    # A frozen process cannot handle SIGTERM: thawed first, it shuts down cleanly
                    # instead of always waiting out the grace period for SIGKILL.
                    container.unpause()
                    container.reload()
                if container.status == "running":
                    container.stop(timeout=max(1, int(grace_s)))  # SIGTERM, then SIGKILL
                container.remove(force=True)
            except docker.errors.NotFound:
                return
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
                raise Unavailable(f"cannot stop {instance.name}: {e}") from e
        if sandbox:
            self._remove_sandbox(sandbox)  # only once its instance is gone: never under an app

    # Freeze and thaw take ids from `list_instances`, which lists only this platform's
    # containers; they go straight to the API (one call each: thaw is on a request's path).
    def freeze_instance(self, instance: Instance) -> None:
        """`docker pause`: the cgroup freezer stops every process; memory and sockets stay."""
        with self._changing(instance.id):
            try:
                self._client.api.pause(instance.id)
            except docker.errors.NotFound as e:
                raise NotFound(f"instance {instance.name} is gone") from e
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: already paused
                    raise SlipwayError(f"cannot freeze {instance.name}: {e.explanation}") from e
            except requests.exceptions.ConnectionError as e:
                raise Unavailable(f"cannot freeze {instance.name}: {e}") from e

    def thaw_instance(self, instance: Instance) -> None:
        """`docker unpause`. Docker refuses it both for a running container (thawed already:
        fine) and an exited one (killed while frozen: `NotFound`); inspect tells them apart."""
        with self._changing(instance.id):
            try:
                self._client.api.unpause(instance.id)
                return
            except docker.errors.APIError:
                pass
            except requests.exceptions.ConnectionError as e:
                raise Unavailable(f"cannot thaw {instance.name}: {e}") from e
            try:
                state = self._client.api.inspect_container(instance.id).get("State") or {}
            except docker.errors.NotFound as e:
                raise NotFound(f"instance {instance.name} is gone") from e
            except (docker.errors.APIError, requests.exceptions.ConnectionError) as e:
                raise Unavailable(f"cannot thaw {instance.name}: {e}") from e
            if not state.get("Running") or state.get("Paused"):
                status = state.get("Status", "unknown")
                raise NotFound(f"instance {instance.name} is {status}, not thawed")

    def logs_tail(self, instance: Instance, *, lines: int = 20) -> str:
        try:
            raw: bytes = self._client.containers.get(instance.id).logs(tail=lines)
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            return ""
        return raw.decode("utf-8", errors="replace").strip()

    def logs_reader(self) -> DockerLogs:
        """Instances' stdout and stderr as `slipway logs` reads them (`engines.dockerlogs`)."""
        return DockerLogs(self._client, platform=self._platform)
