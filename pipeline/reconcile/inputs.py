"""What a reconcile pass decides from, besides the store's snapshot: plain values.

`Observed` is what the loop read from the world at the start of the pass (containers, probes,
HAProxy's figures, the deployer's holds); `Memory` is what the loop carries from one pass to the
next (which instances proved ready, which drain, crash counts, the autoscaler's tracks, the hosts
left out of the data plane); `Rules` is the loop's fixed configuration. `planner.plan` takes them
and returns the next `Memory` inside its `Plan`; nothing here changes in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from pipeline.autoscale.scaler import Load, Track
from pipeline.dataplane.model import JwtPolicy
from pipeline.engines.base import Instance


@dataclass(frozen=True, kw_only=True)
class Observed:
    instances: tuple[Instance, ...] = ()  # the containers Slipway owns, running or exited
    passed: frozenset[str] = frozenset()  # instance ids whose readiness probe passed just now
    stopping: frozenset[str] = frozenset()  # instance ids whose stop is under way
    holds: frozenset[str] = frozenset()  # revisions the deployer keeps warm (hold/release)
    load: Mapping[str, Load] = field(default_factory=dict)  # HAProxy's figures per backend
    # Per backend with ready instances, the servers HAProxy's checks hold down.
    down: Mapping[str, frozenset[str]] = field(default_factory=dict)
    jwt: JwtPolicy | None = None  # issuer and live keys for private services
    # Starts of Ready revisions' instances that failed last pass: revision -> why.
    failed_starts: Mapping[str, str] = field(default_factory=dict)
    # Revisions whose frozen instance the activator thawed, or for which it asked for an
    # instance, since the last pass: demand the load figures may have missed (a thawed request
    # can be over before the next sample; a request held across a reload is in no current
    # worker's stats).
    thawed: frozenset[str] = frozenset()
    low_memory: bool = False  # MemAvailable is under the floor: frozen instances stop


@dataclass(frozen=True, kw_only=True)
class Memory:
    ready: frozenset[str] = frozenset()  # instance ids that passed readiness
    draining: Mapping[str, float] = field(default_factory=dict)  # instance id -> drain start
    crashes: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # rev -> (n, last)
    down_passes: Mapping[str, int] = field(default_factory=dict)  # instance id -> passes down
    tracks: Mapping[str, Track] = field(default_factory=dict)  # the autoscaler's, per revision
    decided: Mapping[str, int] = field(default_factory=dict)  # last decision per revision (logs)
    rejected: frozenset[str] = frozenset()  # hosts the data plane left out (logged once)
    freezing: frozenset[str] = frozenset()  # draining instances to freeze (not stop) once idle
    frozen: Mapping[str, float] = field(default_factory=dict)  # instance id -> frozen since

    def settled(self, *, instances: Iterable[Instance], passed: frozenset[str]) -> Memory:
        """Forget instances that are gone; remember the ones whose probe passed. A frozen
        instance's drain is over; one no longer frozen (thawed) is no longer remembered so."""
        instances = tuple(instances)
        live = {i.id for i in instances}
        frozen = {i.id for i in instances if i.frozen}
        return replace(
            self,
            ready=(self.ready & live) | passed,
            draining={k: v for k, v in self.draining.items() if k in live and k not in frozen},
            freezing=self.freezing & (live - frozen),
            frozen={k: v for k, v in self.frozen.items() if k in frozen},
        )


@dataclass(frozen=True, kw_only=True)
class Rules:
    domain: str
    readiness_timeout_s: float  # a Pending revision fails when no instance is ready by then
    grace_s: float  # longest drain, and SIGTERM to SIGKILL
    allow_zero: bool = False  # only with the activator: it holds the first request
    zero_grace_s: float = 30.0
    freeze: bool = False  # idle instances freeze before they stop (with allow_zero only)

    @property
    def floor(self) -> int:
        return 0 if self.allow_zero else 1
