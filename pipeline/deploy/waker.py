"""What the deployer needs from the reconciler: it writes desired state, then wakes and waits.

Both engines' reconcilers (`pipeline.reconcile.loop.Reconciler`, `pipeline.knative.reconciler`)
implement it; the deployer never drives containers or HAProxy itself.
"""

from __future__ import annotations

from typing import Protocol


class Waker(Protocol):
    def wake(self) -> None: ...

    def hold(self, revisions: set[str]) -> None: ...

    def release(self, revisions: set[str]) -> None: ...

    def wait_ready(self, revisions: set[str], *, timeout_s: float) -> set[str]: ...

    def wait_for_pass(self, *, timeout_s: float = 30.0) -> bool:
        """Wake the loop and wait until the next pass to begin has finished."""
        ...

    def refusal(self, service: str, *, timeout_s: float = 30.0) -> str:
        """After a pass: why the runtime refused the service's desired state as stored now ("" if
        it took it): a cluster's admission or Knative's Route can say no after the store said
        yes."""
        ...
