"""Knative's `status` in, Slipway's words out: revision Ready/Failed with a reason, and URLs.

Knative reports readiness as conditions (`type: Ready`, `status: True|False|Unknown`, a
`reason` and a `message`). Each failure reason it uses for revisions maps to the reason Slipway's
embedded engine gives for the same failure, with a hint that says what to do; a reason not in
the table passes through as Knative spelled it. URLs are read from `status.url` and
`status.traffic[].url`, never assumed: the cluster's domain and tag templates decide them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pipeline.engines.base import RevisionState, RouteState, ServiceState

Condition = dict[str, Any]

# Knative reason -> (Slipway reason, what to do).
REASONS: dict[str, tuple[str, str]] = {
    "ProgressDeadlineExceeded": (
        "ReadinessTimeout",
        "no pod became ready within Knative's progress deadline: the app must listen on $PORT",
    ),
    "ContainerMissing": (
        "ImageNotFound",
        "Knative could not resolve the image: is it in the registry, and can the cluster "
        "reach and authenticate to that registry?",
    ),
    "ErrImagePull": ("ImageNotFound", "the nodes could not pull the image"),
    "ImagePullBackOff": ("ImageNotFound", "the nodes could not pull the image"),
    "InvalidImageName": ("ImageNotFound", "the image reference is not valid"),
    "CrashLoopBackOff": ("ExitCode", "the container keeps exiting: see its logs"),
    "RevisionFailed": ("RevisionFailed", ""),
    "RevisionMissing": (
        "RevisionMissing",
        "the cluster has no revision of that name: revisions made before this cluster was "
        "used are not recreated; deploy again",
    ),
    "Unschedulable": ("Unschedulable", "no node can run the pod: lower the resource requests"),
}
_EXIT_CODE = re.compile(r"^ExitCode(-?\d+)$")
QUEUE_CONTAINER = "queue-proxy"  # Knative's sidecar in every revision pod
# A container's waiting reasons that explain why a revision is not ready yet.
WAITING_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff")


def condition(conditions: Iterable[Condition] | None, kind: str = "Ready") -> Condition | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def slipway_reason(reason: str, message: str) -> tuple[str, str]:
    """A Knative condition reason and message as Slipway's (reason, message)."""
    exit_code = _EXIT_CODE.fullmatch(reason)
    if exit_code:
        text = f"the container exited with code {exit_code.group(1)}"
        return "ExitCode", f"{text}: {message}" if message else text
    mapped, hint = REASONS.get(reason, (reason or "Failed", ""))
    parts = [part for part in (hint, f"Knative: {message}" if message else "") if part]
    return mapped, "; ".join(parts)


