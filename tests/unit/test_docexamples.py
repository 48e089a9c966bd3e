"""The docs' example parser and output matcher (tests/docexamples.py), which
tests/integration/test_docs.py uses to hold README.md and docs/*.md to what the commands print.
A matcher that accepted anything would make that test pass on stale pages: the planted mismatches
below must be caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docexamples import ExampleSyntaxError, blocks, explain, matches

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

DEPLOY = [
    "-----> Uploading examples/hello (0 KiB)",
    "-----> Build 609f16e135f2 (dockerfile)",
    "       Step 1/3 : FROM slipway/busybox:1.35-bookworm",
    "-----> Built and pushed 127.0.0.1:5000/hello@sha256:7273219a   11.0s",
    "hello-00001 ready  http://hello.localhost:8080",
]


def test_exact_lines_match() -> None:
    assert matches(["a", "b"], ["a", "b"])


def test_an_ellipsis_inside_a_line_matches_any_text_in_that_line_only() -> None:
    assert matches(["-----> Build ... (dockerfile)"], ["-----> Build 609f16e135f2 (dockerfile)"])
    assert matches(["sha256:…"], ["sha256:7273219a"])
    assert not matches(["-----> Build ... (dockerfile)"], ["-----> Build 1 (pack)"])
    assert not matches(["a...b"], ["a", "b"])


def test_a_line_of_ellipsis_matches_any_number_of_lines() -> None:
    shown = [DEPLOY[0], "...", DEPLOY[-1]]
    assert matches(shown, DEPLOY)
    assert matches(shown, [DEPLOY[0], DEPLOY[-1]])
    assert matches(["..."], [])


def test_whitespace_runs_and_trailing_blank_lines_do_not_count() -> None:
    assert matches(["  90%  hello-00001"], ["   90%   hello-00001   ", ""])


@pytest.mark.parametrize(
    "shown",
    [
        pytest.param([*DEPLOY[:-1], "hello-00002 ready  http://hello.localhost:8080"], id="drift"),
        pytest.param(DEPLOY[:-1], id="a line the command printed is not shown"),
        pytest.param([*DEPLOY, "Pushed 127.0.0.1:5000/hello"], id="a shown line is not printed"),
        pytest.param([DEPLOY[1], DEPLOY[0], *DEPLOY[2:]], id="order"),
        pytest.param([], id="output shown as none"),
    ],
)
def test_planted_mismatches_are_caught(shown: list[str]) -> None:
    assert not matches(shown, DEPLOY)
    assert "expected:" in explain(shown, DEPLOY)


def test_blocks_read_commands_continuations_output_and_reasons(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n\n"
        "<!-- not run: needs a cluster -->\n```console\n$ kubectl get pods\n```\n"
        "```sh\n$ not a console block\n```\n"
    )
    ran, skipped = blocks(page)
    assert [(c.line, c.command, c.expected) for c in ran.commands] == [
        (3, "echo a \\\n  b", ("a b",)),
        (6, "true", ()),
    ]
    assert ran.not_run == ""
    assert skipped.not_run == "needs a cluster"


@pytest.mark.parametrize(
    "text",
    [
        "```console\noutput first\n$ true\n```\n",
        "```console\n$ true\n",
        "<!-- not run: -->\n```console\n$ true\n```\n",
    ],
)
def test_unreadable_blocks_are_errors(tmp_path: Path, text: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(ExampleSyntaxError):
        blocks(page)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_page_parses(page: Path) -> None:
    """A page whose console blocks the runner cannot read fails here, not only when run."""
    for block in blocks(page):
        assert block.commands, f"{page.name}:{block.line}: a console block without a command"
