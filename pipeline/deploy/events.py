"""What a deploy tells its caller while it runs: one JSON-able event at a time, and the lines
a person reads for each.

The API streams the events as NDJSON and the CLI prints `lines(event)`; `git push` prints the
same lines as `remote:` lines; webhooks note the build id. Kinds: `build` (id, builder), `log`
(a build output line), `stage` (a step done, with its seconds), `revision` (created, Pending),
`progress` (every few seconds while it is Pending: elapsed seconds, its instance, the port it
must listen on and the instance's last log line), `timing` (a rollout step done: `instance`, the
revision created until Ready; `route`, until the data plane applied its route; `cleanup`, old
revisions collected), `ready` (serving: the URLs that reach the revision and its share of the
traffic).

`PushTimings` reads the same events as they pass and says where a push's time went, as the last
line `git push` prints: receive, build, push, then the rollout's `timing` steps.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Emit = Callable[[dict[str, Any]], None]

INDENT = "       "  # under the `-----> ` of a step, as git push and buildpacks print


def stage(text: str, *, seconds: float = 0) -> dict[str, Any]:
    return {"event": "stage", "text": text, "seconds": seconds}


def timing(step: str, *, seconds: float) -> dict[str, Any]:
    """A rollout step done, and how long it took (no line of its own: `PushTimings` reads it)."""
    return {"event": "timing", "stage": step, "seconds": round(seconds, 3)}


def progress(
    revision: str, *, seconds: float, instance: str, port: int, last_line: str
) -> dict[str, Any]:
    """A Pending revision's wait so far; `instance` "" while none has started."""
    return {
        "event": "progress", "revision": revision, "seconds": round(seconds), "instance": instance,
        "port": port, "last_line": last_line,
    }  # fmt: skip


def ready(revision: str, *, seconds: float, urls: Sequence[str], percent: int) -> dict[str, Any]:
    """The revision serves: `urls` are the ones that reach it (not every URL of the service)."""
    return {
        "event": "ready", "revision": revision, "seconds": seconds, "urls": list(urls),
        "percent": percent,
    }  # fmt: skip


def ignore(_event: dict[str, Any]) -> None:
    """For edits nobody watches (traffic, access, tag removal)."""


def lines(event: dict[str, Any]) -> list[str]:
    """What a person reads for one event (none for kinds they need not see; `error` is the
    caller's to report)."""
    kind = event.get("event")
    if kind == "log":
        line = str(event["line"])
        return [line if line.startswith("----->") else INDENT + line]
    if kind == "build":
        return [f"-----> Build {event['build']} ({event['builder']})"]
    if kind == "stage":
        secs = f"   {event['seconds']}s" if event.get("seconds") else ""
        return [f"-----> {event['text']}{secs}"]
    if kind == "revision":
        return [f"-----> Revision {event['revision']} created, waiting until ready"]
    if kind == "progress":
        return [progress_line(event)]
    if kind == "ready":
        return ready_lines(event)
    return []


def progress_line(event: dict[str, Any]) -> str:
    """`       12s  i-ab12 started, not accepting connections on port 8080 yet; last log line: …`"""
    head = f"{INDENT}{event['seconds']}s  "
    instance = event.get("instance") or ""
    if not instance:
        return f"{head}waiting for an instance to start"
    text = f"{head}{instance} started, not accepting connections on port {event['port']} yet"
    last = event.get("last_line") or ""
    return f"{text}; last log line: {last}" if last else text


def ready_lines(event: dict[str, Any]) -> list[str]:
    """The ready step, then the URLs that reach the revision with its percent."""
    out = [f"-----> {event['revision']} ready   {event['seconds']}s"]
    if "urls" not in event:  # a server from before the URLs were the revision's own
        return out
    return out + url_lines(event["urls"], percent=int(event.get("percent") or 0))


def url_lines(urls: Sequence[str], *, percent: int) -> list[str]:
    """A revision's URLs, the first with its share of the traffic, as `git push` prints them."""
    if not urls:
        # --no-traffic without --tag; on Knative also a URL the cluster has not published yet
        return [f"{INDENT}{percent}% of the traffic and no URL of its own"]
    share = f"{percent}%" if percent > 0 else "0%: no traffic, its tag URL only"
    return [f"{INDENT}{urls[0]}  ({share})", *(INDENT + u for u in urls[1:])]


# where a push's time went ----------------------------------------------------------------------
PUSHING = "-----> Pushing "  # the builders' line between building and pushing the image
BUILT = "Built and pushed "  # the stage that ends the push to the registry
WAITING = "Waiting for the deploy to "  # `locks`: another deploy to the service runs first
USING_CACHE = " ---> Using cache"  # a Dockerfile step BuildKit did not run (`build.progress`)
_STEP = re.compile(r"^Step \S+(?: \S+)? : (\S+)")


@dataclass(kw_only=True)
class PushTimings:
    """Where a push's time went: each step from the end of the one before, so they add up.

    Steps end when their event passes: `receive` (unpack, export, plan) at the `build` event
    (or, when another deploy to the service runs first, at "Waiting for the deploy", and then
    `waiting` at the `build` event), `build` (the build queue included) at the builder's
    "Pushing" line, `push` at "Built and pushed", then each rollout `timing` event. Dockerfile
    steps are counted, to say how much was cached (a FROM step is never cached: not counted)."""

    clock: Callable[[], float] = time.monotonic
    started: float | None = None  # when the push reached the handler; None: now
    steps: list[tuple[str, float]] = field(default_factory=list)
    dockerfile_steps: int = 0
    cached_steps: int = 0

    def __post_init__(self) -> None:
        self._start = self.clock() if self.started is None else self.started
        self._last = self._start
        self._waited = False

    def see(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        text = str(event.get("text", ""))
        if kind == "stage" and text.startswith(WAITING):
            self._lap("receive")
            self._waited = True
        elif kind == "build":
            self._lap("waiting" if self._waited else "receive")
        elif kind == "log":
            self._see_line(str(event.get("line", "")))
        elif kind == "stage" and text.startswith(BUILT):
            self._lap("push")
        elif kind == "timing":
            self._lap(str(event["stage"]))

    def _see_line(self, line: str) -> None:
        if line.startswith(PUSHING):
            self._lap("build")
        elif line == USING_CACHE:
            self.cached_steps += 1
        elif not line.endswith(" (continued)"):
            step = _STEP.match(line)
            if step and step.group(1).upper() != "FROM":
                self.dockerfile_steps += 1

    def _lap(self, name: str) -> None:
        now = self.clock()
        self.steps.append((name, now - self._last))
        self._last = now

    def line(self) -> str:
        """`-----> Timings: receive 0.05s, build 0.40s (cached), ... = total 1.02s`"""
        total = self.clock() - self._start
        parts = [f"{name} {seconds:.2f}s{self._note(name)}" for name, seconds in self.steps]
        return f"-----> Timings: {', '.join(parts)}; total {total:.2f}s"

    def _note(self, name: str) -> str:
        if name != "build" or not self.dockerfile_steps:
            return ""
        if self.cached_steps >= self.dockerfile_steps:
            return " (cached)"
        return f" ({self.cached_steps}/{self.dockerfile_steps} steps cached)"
