"""BuildKit's plain progress turned into the build log's lines, one line in, a few lines out.

Where it sits: `dockerfile` runs `docker build --progress=plain` (see `buildkit`) and feeds every
line, already masked, through `PlainProgress.feed`; what comes back goes to the log and the live
stream. Pure: no clock, no I/O; the timings are BuildKit's own.

BuildKit numbers what it does (`#5`) and prints each vertex's lines under that number:

    #5 [deps 2/3] RUN pip install -r requirements.txt     a Dockerfile step: stage, k/n
    #5 sha256:1379d1…                                     the vertex digest (dropped)
    #5 0.420 Collecting six                               its output, seconds since it started
    #5 DONE 3.2s | #5 CACHED | #5 ERROR: … | #5 CANCELED   how it ended

The log reads like the classic builder's, with the timings it never had: `Step deps 2/3 : RUN
pip install …`, the output lines bare, then ` ---> Done in 3.2s` or ` ---> Using cache` (no
` ---> Done in 0.0s`: under QUIET_S it says nothing the next header does not). Steps of
parallel stages interleave, so whenever the lines switch to another vertex its header is repeated
with "(continued)": every output line stays attributable. The step that failed, its output tail
and the timings are kept for the error message and the summary.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

TAIL_LINES = 20
QUIET_S = 0.05  # BuildKit prints tenths: "DONE 0.0s" is all this drops
CLIPPED = "[output clipped, log limit"
CLIP_HINT = (
    "(the Docker Engine's BuildKit limits each step's log output; BUILDKIT_STEP_LOG_MAX_SIZE and "
    "BUILDKIT_STEP_LOG_MAX_SPEED in dockerd's environment raise the limits)"
)
_STEP = re.compile(r"^\[(?:(\S+) )?(\d+/\d+)\] (.*)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_OUTPUT = re.compile(r"^(\d+\.\d+)(?: (.*))?$")
_DONE = re.compile(r"^DONE (\d+(?:\.\d+)?)s$")
_VERTEX = re.compile(r"^#(\d+) (.*)$")
_MOUNT_FLAG = re.compile(r"--mount=\S+\s+")


@dataclass(kw_only=True)
class Vertex:
    """One thing BuildKit did: a Dockerfile step (`label` "deps 2/3") or internal work."""

    number: str
    name: str  # as the log shows it: "Step deps 2/3 : RUN make" or "exporting to image"
    label: str = ""  # "" for internal work
    instruction: str = ""
    seconds: float | None = None
    cached: bool = False
    error: str = ""
    output: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def is_step(self) -> bool:
        return bool(self.label)

    def title(self) -> str:
        """How an error names it: ``2/3 `RUN make` `` (mount flags left out, they are noise)."""
        return f"{self.label} `{_MOUNT_FLAG.sub('', self.instruction)}`"


class PlainProgress:
    """Reads one build's plain progress; `feed` returns the log lines for each line read."""

    def __init__(self) -> None:
        self.vertices: dict[str, Vertex] = {}
        self._current = ""  # the vertex whose lines were shown last
        self._clip_hint_shown = False
        self._recent: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> list[str]:
        m = _VERTEX.match(line)
        out = [line] if m is None else self._vertex_line(m.group(1), m.group(2))
        if m is not None and CLIPPED in line and not self._clip_hint_shown:
            self._clip_hint_shown = True
            out.append(CLIP_HINT)
        self._recent.extend(out)
        return out

    # what the build came to ------------------------------------------------------------------
    @property
    def failed(self) -> Vertex | None:
        """The step that failed (or, when none did, the internal work that did)."""
        errors = [v for v in self.vertices.values() if v.error]
        steps = [v for v in errors if v.is_step]
        return next(iter(steps or errors), None)

    def tail(self) -> list[str]:
        """The failed step's last output lines, else the last lines shown."""
        failed = self.failed
        return list(failed.output) if failed and failed.output else list(self._recent)

    def steps(self) -> list[Vertex]:
        return [v for v in self.vertices.values() if v.is_step]

    # one line of one vertex --------------------------------------------------------------------
    def _vertex_line(self, number: str, text: str) -> list[str]:
        vertex = self.vertices.get(number)
        if vertex is None:
            vertex = self.vertices[number] = _new_vertex(number, text)
            self._current = number
            return [vertex.name]
        if _DIGEST.match(text) or text in (vertex.name, _header_text(vertex)):
            return []  # the digest, or BuildKit repeating the header: ours comes when needed
        done = _DONE.match(text)
        if done and float(done.group(1)) < QUIET_S:
            vertex.seconds = float(done.group(1))
            return []  # before `_switch_to`: no "(continued)" header for a line not shown
        shown = self._switch_to(vertex)
        output = _OUTPUT.match(text)
        if output:
            body = output.group(2) or ""
            if body:
                vertex.output.append(body)
                shown.append(body)
            return shown
        shown.append(_status(vertex, text))
        return shown

    def _switch_to(self, vertex: Vertex) -> list[str]:
        if self._current == vertex.number:
            return []
        self._current = vertex.number
        return [f"{vertex.name} (continued)"]


def _new_vertex(number: str, text: str) -> Vertex:
    step = _STEP.match(text)
    if step is None:
        return Vertex(number=number, name=text)
    stage, position, instruction = step.groups()
    label = f"{stage} {position}" if stage else position
    return Vertex(number=number, name=f"Step {label} : {instruction}", label=label,
                  instruction=instruction)  # fmt: skip


def _header_text(vertex: Vertex) -> str:
    """The header as BuildKit prints it, to recognise it when it comes again."""
    if not vertex.is_step:
        return vertex.name
    stage, _, position = vertex.label.rpartition(" ")
    return f"[{stage + ' ' if stage else ''}{position}] {vertex.instruction}"


def _status(vertex: Vertex, text: str) -> str:
    """` ---> …` for how the vertex ended; any other status line (`exporting layers 0.1s done`)
    as it came."""
    done = _DONE.match(text)
    if done:
        vertex.seconds = float(done.group(1))
        return f" ---> Done in {done.group(1)}s"
    if text == "CACHED":
        vertex.cached = True
        return " ---> Using cache"
    if text == "CANCELED":
        return " ---> Cancelled"
    if text.startswith("ERROR: ") or text == "ERROR":
        vertex.error = text.removeprefix("ERROR").removeprefix(": ") or "failed"
        return f" ---> Failed: {vertex.error}"
    return text
