"""How the CLI prints a deployment's event stream: one line per event (the lines
`pipeline.deploy.events.lines` gives, the same ones `git push` shows), progress lines overwritten
in place on a terminal, and what Ctrl-C means for a deploy whose build goes on without it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from pipeline.deploy import events

# Ctrl-C: the shell's convention, 128 + SIGINT.
INTERRUPTED = 130


class StreamPrinter:
    """Prints events to `console`; on a terminal a progress line is replaced by the next one."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._overwrite = console.is_terminal
        self._open = False  # a progress line is on screen without its newline

    def event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress" and self._overwrite:
            # Straight to the file: rich drops the carriage return as a control code.
            self._console.file.write("\r\x1b[2K" + events.progress_line(event).strip())
            self._console.file.flush()
            self._open = True
            return
        for line in events.lines(event):
            self.line(line)

    def line(self, text: str) -> None:
        self.close()
        self._print(text)

    def close(self) -> None:
        """End a progress line left open, so what comes next starts on a line of its own."""
        if self._open:
            self._print("")
            self._open = False

    def _print(self, text: str) -> None:
        self._console.print(text, highlight=False, markup=False)


def interrupted_lines(build: str) -> list[str]:
    """What Ctrl-C during a deploy says: the deploy goes on on the server, and how to reach it."""
    if not build:
        # Before a build event the request may not have reached the server (an upload cut
        # short), and an image deploy has no build: say what is known.
        return [
            "Interrupted: a deploy the server already received goes on there.",
            "  See how it ends: slipway builds list; slipway revisions list SERVICE",
        ]
    return [
        f"Interrupted: the deploy goes on on the server; build {build} keeps running.",
        f"  Follow it: slipway builds log {build} --follow",
        f"  Cancel it: slipway builds cancel {build}",
    ]
