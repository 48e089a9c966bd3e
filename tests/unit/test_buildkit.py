"""BuildKit builds, the pure parts: the CLI's argv and environment, plain progress to log lines,
failure messages, secrets asked for as ARG, cache ids, and the build context folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipeline.build import buildkit, contexts, preflight
from pipeline.build.progress import CLIP_HINT, PlainProgress
from pipeline.core.errors import BuildFailed, InvalidInput, InvalidSource, Unavailable

# --- the CLI --------------------------------------------------------------------------------


def test_debian_cli_is_pinned_when_present(tmp_path: Path) -> None:
    cli = tmp_path / "docker"
    assert buildkit.docker_cli(debian=cli) == "docker"  # absent: PATH's
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    assert buildkit.docker_cli(debian=cli) == str(cli)


def test_values_travel_in_the_environment_never_in_argv() -> None:
    run = buildkit.build_invocation(
        cli="/usr/bin/docker", context=Path("/t/context"), dockerfile=Path("/t/df/Dockerfile"),
        tag="r/app:build-1", iidfile=Path("/t/iid"), build_args={"GREETING": "hi there"},
        secrets={"TOKEN": "s3cret", "DOCKER_HOST": "tcp://evil:1"},
        base_env={"PATH": "/usr/bin", "DOCKER_HOST": "unix:///var/run/docker.sock"},
    )  # fmt: skip
    assert run.argv == [
        "/usr/bin/docker", "build", "--progress=plain", "--file", "/t/df/Dockerfile",
        "--tag", "r/app:build-1", "--iidfile", "/t/iid", "--build-arg", "GREETING",
        "--secret", "id=TOKEN,env=SLIPWAY_BUILD_SECRET_0",
        "--secret", "id=DOCKER_HOST,env=SLIPWAY_BUILD_SECRET_1", "/t/context",
    ]  # fmt: skip
    assert not any("s3cret" in a or "hi there" in a for a in run.argv)
    assert run.env["SLIPWAY_BUILD_SECRET_0"] == "s3cret" and run.env["GREETING"] == "hi there"
    # A secret's name never becomes a variable of the CLI's: it cannot redirect the CLI.
    assert run.env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert run.env["DOCKER_BUILDKIT"] == "1"


def test_names_that_are_not_variables_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not a valid variable name"):
        buildkit.build_invocation(
            cli="docker", context=Path("c"), dockerfile=Path("d"), tag="t", iidfile=Path("i"),
            build_args={}, secrets={"A,src=/etc/shadow": "x"}, base_env={},
        )  # fmt: skip


def test_cache_ids_are_per_service_and_per_engine() -> None:
    one = buildkit.cache_id(daemon_id="ENGINE1", repository="127.0.0.1:5000/a")
    assert one == buildkit.cache_id(daemon_id="ENGINE1", repository="127.0.0.1:5000/a")
    assert one != buildkit.cache_id(daemon_id="ENGINE1", repository="127.0.0.1:5000/b")
    assert one != buildkit.cache_id(daemon_id="ENGINE2", repository="127.0.0.1:5000/a")
    assert one.startswith("slipway-") and "ENGINE1" not in one


@pytest.mark.parametrize(
    ("last", "step", "says"),
    [
        pytest.param("executor failed running [/bin/sh -c make]: exit code: 3", "2/2 `RUN make`",
                     "step 2/2 `RUN make` returned a non-zero code: 3", id="run-exit-code"),
        pytest.param("failed to solve with frontend dockerfile.v0: failed to create LLB "
                     "definition: dockerfile parse error line 2: unknown instruction: RUNN", "",
                     "the Dockerfile has a syntax error: dockerfile parse error line 2: unknown "
                     "instruction: RUNN", id="syntax"),
        pytest.param('failed to compute cache key: "/nope" not found: not found',
                     "2/2 `COPY nope /x`",
                     'step 2/2 `COPY nope /x` failed: failed to compute cache key: "/nope" not '
                     "found: not found", id="copy-missing"),
        pytest.param("error: something odd", "", "something odd", id="no-step"),
    ],
)  # fmt: skip
def test_failure_messages(last: str, step: str, says: str) -> None:
    assert buildkit.failure_message(["#5 ...", last], step=step, cli="docker") == says


def test_a_cli_without_buildkit_and_a_daemon_down_say_what_to_do() -> None:
    refusal = ["ERROR: BuildKit is enabled but the buildx component is missing or broken.",
               "       Install the buildx component to build images with BuildKit:"]  # fmt: skip
    with pytest.raises(BuildFailed, match=r"apt-get install docker\.io"):
        buildkit.failure_message(refusal, step="", cli="/usr/local/bin/docker")
    with pytest.raises(Unavailable, match="is dockerd running"):
        buildkit.failure_message(
            ["Cannot connect to the Docker daemon at unix:///var/run/docker.sock."],
            step="", cli="docker",
        )  # fmt: skip


# --- plain progress -------------------------------------------------------------------------

PLAIN = """\
#1 [internal] load build definition from Dockerfile
#1 sha256:70d94a41101568cfe19acfdd77707a36a3035aa08dd0c76d15b0b7739e03df76
#1 transferring dockerfile: 120B done
#1 DONE 0.0s
#4 [deps 1/2] FROM docker.io/slipway/busybox:1.35-bookworm
#4 CACHED
#5 [deps 2/2] RUN --mount=type=cache,id=c,target=/c pip install -r r.txt
#5 0.420 Collecting six
#6 [stage-1 2/3] COPY . /app
#6 DONE 0.1s
#5 1.044 ERROR: No matching distribution found for six==99
#5 1.050
#5 ERROR: executor failed running [/bin/sh -c pip install -r r.txt]: exit code: 1
------
 > [deps 2/2] RUN --mount=type=cache,id=c,target=/c pip install -r r.txt:
