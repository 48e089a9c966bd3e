"""The engine interface: the narrow surface the reconciler drives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.revisions import RevisionConfig


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
    exit_code: int | None = None
    error: str = ""


class Engine(Protocol):
    def ensure_network(self) -> None: ...

    def list_instances(self) -> list[Instance]: ...

    def start_instance(
        self, *, service: str, revision: str, instance: str, config: RevisionConfig
    ) -> Instance: ...

    def stop_instance(self, instance: Instance, *, grace_s: float) -> None: ...

    def logs_tail(self, instance: Instance, *, lines: int = 20) -> str: ...