def revision_state(obj: dict[str, Any]) -> RevisionState:
    """One Knative Revision object's status as Slipway's revision status."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    status: dict[str, Any] = obj.get("status") or {}
    ready = condition(status.get("conditions"))
    if ready is None or ready.get("status") == "Unknown":
        return RevisionState(name=name, status="Pending")
    if ready.get("status") == "True":
        return RevisionState(name=name, status="Ready")
    # Ready=False: the most specific failing condition explains it best.
    cause = next(
        (
            c
            for c in status.get("conditions") or ()
            if c.get("type") in ("ContainerHealthy", "ResourcesAvailable")
            and c.get("status") == "False"
        ),
        ready,
    )
    reason, message = slipway_reason(
        str(cause.get("reason") or ""), str(cause.get("message") or "")
    )
    return RevisionState(name=name, status="Failed", reason=reason, message=message)


def pods_state(name: str, pods: Iterable[dict[str, Any]]) -> RevisionState | None:
    """What a revision's pods show before Knative's condition does, or None.

    Knative looks at the pods only when it reconciles the revision, which a crash-looping pod
    does not trigger (the Deployment's status does not change): on the real cluster an app that
    exits got its `ExitCode<N>` condition only at the Deployment's progress deadline (600 s by
    default). A user container that has exited is final here, as it is for Knative (`Failed`,
    with the log tail Knative makes the termination message). A container waiting on its image
    stays `Pending` with the reason: image pulls are retried, so it only explains a timeout.
    """
    waiting: RevisionState | None = None
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # a pod going away exits because it was told to
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            if container.get("name") == QUEUE_CONTAINER:
                continue
            terminated = (container.get("state") or {}).get("terminated") or (
                container.get("lastState") or {}
            ).get("terminated")
            if terminated:
                message = str(terminated.get("message") or terminated.get("reason") or "")
                code = int(terminated.get("exitCode") or 0)
                reason, text = slipway_reason(f"ExitCode{code}", message.strip())
                return RevisionState(name=name, status="Failed", reason=reason, message=text)
            why = (container.get("state") or {}).get("waiting") or {}
            if waiting is None and why.get("reason") in WAITING_REASONS:
                reason, text = slipway_reason(str(why["reason"]), str(why.get("message") or ""))
                waiting = RevisionState(name=name, status="Pending", reason=reason, message=text)
    return waiting


def service_state(obj: dict[str, Any], revisions: Iterable[dict[str, Any]] = ()) -> ServiceState:
    """A Knative Service (and its Revision objects) as Slipway's `ServiceState`."""
    metadata: dict[str, Any] = obj.get("metadata") or {}
    status: dict[str, Any] = obj.get("status") or {}
    current = status.get("observedGeneration") == metadata.get("generation")
    ready = condition(status.get("conditions")) if current else None
    ready_status: Literal["True", "False", "Unknown"] = "Unknown"
    if ready is not None and ready.get("status") in ("True", "False"):
        ready_status = "True" if ready.get("status") == "True" else "False"
    traffic = tuple(
        RouteState(
            revision=str(t.get("revisionName") or ""),
            percent=int(t.get("percent") or 0),
            tag=str(t.get("tag") or ""),
            url=str(t.get("url") or ""),
        )
        for t in status.get("traffic") or ()
    )
    return ServiceState(
        name=str(metadata.get("name") or ""),
        ready=ready_status,
        reason=str((ready or {}).get("reason") or ""),
        message=str((ready or {}).get("message") or ""),
        url=str(status.get("url") or ""),
        latest_created=str(status.get("latestCreatedRevisionName") or ""),
        latest_ready=str(status.get("latestReadyRevisionName") or ""),
        traffic=traffic,
        revisions=tuple(sorted((revision_state(r) for r in revisions), key=lambda r: r.name)),
    )


TrafficOutcome = Literal["taken", "refused", "pending"]


def traffic_outcome(obj: dict[str, Any] | None) -> tuple[TrafficOutcome, str]:
    """Whether Knative's Route took the traffic in the Service's spec: `taken` once its status
    serves exactly that split, `refused` (with Slipway's words for Knative's) when the Route
    marked the current generation's traffic bad, else `pending`.

    Knative's webhook accepts a traffic target naming a revision the cluster does not have (one
    its garbage collector removed, say); the Route then reports `RevisionMissing` and keeps
    serving its previous split, so the refusal is only ever visible here.
    """
    if obj is None:
        return "pending", ""
    metadata: dict[str, Any] = obj.get("metadata") or {}
    status: dict[str, Any] = obj.get("status") or {}
    if status.get("observedGeneration") != metadata.get("generation"):
        return "pending", ""
    routes = condition(status.get("conditions"), "RoutesReady")
    if routes is not None and routes.get("status") == "False":
        reason, message = slipway_reason(
            str(routes.get("reason") or ""), str(routes.get("message") or "")
        )
        return "refused", f"{reason}: {message}" if message else reason
    wanted = _split((obj.get("spec") or {}).get("traffic"))
    if wanted and wanted == _split(status.get("traffic")):
        return "taken", ""
    return "pending", ""


def _split(targets: Iterable[dict[str, Any]] | None) -> list[tuple[str, int, str]]:
    """Traffic targets comparable between spec and status: a target that follows the latest
    revision is named by that, since status also resolves it to a revision name."""
    return sorted(
        (
            "" if t.get("latestRevision") else str(t.get("revisionName") or ""),
            int(t.get("percent") or 0),
            str(t.get("tag") or ""),
        )
        for t in targets or ()
    )
