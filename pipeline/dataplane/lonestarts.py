"""The activator alone: an instance for a request while the control plane is down.

From the desired state the control plane last wrote (`desiredcache`) and the containers the
engine lists, `decide` picks one step for a revision (pure): use a running instance, thaw a
frozen one, or start one. `LoneStarts.instance_for` applies it and, for a start, probes the
readiness itself. The instance it starts carries the platform's labels (the engine adds them),
so the control plane adopts it when it is back, as it adopts everything it finds running.

Requests for one revision take a per-revision lock, so a burst at zero starts one instance,
not one each. While the control plane is down HAProxy is not told of the instance (only the
control plane changes HAProxy): every request of the revision keeps coming here, so the address
is remembered and listed again only every few seconds, not per request.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.revisions import Readiness, RevisionConfig
from pipeline.dataplane.desiredcache import Wanted
from pipeline.engines.base import Engine, Instance

Probe = Callable[[str, int, Readiness], bool]
WaitForInstance = Callable[[str, float], "str | None"]  # (revision, timeout_s) -> host:port
REMEMBERED_S = 2.0  # how long a found address is used before the containers are listed again
PROBE_EVERY_S = 0.1


@dataclass(frozen=True, kw_only=True)
class Step:
    kind: Literal["use", "thaw", "start"]
    instance: Instance | None = None  # the one to use or thaw


def decide(instances: Sequence[Instance], revision: str) -> Step:
    """Pure: a running instance of the revision first (no start, no thaw), then a frozen one
    (one `docker unpause`), else a start. Exited ones are the control plane's to collect."""
    mine = [i for i in instances if i.revision == revision and i.running and i.address]
    running = [i for i in mine if not i.frozen]
    if running:
        return Step(kind="use", instance=running[0])
    if mine:
        return Step(kind="thaw", instance=mine[0])
    return Step(kind="start")


class LoneStarts:
    def __init__(
        self,
        *,
        engine: Callable[[], Engine],
        desired: Callable[[], dict[str, Wanted]],
        resolve: Callable[[RevisionConfig], RevisionConfig],
        probe: Probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine  # made on first use: Docker may be down while nothing needs it
        self._desired = desired
        self._resolve = resolve  # secret values, read right before a start
        self._probe = probe
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._known: dict[str, tuple[str, float]] = {}  # revision -> (host:port, found at)
        self._log = get_log(component="activator")

    def instance_for(self, revision: str, timeout_s: float) -> str | None:
        """host:port of a ready instance of `revision`, or None (unknown revision, the engine
        refused, or not ready within `timeout_s`)."""
        deadline = self._clock() + timeout_s
        with self._guard:
            lock = self._locks.setdefault(revision, threading.Lock())
        if not lock.acquire(timeout=max(0.0, timeout_s)):
            return None
        try:
            known = self._known.get(revision)
            if known is not None and self._clock() - known[1] < REMEMBERED_S:
                return known[0]
            address = self._find(revision, deadline)
            if address is None:
                self._known.pop(revision, None)
            else:
                self._known[revision] = (address, self._clock())
            return address
        finally:
            lock.release()

    def _find(self, revision: str, deadline: float) -> str | None:
        wanted = self._desired().get(revision)
        if wanted is None:
            self._log.warning("activation_unknown_revision", revision=revision)
            return None
        port = wanted.config.port
        try:
            engine = self._engine()
            step = decide(engine.list_instances(), revision)
            if step.kind == "thaw" and step.instance is not None:
                engine.thaw_instance(step.instance)
                self._log.info("instance_thawed_alone", revision=revision,
                               instance=step.instance.name)  # fmt: skip
                return f"{step.instance.address}:{port}"
            inst = step.instance
            if inst is None:
                inst = engine.start_instance(
                    service=wanted.service,
                    revision=revision,
                    instance=secrets.token_hex(3),
                    config=self._resolve(wanted.config),
                )
                self._log.info("instance_started_alone", revision=revision, instance=inst.name)
        except SlipwayError as e:
            self._log.warning("activation_alone_failed", revision=revision, error=e.message)
            return None
        return self._ready(inst, wanted.config, deadline)

    def _ready(self, inst: Instance, config: RevisionConfig, deadline: float) -> str | None:
        """The instance's host:port once its readiness probe passes, or None at the deadline."""
        while True:
            if self._probe(inst.address, config.port, config.readiness):
                return f"{inst.address}:{config.port}"
            if self._clock() >= deadline:
                self._log.warning("activation_alone_timed_out", revision=inst.revision,
                                  instance=inst.name)  # fmt: skip
                return None
            time.sleep(PROBE_EVERY_S)


def ask_then_alone(
    *,
    ask: Callable[[str, float], str | None],
    alone: Callable[[str, float], str | None],
    down: type[Exception],
    clock: Callable[[], float] = time.monotonic,
) -> WaitForInstance:
    """The activator's `wait_for_instance`: the control plane's answer while it is up (`ask`),
    and only when it raises `down` (not there, or killed mid-ask) the activator's own, within
    what is left of the request's wait."""

    def wait_for_instance(revision: str, timeout_s: float) -> str | None:
        deadline = clock() + timeout_s
        try:
            return ask(revision, timeout_s)
        except down:
            return alone(revision, max(0.0, deadline - clock()))

    return wait_for_instance
