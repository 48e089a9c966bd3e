"""What one reconcile pass decided, as plain values: the `Plan` the loop applies.

`planner.plan` returns it without touching anything; `appliers.Applier` carries it out in a fixed
order: store writes (marks, notes), stops of exited instances, starts, the data plane, then the
stops of drained instances. Two actions keep a condition the applier checks as it acts, because
only the world can answer it at that moment: a `Stop` with `unless_busy` asks HAProxy (after the
plane put the server in drain) whether a request is still in flight, and a `Start` that fails
fails its revision only if the plan says it was still Pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.core.records import Revision
from pipeline.dataplane.model import DataPlane
from pipeline.engines.base import Instance
from pipeline.reconcile.inputs import Memory


@dataclass(frozen=True, kw_only=True)
class LogTail:
    """An instance's last log lines, read when the message goes to the store."""

    instance: Instance
    lines: int = 20


def with_logs(tail: str) -> str:
    """The end of a message that quotes an instance's logs."""
    return f"; last log lines:\n{tail}" if tail else " (it wrote no logs)"


@dataclass(frozen=True, kw_only=True)
class Mark:
    """`Store.mark_revision`: a Pending revision turns Ready or Failed."""

    revision: str
    status: str
    reason: str = ""
    message: str = ""
    logs: LogTail | None = None  # appended to the message (see with_logs)


@dataclass(frozen=True, kw_only=True)
class Note:
    """`Store.note`: a revision's condition changes, its status stays (CrashLoopBackOff)."""

    revision: str
    reason: str
    message: str
    logs: LogTail | None = None


@dataclass(frozen=True, kw_only=True)
class Start:
    revision: Revision  # its template and image, with secrets resolved as it starts
    fails_revision: bool  # still Pending: a container that cannot be created fails it


@dataclass(frozen=True, kw_only=True)
class Stop:
    instance: Instance
    backend: str = ""
    server: str = ""
    unless_busy: bool = False  # draining within its grace period: only once HAProxy has it idle
    freeze: bool = False  # pause it instead (the tier below running), and only once idle
    target: str = ""  # a freeze's host:port: where the activator forwards once it thaws it


@dataclass(frozen=True, kw_only=True)
class Event:
    """A log line the plan asks for: what it decided, with the ids it concerns."""

    name: str
    level: Literal["info", "warning"] = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Plan:
    marks: tuple[Mark, ...] = ()
    notes: tuple[Note, ...] = ()
    stops: tuple[Stop, ...] = ()  # exited instances: collected before anything starts
    starts: tuple[Start, ...] = ()
    thaws: tuple[Instance, ...] = ()  # frozen instances wanted again: before the plane
    plane: DataPlane
    drained: tuple[Stop, ...] = ()  # after the plane: instances whose drain may end now
    serving: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # rev -> host:port
    # rev -> its frozen instances with their host:port: the activator thaws one of these.
    frozen: Mapping[str, tuple[tuple[Instance, str], ...]] = field(default_factory=dict)
    unready: bool = False  # an instance is running but not ready yet: probe often
    events: tuple[Event, ...] = ()
    memory: Memory  # for the next pass
