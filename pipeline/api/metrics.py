"""`/metrics`: what HAProxy counts and what Slipway knows, as Prometheus text, one label scheme.

Pure: the API route (`pipeline/api/metrics_route.py`) gathers the values — HAProxy's `show stat`
rows, a store snapshot, the builds, the instances the engine reports, the reconciler's pass count
and time — and `render` turns them into the text exposition format (version 0.0.4). Labels are
always `service`, `revision` and, where a traffic target has one, `tag`.

Where the figures come from, and what they honestly are:

- Requests, in flight, queued and latency are HAProxy's, per revision backend. Tag routes share
  their revision's backend, so requests are counted per revision, not per URL; which tags point
  at a revision is `slipway_traffic_percent{tag=...}` (join on `revision`).
- Latency is HAProxy's average over the last 1024 requests and the maximum since the worker
  started (gauges): HAProxy keeps no histogram, and Slipway does not invent one.
- HAProxy's counters belong to the current worker: a reload (a revision added or removed, a
  split routed; not a whole-service traffic move, which is a runtime map change) restarts
  them from zero, which Prometheus' `rate()` treats as the counter reset it is.
- Builds and deploy durations come from the database, so they survive restarts and are exact
  histograms over every recorded build and ready revision.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.core import names
from pipeline.core.records import Build, Snapshot
from pipeline.engines.base import Instance
from pipeline.reconcile.routing import resolve_traffic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
PHASES = {"queue": "qtime", "connect": "ctime", "response": "rtime", "total": "ttime"}
INSTANCE_STATES = (
    "starting", "ready", "draining", "unhealthy", "stopping", "frozen", "exited",
)  # fmt: skip
REVISION_STATUSES = ("Pending", "Ready", "Failed")
BUILD_OUTCOMES = ("succeeded", "failed")
# Builds take seconds to minutes; deploys (build start to Ready) a little longer.
DURATION_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything one scrape reads. `stats`/`instances` are None when HAProxy/the engine did not
    answer: their metrics are left out and `slipway_component_up` says so."""

    snapshot: Snapshot
    builds: Sequence[Build] = ()
    instances: Sequence[Instance] | None = None
    stats: Sequence[Mapping[str, str]] | None = None
    reconcile_passes: int = 0
    # (seconds spent in passes since start, the last pass's seconds)
    reconcile_seconds: tuple[float, float] = (0.0, 0.0)
    # revision -> the autoscaler's view (scaling.Scaler.view): desired, averages, panic, EBC.
    autoscaler: Mapping[str, Mapping[str, float | bool]] = field(default_factory=dict)


