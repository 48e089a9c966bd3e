"""The engine interfaces: the narrow surfaces the reconcilers drive.

Two shapes, because the two runtimes split the work differently:

- `Engine` (instance level): Slipway decides scale and routing itself and asks the engine for
  containers one at a time; the data plane (HAProxy) is Slipway's. The Docker engine.
- `ServiceEngine` (service level): the runtime owns instances, routing and autoscaling; Slipway
  hands it a whole service (its revisions and traffic) and reads the outcome back as
  `ServiceState`. The Knative engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pipeline.core.records import Revision, Service
from pipeline.core.revisions import RevisionConfig


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One running (or exited) instance of a revision, as the engine reports it."""

    id: str  # engine id (container id)
    name: str  # names.container_name(...)
    service: str
    revision: str
    instance: str  # short instance id, unique within the platform
    address: str  # IP on Slipway's network, "" when not running
    running: bool
    # Paused (cgroup freezer): no CPU, memory kept, not serving; `running` stays True.
    frozen: bool = False
    exit_code: int | None = None
    error: str = ""


class Engine(Protocol):
    def ensure_network(self) -> None: ...

    def list_instances(self) -> list[Instance]: ...

    def start_instance(
        self, *, service: str, revision: str, instance: str, config: RevisionConfig
    ) -> Instance: ...

    def stop_instance(self, instance: Instance, *, grace_s: float) -> None: ...

    def freeze_instance(self, instance: Instance) -> None:
        """Pause every process of the instance; its memory stays. Frozen already is fine."""
        ...

    def thaw_instance(self, instance: Instance) -> None:
        """Resume a frozen instance; running already is fine. `NotFound` when it is gone or
        exited (killed while frozen): the caller starts a fresh one."""
        ...

    def logs_tail(self, instance: Instance, *, lines: int = 20) -> str: ...


RevisionStatus = Literal["Pending", "Ready", "Failed"]


@dataclass(frozen=True, kw_only=True)
class RevisionState:
    """What the runtime says about one revision, in Slipway's words."""

    name: str
    status: RevisionStatus
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class RouteState:
    """One traffic target as the runtime serves it, with the URL it assigned."""

    revision: str
    percent: int
    tag: str = ""
    url: str = ""


@dataclass(frozen=True, kw_only=True)
class ServiceState:
    """A service as the runtime reports it; URLs come from here, never assumed."""

    name: str
    ready: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    url: str = ""
    latest_created: str = ""
    latest_ready: str = ""
    traffic: tuple[RouteState, ...] = ()
    revisions: tuple[RevisionState, ...] = ()

    def revision(self, name: str) -> RevisionState | None:
        return next((r for r in self.revisions if r.name == name), None)

    @property
    def urls(self) -> list[str]:
        """The service URL, then one URL per tag, as the runtime published them."""
        urls = [self.url] if self.url else []
        urls.extend(t.url for t in self.traffic if t.tag and t.url and t.url not in urls)
        return urls


class ServiceEngine(Protocol):
    """A runtime that runs whole services (Knative): apply, observe, delete."""

    def apply_service(self, *, service: Service, revisions: Sequence[Revision]) -> ServiceState:
        """Make the runtime run `service` (newest revision as its template); return its state."""
        ...

    def service_state(self, name: str) -> ServiceState | None:
        """The state of a service this Slipway owns; None if it does not exist."""
        ...

    def list_services(self) -> list[str]:
        """Names of the services this Slipway owns in the runtime."""
        ...

    def delete_service(self, name: str) -> None:
        """Remove the service and everything Slipway created for it; absent is fine."""
        ...
