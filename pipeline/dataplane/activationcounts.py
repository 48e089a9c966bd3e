"""What the activator logs about the requests it forwards: bounded, however many there are.

While the control plane is up the activator forwards only a revision's first requests (HAProxy
stops using it once the instance is in the backend), but while the control plane is down every
request to a revision that was at zero goes through it (nobody adds the instance it started),
and a line per request would grow the unrotated activator log without bound. So the first
request of a wake-up is logged at once (`request_activated`: which instance took it), the
following ones are counted and logged as one `requests_activated` line per revision every
`every_s` while they keep coming; a revision quiet for a whole period starts a new wake-up.
WebSocket sessions are counted the same way, in counts of their own (`websocket_activated`,
`websockets_activated`): a client that reconnects in a loop is a line per period, not per session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

EVERY_S = 5.0


@dataclass
class _Period:
    count: int = 0
    instances: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class ActivationCounts:
    """Called from the activator's routes, on its event loop; the period's end is a timer on
    that loop, so a burst's count is logged when the period ends, not at the next request."""

    def __init__(
        self, log: FilteringBoundLogger, *, every_s: float = EVERY_S, what: str = "request"
    ) -> None:
        self.log = log
        self.every_s = every_s
        self._first = f"{what}_activated"  # the wake-up's first one
        self._counted = f"{what}s_activated"  # the ones after it, per period
        self._periods: dict[str, _Period] = {}

    def activated(self, revision: str, instance: str) -> None:
        period = self._periods.get(revision)
        if period is None:
            self.log.info(self._first, revision=revision, instance=instance)
            self._open(revision)
            return
        period.count += 1
        period.instances.add(instance)

    def flush(self) -> None:
        """Log what is counted and forget every period (the activator is stopping)."""
        for revision, period in list(self._periods.items()):
            if period.timer is not None:
                period.timer.cancel()
            self._log_period(revision, period)
        self._periods.clear()

    def _open(self, revision: str) -> None:
        period = self._periods[revision] = _Period()
        period.timer = asyncio.get_running_loop().call_later(self.every_s, self._close, revision)

    def _close(self, revision: str) -> None:
        period = self._periods.pop(revision, None)
        if period is None or not period.count:
            return  # a quiet period: the next request is a new wake-up, logged at once
        self._log_period(revision, period)
        self._open(revision)

    def _log_period(self, revision: str, period: _Period) -> None:
        if period.count:
            self.log.info(
                self._counted,
                revision=revision,
                count=period.count,
                instances=sorted(period.instances),
                period_s=self.every_s,
            )
