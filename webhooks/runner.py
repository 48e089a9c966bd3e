"""Applies webhook actions in the background: the route has answered 202 long before a build ends.

One daemon thread per action. A Deploy clones the commit (`pipeline.build.gitsources`) and hands the
archive to the same `Deployer.deploy_source` that `git push` and the API use; the deployer
serialises deploys per service. A RemoveTag drops a preview tag. What happened is written to the
delivery's row; the build id is written as soon as the build starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from structlog.typing import FilteringBoundLogger

from pipeline.build import gitsources
from pipeline.build.gitsources import StaleCommit
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.deploy.manifests import Commit
from pipeline.deploy.rollout import Outcome
from pipeline.store.deliveries import Deliveries
from webhooks.actions import Action, Deploy, RemoveTag


class Clone(Protocol):
    """`gitsources.clone_at`, with the transports the operator allows already bound."""

    def __call__(self, url: str, sha: str, *, newer_than: str | None = None) -> bytes: ...


class DeployerLike(Protocol):
    """The part of `pipeline.deploy.deployer.Deployer` webhooks use."""

    def deploy_source(
        self,
        service: str,
        *,
        source: bytes,
        env: dict[str, str],
        emit: Callable[[dict[str, Any]], None],
        commit: Commit | None = None,
    ) -> Outcome: ...

    def remove_tag(self, service: str, tag: str) -> bool: ...


class Runner:
    def __init__(
        self,
        deployer: DeployerLike,
        deliveries: Deliveries,
        clone: Clone = gitsources.clone_at,
    ) -> None:
        self._deployer = deployer
        self._deliveries = deliveries
        self._clone = clone
        self._busy = 0
        self._idle = threading.Condition()

    def submit(self, delivery_id: str, actions: Sequence[Action]) -> None:
        """Start the Deploy and RemoveTag actions; Ignore actions were already recorded."""
        work = [a for a in actions if isinstance(a, Deploy | RemoveTag)]
        if not work:
            return
        results = _Results(self._deliveries, delivery_id, count=len(work))
        for action in work:
            with self._idle:
                self._busy += 1
            threading.Thread(
                target=self._run,
                args=(delivery_id, action, results),
                name=f"webhook-{delivery_id[:8]}-{action.service}",
                daemon=True,
            ).start()

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing runs (tests); False if work is still running after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self, delivery_id: str, action: Deploy | RemoveTag, results: _Results) -> None:
        log = get_log(component="webhooks", delivery=delivery_id, service=action.service)
        try:
            if isinstance(action, Deploy):
                outcome = self._deploy(delivery_id, action, log)
            else:
                outcome = self._remove_tag(action, log)
        except SlipwayError as e:
            log.warning("webhook_action_failed", error=e.message)
            outcome = f"failed: {e.message}"
        except Exception as e:
            log.exception("webhook_action_crashed")
            outcome = f"failed: internal error ({type(e).__name__}), see the control plane log"
        try:
            results.add(action.service, outcome)
        except Exception:
            log.exception("webhook_outcome_not_recorded", outcome=outcome)
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _deploy(self, delivery_id: str, action: Deploy, log: FilteringBoundLogger) -> str:
        log.info("webhook_clone", sha=action.sha, branch=action.branch, tag=action.preview_tag)
        # A branch or a review tag: what its last webhook deploy was, so that an old signed push
        # sent again (under a new delivery id, which GitHub does not sign) builds nothing.
        ref = action.branch or action.preview_tag
        deployed = self._deliveries.deployed_sha(service=action.service, ref=ref)
        try:
            source = self._clone(action.clone_url, action.sha, newer_than=deployed)
        except StaleCommit as e:
            log.warning("webhook_stale_commit", deployed=deployed, reason=e.message)
            return f"ignored: {e.message}"
        build_ids: list[str] = []

        def emit(event: dict[str, Any]) -> None:
            if event.get("event") == "build" and isinstance(event.get("build"), str):
                build_ids.append(event["build"])
                self._deliveries.set_build(delivery_id, event["build"])
                log.info("webhook_build_started", build=event["build"])

        done = self._deployer.deploy_source(
            action.service,
            source=source,
            env={},
            emit=emit,
            commit=Commit(sha=action.sha, branch=action.branch, preview_tag=action.preview_tag),
        )
        log.info(
            "webhook_deployed",
            build=build_ids[-1] if build_ids else None,
            revision=done.revision.name,
            created=done.created,
        )
        self._deliveries.set_deployed(service=action.service, ref=ref, sha=action.sha)
        suffix = "" if done.created else " (no change)"
        return f"built: {done.revision.name}{suffix}"

    def _remove_tag(self, action: RemoveTag, log: FilteringBoundLogger) -> str:
        removed = self._deployer.remove_tag(action.service, action.tag)
        log.info("webhook_tag_removed", tag=action.tag, removed=removed)
        if removed:
            return f"removed tag: {action.tag}"
        return f"ignored: tag {action.tag} was not set"


class _Results:
    """Outcomes of one delivery's actions, written to its row as each one finishes."""

    def __init__(self, deliveries: Deliveries, delivery_id: str, *, count: int) -> None:
        self._deliveries = deliveries
        self._id = delivery_id
        self._count = count
        self._parts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, service: str, outcome: str) -> None:
        with self._lock:
            self._parts.append((service, outcome))
            if self._count == 1:
                text = outcome
            else:
                text = "; ".join(f"{svc}: {out}" for svc, out in sorted(self._parts))
                if len(self._parts) < self._count:
                    text += f"; {self._count - len(self._parts)} more running"
            self._deliveries.set_outcome(self._id, outcome=text)