------
executor failed running [/bin/sh -c pip install -r r.txt]: exit code: 1"""

SHOWN = """\
[internal] load build definition from Dockerfile
transferring dockerfile: 120B done
Step deps 1/2 : FROM docker.io/slipway/busybox:1.35-bookworm
 ---> Using cache
Step deps 2/2 : RUN --mount=type=cache,id=c,target=/c pip install -r r.txt
Collecting six
Step stage-1 2/3 : COPY . /app
 ---> Done in 0.1s
Step deps 2/2 : RUN --mount=type=cache,id=c,target=/c pip install -r r.txt (continued)
ERROR: No matching distribution found for six==99
 ---> Failed: executor failed running [/bin/sh -c pip install -r r.txt]: exit code: 1
------
 > [deps 2/2] RUN --mount=type=cache,id=c,target=/c pip install -r r.txt:
------
executor failed running [/bin/sh -c pip install -r r.txt]: exit code: 1"""


def test_plain_progress_reads_like_steps_with_timings() -> None:
    progress = PlainProgress()
    shown = [out for line in PLAIN.splitlines() for out in progress.feed(line)]
    assert "\n".join(shown) == SHOWN
    failed = progress.failed
    assert failed is not None
    assert failed.title() == "deps 2/2 `RUN pip install -r r.txt`"
    tail = ["Collecting six", "ERROR: No matching distribution found for six==99"]
    assert progress.tail() == tail
    assert [(s.label, s.seconds, s.cached) for s in progress.steps()] == [
        ("deps 1/2", None, True), ("deps 2/2", None, False), ("stage-1 2/3", 0.1, False),
    ]  # fmt: skip


def test_a_single_stage_step_reads_like_the_classic_builder() -> None:
    progress = PlainProgress()
    lines = ["#5 [1/2] FROM docker.io/slipway/busybox:1.35-bookworm", "#5 DONE 0.2s",
             "#6 [2/2] RUN echo hi", "#6 0.3 hi", "#6 DONE 1.25s"]  # fmt: skip
    shown = [out for line in lines for out in progress.feed(line)]
    assert shown == ["Step 1/2 : FROM docker.io/slipway/busybox:1.35-bookworm",
                     " ---> Done in 0.2s", "Step 2/2 : RUN echo hi", "hi", " ---> Done in 1.25s"]  # fmt: skip  # noqa: E501
    assert progress.failed is None


def test_a_step_done_in_no_time_shows_no_done_line_and_no_continued_header() -> None:
    """`DONE 0.0s` says nothing; `DONE 0.1s` does. The quiet one is still timed."""
    progress = PlainProgress()
    lines = ["#5 [1/3] FROM docker.io/slipway/busybox:1.35-bookworm", "#6 [2/3] RUN echo hi",
             "#6 0.3 hi", "#5 DONE 0.0s", "#6 DONE 0.1s", "#7 [3/3] COPY . /app", "#7 DONE 0.0s"]  # fmt: skip  # noqa: E501
    shown = [out for line in lines for out in progress.feed(line)]
    assert shown == ["Step 1/3 : FROM docker.io/slipway/busybox:1.35-bookworm",
                     "Step 2/3 : RUN echo hi", "hi", " ---> Done in 0.1s", "Step 3/3 : COPY . /app"]  # fmt: skip  # noqa: E501
    assert [s.seconds for s in progress.steps()] == [0.0, 0.1, 0.0]


def test_clipped_output_says_where_the_limit_is_set_once() -> None:
    progress = PlainProgress()
    progress.feed("#5 [2/2] RUN yes")
    first = progress.feed("#5 0.489 [output clipped, log limit 200KiB/s reached]")
    assert first == ["[output clipped, log limit 200KiB/s reached]", CLIP_HINT]
    assert progress.feed("#6 0.1 [output clipped, log limit 2MiB reached]") != [CLIP_HINT]


# --- preflight ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "found"),
    [
        pytest.param("FROM a\nARG TOKEN\nRUN x\n", ["TOKEN"], id="arg"),
        pytest.param("FROM a\narg other token=1\n", [], id="case-of-the-name-matters"),
        pytest.param("FROM a\nARG A TOKEN=x\n", ["TOKEN"], id="several-in-one"),
        pytest.param("FROM a\nRUN --mount=type=secret,id=TOKEN cat /run/secrets/TOKEN\n", [],
                     id="mount"),
    ],
)  # fmt: skip
def test_secrets_declared_as_args(dockerfile: str, found: list[str]) -> None:
    assert preflight.secrets_declared_as_args(dockerfile, secrets=["TOKEN"]) == found


def test_secret_arg_refusal_says_how_to_mount_it() -> None:
    said = preflight.secret_arg_refusal(["TOKEN"])
    assert "TOKEN is a build secret" in said
    assert 'RUN --mount=type=secret,id=TOKEN TOKEN="$(cat /run/secrets/TOKEN)"' in said


# --- the context folder -----------------------------------------------------------------------


def _archive(*members: tuple[str, str, str]) -> bytes:
    """(name, kind "file" | "link", data or link target)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data.encode())
                tar.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def test_unpack_keeps_inside_links_and_reads_files(tmp_path: Path) -> None:
    source = _archive(("index.html", "file", "<h1>x</h1>"), ("home.html", "link", "index.html"),
                      ("Dockerfile", "file", "FROM x\n"))  # fmt: skip
    folder = contexts.unpack(source, tmp_path / "ctx")
    assert (folder / "home.html").read_text() == "<h1>x</h1>"
    assert (folder / "home.html").is_symlink()
    assert contexts.read_files(source, ["Dockerfile", "home.html"]) == {"Dockerfile": "FROM x\n"}
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([("etc", "link", "/etc"), ("etc/cron.d/x", "file", "* * * * * root id")],
                     id="write-through-absolute-link"),
        pytest.param([("up", "link", "../../.."), ("up/x", "file", "x")], id="link-out"),
    ],
)  # fmt: skip
def test_unpack_refuses_links_out_of_the_context(
    tmp_path: Path, members: list[tuple[str, str, str]]
) -> None:
    with pytest.raises(InvalidSource, match="links must stay inside the source folder"):
        contexts.unpack(_archive(*members), tmp_path / "ctx")


def test_a_symlinked_dockerignore_counts_as_absent(tmp_path: Path) -> None:
    source = _archive(("app.py", "file", "x"), ("ignored", "file", "app.py\n"),
                      (".dockerignore", "link", "ignored"))  # fmt: skip
    folder = contexts.unpack(source, tmp_path / "ctx")
    assert not (folder / ".dockerignore").exists() and (folder / "app.py").exists()


def test_the_dockerfile_is_written_outside_the_context(tmp_path: Path) -> None:
    path = contexts.write_dockerfile("FROM x\n", folder=tmp_path / "df")
    assert path == tmp_path / "df" / "Dockerfile" and path.read_text() == "FROM x\n"
    assert list(path.parent.iterdir()) == [path]
