"""A Pending revision's wait as the user sees it: which instance, and the last line it wrote.

Rollout waits up to the readiness timeout for a new revision; a minute of silence hides the
commonest first-hour mistake, an app listening on another port than $PORT. Every few seconds
rollout emits a `progress` event with what this reads: the revision's newest instance and its
last log line ("listening on :3000" says the port is wrong). Read-only, through the engine's log
reader (`engines.logs.LogReader`, Docker or Knative); reading can never fail a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.errors import SlipwayError
from pipeline.engines.logs import LogReader, Source

# How often a waiting deploy says where it is: often enough that a wait never looks hung.
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """The revision's newest instance ("" while none has started) and its last log line."""

    instance: str = ""
    last_line: str = ""


class InstanceWatch:
    def __init__(self, *, reader: LogReader | None) -> None:
        self._reader = reader

    def sight(self, *, service: str, revision: str) -> Sighting:
        if self._reader is None:
            return Sighting()
        try:
            sources = self._reader.sources(service=service, revision=revision)
            if not sources:
                return Sighting()
            newest = sources[-1]  # a Pending revision has one instance; a restart comes later
            return Sighting(instance=newest.instance, last_line=self._last_line(newest))
        except SlipwayError:  # the engine hiccuped: say nothing this time, try again next
            return Sighting()

    def _last_line(self, source: Source) -> str:
        """The later of the last stdout and the last stderr line."""
        assert self._reader is not None
        found: tuple[int, str] = (-1, "")
        for stream in self._reader.streams:
            log = self._reader.open(source, stream=stream, follow=False, since=None, tail=1)
            try:
                for time_ns, text in log:
                    if text.strip() and time_ns >= found[0]:
                        found = (time_ns, text.strip())
            finally:
                log.close()
        return found[1]