@dataclass(kw_only=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((self.name + suffix, tuple(labels.items()), value))


def render(inputs: Inputs) -> str:
    families = [
        _component_up(inputs),
        *_request_families(inputs),
        *_instance_families(inputs),
        *_revision_families(inputs.snapshot),
        *_build_families(inputs.builds),
        _deploy_durations(inputs.snapshot, inputs.builds),
        _reconcile_passes(inputs.reconcile_passes),
        *_reconcile_seconds(*inputs.reconcile_seconds),
        *_autoscaler_families(inputs),
    ]
    return exposition(families)


def exposition(families: Iterable[Family]) -> str:
    out: list[str] = []
    for fam in families:
        out.append(f"# HELP {fam.name} {_escape_help(fam.help)}\n")
        out.append(f"# TYPE {fam.name} {fam.kind}\n")
        for name, labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            out.append(f"{name}{{{text}}}" if text else name)
            out.append(f" {_number(value)}\n")
    return "".join(out)


# HAProxy ------------------------------------------------------------------------------------------
def revision_backends(
    stats: Sequence[Mapping[str, str]], snapshot: Snapshot
) -> dict[str, tuple[Mapping[str, str], list[Mapping[str, str]]]]:
    """Revision name -> (its BACKEND row, its server rows), for revisions the store knows."""
    known = {names.backend_name(r.name): r.name for r in snapshot.revisions}
    backends: dict[str, tuple[Mapping[str, str], list[Mapping[str, str]]]] = {}
    servers: dict[str, list[Mapping[str, str]]] = {}
    for row in stats:
        revision = known.get(row.get("pxname", ""))
        if revision is None:
            continue
        if row.get("svname") == "BACKEND":
            backends[revision] = (row, servers.setdefault(revision, []))
        else:
            servers.setdefault(revision, []).append(row)
    return backends


def server_state(row: Mapping[str, str]) -> str:
    """An instance's state from its server row: what HAProxy will do with new requests."""
    status = row.get("status", "")
    if status.startswith("UP"):  # "UP", or "UP 1/2" while a failing check is not yet decisive
        return "ready"
    if status == "DRAIN":
        return "draining"
    if status.startswith("MAINT"):
        return "stopping"  # taken out of rotation, about to be deleted
    return "unhealthy"  # DOWN, NOLB: health checks or observed errors took it out


def _request_families(inputs: Inputs) -> list[Family]:
    if inputs.stats is None:
        return []
    service_of = {r.name: r.service for r in inputs.snapshot.revisions}
    requests = Family(
        name="slipway_requests_total",
        kind="counter",
        help="HTTP responses sent for the revision, by status class (HAProxy, since the "
        "current worker started; tag URLs count toward their revision)",
    )
    in_flight = Family(
        name="slipway_requests_in_flight",
        kind="gauge",
        help="Requests being served by the revision's instances (HAProxy scur)",
    )
    queued = Family(
        name="slipway_requests_queued",
        kind="gauge",
        help="Requests waiting for a free instance of the revision (HAProxy qcur)",
    )
    avg = Family(
        name="slipway_request_time_average_seconds",
        kind="gauge",
        help="Average time of the revision's last 1024 requests, by phase: queue, connect, "
        "response (first byte), total (HAProxy qtime/ctime/rtime/ttime)",
    )
    peak = Family(
        name="slipway_request_time_max_seconds",
        kind="gauge",
        help="Longest request time by phase since the current HAProxy worker started",
    )
    errors = Family(
        name="slipway_backend_errors_total",
        kind="counter",
        help="Failed connections to instances (connect) and aborted or invalid responses "
        "(response), for the revision (HAProxy econ/eresp)",
    )
    ready = Family(
        name="slipway_revision_ready_instances",
        kind="gauge",
        help="Instances of the revision HAProxy sends new requests to",
    )
    backends = revision_backends(inputs.stats, inputs.snapshot)
    for revision, (row, servers) in sorted(backends.items()):
        labels = {"service": service_of[revision], "revision": revision}
        for cls in STATUS_CLASSES:
            requests.add(_int(row, f"hrsp_{cls}"), **labels, response_code_class=cls)
        in_flight.add(_int(row, "scur"), **labels)
        queued.add(_int(row, "qcur"), **labels)
        for phase, key in PHASES.items():
            avg.add(_int(row, key) / 1000, **labels, phase=phase)
            peak.add(_int(row, f"{key}_max") / 1000, **labels, phase=phase)
        errors.add(_int(row, "econ"), **labels, kind="connect")
        errors.add(_int(row, "eresp"), **labels, kind="response")
        ready.add(sum(server_state(s) == "ready" for s in servers), **labels)
    return [requests, in_flight, queued, avg, peak, errors, ready]


# Slipway ------------------------------------------------------------------------------------------
def _component_up(inputs: Inputs) -> Family:
    fam = Family(
        name="slipway_component_up",
        kind="gauge",
        help="1 if the component answered this scrape (dataplane: HAProxy's admin socket; "
        "engine: Docker); its metrics are missing otherwise",
    )
    fam.add(0 if inputs.stats is None else 1, component="dataplane")
    fam.add(0 if inputs.instances is None else 1, component="engine")
    return fam


def _instance_families(inputs: Inputs) -> list[Family]:
    if inputs.instances is None:
        return []
    fam = Family(
        name="slipway_instances",
        kind="gauge",
        help="Instance containers by state: starting (running, not yet in HAProxy), ready, "
        "draining, unhealthy (health checks failing), stopping, frozen (paused while idle), "
        "exited",
    )
    rows: dict[tuple[str, str], Mapping[str, str]] = {}
    if inputs.stats is not None:
        for revision, (_row, servers) in revision_backends(inputs.stats, inputs.snapshot).items():
            for s in servers:
                rows[(revision, s.get("svname", ""))] = s
    counts: Counter[tuple[str, str, str]] = Counter()
    revisions: set[tuple[str, str]] = set()
    for inst in inputs.instances:
        revisions.add((inst.service, inst.revision))
        if not inst.running:
            state = "exited"
        elif inst.frozen and inputs.stats is not None:
            state = "frozen"
        elif inputs.stats is None:
            state = "running"  # without HAProxy's view, ready or not is unknown
        else:
            row = rows.get((inst.revision, names.server_name(inst.instance)))
            state = "starting" if row is None else server_state(row)
        counts[(inst.service, inst.revision, state)] += 1
    states = INSTANCE_STATES if inputs.stats is not None else ("running", "exited")
    for service, revision in sorted(revisions):
        for state in states:
            fam.add(counts[(service, revision, state)], service=service, revision=revision,
                    state=state)  # fmt: skip
    return [fam]


def _revision_families(snapshot: Snapshot) -> list[Family]:
    revisions = Family(
        name="slipway_revisions", kind="gauge", help="Revisions of the service by status"
    )
    traffic = Family(
        name="slipway_traffic_percent",
        kind="gauge",
        help="Percent of the service's requests each traffic target gets; a tagged target is "
        "also served alone at http://<tag>--<service>.<domain> (join on revision)",
    )
    for svc in sorted(snapshot.services, key=lambda s: s.name):
        own = snapshot.revisions_of(svc.name)
        by_status = Counter(r.status for r in own)
        for status in REVISION_STATUSES:
            revisions.add(by_status[status], service=svc.name, status=status)
        percents: Counter[tuple[str, str]] = Counter()
        for target in resolve_traffic(svc, own):
            percents[(target.revision, target.tag)] += target.percent
        for (revision, tag), percent in sorted(percents.items()):
            traffic.add(percent, service=svc.name, revision=revision, tag=tag)
    return [revisions, traffic]


def _build_families(builds: Sequence[Build]) -> list[Family]:
    total = Family(name="slipway_builds_total", kind="counter", help="Finished builds by outcome")
    running = Family(name="slipway_builds_running", kind="gauge", help="Builds in progress")
    durations = Family(
        name="slipway_build_duration_seconds",
        kind="histogram",
        help="Time from a build's start to its image being pushed (or its failure)",
    )
    by_key: dict[tuple[str, str], list[float]] = {}
    active: Counter[str] = Counter()
    for b in builds:
        if b.status == "running" or b.finished_at is None:
            active[b.service] += 1
            continue
        seconds = (b.finished_at - b.created_at).total_seconds()
        by_key.setdefault((b.service, b.status), []).append(seconds)
    for service in sorted({b.service for b in builds}):
        for outcome in BUILD_OUTCOMES:
            values = by_key.get((service, outcome), [])
            total.add(len(values), service=service, outcome=outcome)
            _histogram(durations, values, service=service, outcome=outcome)
        running.add(active[service], service=service)
    return [total, running, durations]


def _deploy_durations(snapshot: Snapshot, builds: Sequence[Build]) -> Family:
    fam = Family(
        name="slipway_deploy_duration_seconds",
        kind="histogram",
        help="Time from the start of a deploy (its build, or the revision's creation for an "
        "image) until the new revision was ready",
    )
    started = {b.id: b.created_at for b in builds}
    by_service: dict[str, list[float]] = {s.name: [] for s in snapshot.services}
    for rev in snapshot.revisions:
        if rev.status != "Ready" or rev.ready_at is None:
            continue
        start = started.get(rev.build_id or "", rev.created_at)
        by_service.setdefault(rev.service, []).append((rev.ready_at - start).total_seconds())
    for service, values in sorted(by_service.items()):
        _histogram(fam, values, service=service)
    return fam


def _reconcile_passes(passes: int) -> Family:
    fam = Family(
        name="slipway_reconcile_passes_total",
        kind="counter",
        help="Reconciler passes finished since the control plane started",
    )
    fam.add(passes)
    return fam


def _reconcile_seconds(total_s: float, last_s: float) -> list[Family]:
    """A pass's cost: the total over the passes counter is the mean pass, `rate()` of both the
    mean over a window; the last pass's time for a glance."""
    total = Family(
        name="slipway_reconcile_pass_seconds_total",
        kind="counter",
        help="Seconds the reconciler spent in passes since the control plane started",
    )
    total.add(total_s)
    last = Family(
        name="slipway_reconcile_last_pass_seconds",
        kind="gauge",
        help="How long the reconciler's last finished pass took",
    )
    last.add(last_s)
    return [total, last]


AUTOSCALER_GAUGES = (
    ("desired", "slipway_autoscaler_desired_instances", "Instances the autoscaler wants"),
    ("in_flight_stable", "slipway_autoscaler_stable_in_flight",
     "Average requests in flight (metric rps: per second) over the stable window"),
    ("in_flight_panic", "slipway_autoscaler_panic_in_flight",
     "Average requests in flight (metric rps: per second) over the panic window"),
    ("panic", "slipway_autoscaler_panic_mode", "1 while the autoscaler is in panic mode"),
    ("excess_burst_capacity", "slipway_autoscaler_excess_burst_capacity",
     "Spare in-flight capacity at the target; negative: requests wait for instances"),
)  # fmt: skip


def _autoscaler_families(inputs: Inputs) -> list[Family]:
    services = {r.name: r.service for r in inputs.snapshot.revisions}
    families = []
    for key, name, text in AUTOSCALER_GAUGES:
        fam = Family(name=name, kind="gauge", help=text)
        for revision, view in sorted(inputs.autoscaler.items()):
            if revision in services and key in view:
                fam.add(float(view[key]), service=services[revision], revision=revision)
        families.append(fam)
    return families


# helpers ------------------------------------------------------------------------------------------
def _histogram(fam: Family, values: Sequence[float], **labels: str) -> None:
    for bound in DURATION_BUCKETS_S:
        fam.add(sum(v <= bound for v in values), "_bucket", **labels, le=str(float(bound)))
    fam.add(len(values), "_bucket", **labels, le="+Inf")
    fam.add(sum(values), "_sum", **labels)
    fam.add(len(values), "_count", **labels)


def _int(row: Mapping[str, str], key: str) -> int:
    value = row.get(key) or ""
    return int(value) if value.lstrip("-").isdigit() else 0


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")
