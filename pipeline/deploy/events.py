"""What a deploy tells its caller while it runs: one JSON-able event at a time, and the lines
a person reads for each.

The API streams the events as NDJSON and the CLI prints `lines(event)`; `git push` prints the
same lines as `remote:` lines; webhooks note the build id. Kinds: `build` (id, builder), `log`
(a build output line), `stage` (a step done, with its seconds), `revision` (created, Pending),
`progress` (every few seconds while it is Pending: elapsed seconds, its instance, the port it
must listen on and the instance's last log line), `ready` (serving: the URLs that reach the
revision and its share of the traffic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Emit = Callable[[dict[str, Any]], None]

INDENT = "       "  # under the `-----> ` of a step, as git push and buildpacks print


def stage(text: str, *, seconds: float = 0) -> dict[str, Any]:
    return {"event": "stage", "text": text, "seconds": seconds}


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
