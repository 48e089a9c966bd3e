"""The tier below running, decided purely: which idle instance freezes, thaws, or stops.

When the KPA takes a routed revision to zero, one of its ready instances is drained and then
frozen (`docker pause`) instead of stopped: no CPU, its memory kept, no HAProxy server, so a
request goes to the activator exactly as at zero, and the activator thaws it (milliseconds)
instead of starting a container (the fraction of a second a `docker run` and the app's start
take). A frozen instance stops after the revision's frozen retention period
(`slipway.dev/frozen-retention-period`, 15 minutes unless set; "0" turns freezing off), when
host memory runs low (MemAvailable under the operator's floor), or when its revision is no
longer routed. The reconciler's scaling phase asks `choose` once per revision and pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.spec.autoscaling import frozen_retention_seconds
from pipeline.spec.base import SpecProblem

# Frozen instances stop when MemAvailable falls below this (SLIPWAY_FREEZE_MIN_AVAILABLE_MB).
DEFAULT_MIN_AVAILABLE_BYTES = 512 * 2**20


def retention_s(template: Mapping[str, Any]) -> float:
    """The revision's frozen retention period; 0 (off) for a value the spec would refuse (a
    stored template was checked on the way in, so this is defence, not a grammar)."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    try:
        return frozen_retention_seconds(annotations)
    except SpecProblem:
        return 0.0


def memory_low(meminfo: str, *, min_available_bytes: int) -> bool:
    """Whether /proc/meminfo's MemAvailable is under the floor; False when it says nothing."""
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            fields = rest.split()
            if fields and fields[0].isdigit():
                return int(fields[0]) * 1024 < min_available_bytes  # /proc reports kB
    return False


@dataclass(frozen=True, kw_only=True)
class Idle:
    """One revision's instances as freezing sees them (instance ids)."""

    active: tuple[str, ...] = ()  # running, not frozen, not draining; preferred first
    ready: frozenset[str] = frozenset()  # of all its instances, those that passed readiness
    freezing: tuple[str, ...] = ()  # drained to be frozen once idle, not frozen yet
    frozen: Mapping[str, float] = field(default_factory=dict)  # id -> frozen since


@dataclass(frozen=True, kw_only=True)
class Choice:
    freeze: str | None = None  # an active instance to drain, then freeze once idle
    reclaim: tuple[str, ...] = ()  # freezing instances taken back: instances are wanted again
    thaw: tuple[str, ...] = ()  # frozen instances to resume: cheaper than starting new ones
    stop: tuple[str, ...] = ()  # frozen instances to stop


def choose(
    idle: Idle, *, want: int, routed: bool, retention_s: float, low_memory: bool, now: float
) -> Choice:
    """`want`: the instances the autoscaler wants; `routed`: traffic (or a hold) names the
    revision, so the zero is the autoscaler's (idle), not the revision's retirement."""
    keep = routed and retention_s > 0 and not low_memory
    newest_first = sorted(idle.frozen.items(), key=lambda item: -item[1])
    stop = tuple(i for i, since in newest_first if not keep or now - since >= retention_s)
    frozen = [i for i, _ in newest_first if i not in stop]
    if want > 0:
        reclaim = idle.freezing[: max(want - len(idle.active), 0)]
        missing = want - len(idle.active) - len(reclaim)
        return Choice(reclaim=reclaim, thaw=tuple(frozen[: max(missing, 0)]), stop=stop)
    if not keep or frozen or idle.freezing:
        return Choice(stop=stop)  # one frozen instance per revision is enough to wake it
    return Choice(freeze=next((i for i in idle.active if i in idle.ready), None), stop=stop)
