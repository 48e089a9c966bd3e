"""YAML in, plain values out, for documents users send: no aliases, bounded nesting.

A Knative Service never needs anchors and aliases, and they are what a "billion laughs" bomb is
made of: a 548-byte document of nested aliases expanded for 26 s and slowed every other
request. So an alias is refused where the parser meets it, before anything is expanded; and
nesting is bounded so a `[[[[…]]]]` document cannot exhaust the parser's recursion.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64


class UnsafeYAML(yaml.YAMLError):
    """The document uses what Slipway refuses (an alias, or nesting deeper than MAX_DEPTH)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
            raise UnsafeYAML(
                f"YAML aliases (*{event.anchor}) are not accepted: write the value out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise UnsafeYAML(
                    f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_all(text: str) -> list[Any]:
    """Every document in `text`, as plain values; raises yaml.YAMLError (UnsafeYAML included)."""
    loader = _Loader(text)
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents.append(loader.get_data())
        return documents
    finally:
        loader.dispose()
