"""Deployments as NDJSON streams: one JSON event per line while the deployment runs.

The deployment runs in a worker thread: the client sees build output as it happens, and a
client that goes away does not stop the deployment. The last line is `done` (with the
revision and URLs) or `error` (mapped like any API error, `pipeline.api.errors`).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from pipeline.api.errors import error_event
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.deploy.events import Emit
from pipeline.deploy.rollout import Outcome

MEDIA_TYPE = "application/x-ndjson"


def stream(work: Callable[[Emit], Outcome]) -> StreamingResponse:
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            events.put(done_event(work(events.put)))
        except Exception as e:
            event = error_event(e)  # before logging: on a full disk the log write fails too
            if not isinstance(e, SlipwayError):
                with contextlib.suppress(OSError):
                    get_log(component="api").exception("deployment_crashed")
            events.put(event)
        finally:
            events.put(None)

    threading.Thread(target=run, name="deployment", daemon=True).start()

    def lines() -> Iterator[bytes]:
        while (event := events.get()) is not None:
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type=MEDIA_TYPE)


def done_event(outcome: Outcome) -> dict[str, Any]:
    return {
        "event": "done",
        "service": outcome.service,
        "revision": outcome.revision.name,
        "created": outcome.created,
        "urls": outcome.urls,
    }


# For `responses=` on streaming routes: what the OpenAPI document says they answer.
STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "NDJSON events (build, log, stage, revision, progress, timing, ready), then done "
            "or error."
        ),
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}
