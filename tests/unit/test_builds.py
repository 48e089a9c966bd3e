"""Builder choice, build templates, FROM checks and the build queue: pure, as tables.

Regenerate the golden Dockerfiles after an intended template change with
`SLIPWAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_builds.py` and review the diff.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pipeline.build import templates as buildtemplates
from pipeline.build.builders import (
    BuildSettings,
    choose_builder,
    service_settings,
)
from pipeline.build.masking import mask
from pipeline.build.preflight import from_images, has_registry_host
from pipeline.build.queue import BuildQueue
from pipeline.core.errors import BuildCancelled, BuildFailed, InvalidInput, InvalidSource
from pipeline.core.pairs import parse_pairs

GOLDEN = Path(__file__).parent / "golden" / "dockerfiles"
TEMPLATES = buildtemplates.load()
NO = BuildSettings()


@pytest.mark.parametrize(
    ("files", "settings", "expected"),
    [
        pytest.param(["Dockerfile", "app.py"], NO, "dockerfile", id="dockerfile"),
        pytest.param(["Dockerfile", "project.toml", "package.json"], NO, "dockerfile",
                     id="dockerfile-beats-project-toml"),
        pytest.param(["project.toml", "requirements.txt"], NO, "pack", id="project-toml-is-pack"),
        pytest.param(["requirements.txt", "app.py"], NO, "template:python", id="python-reqs"),
        pytest.param(["pyproject.toml"], NO, "template:python", id="python-pyproject"),
        pytest.param(["package.json", "server.js"], NO, "template:node", id="node"),
        pytest.param(["package.json", "requirements.txt"], NO, "template:python",
                     id="python-before-node"),
        pytest.param(["Procfile", "index.html"], NO, "template:procfile",
                     id="procfile-before-static"),
        pytest.param(["index.html"], NO, "template:static", id="static"),
        pytest.param(["Dockerfile", "index.html"], BuildSettings(builder="template:static"),
                     "template:static", id="explicit-template-beats-dockerfile"),
        pytest.param(["Dockerfile"], BuildSettings(builder="pack"), "pack", id="explicit-pack"),
        pytest.param(["build/Dockerfile.prod", "index.html"],
                     BuildSettings(dockerfile="build/Dockerfile.prod"), "dockerfile",
                     id="dockerfile-path-setting"),
        pytest.param(["Dockerfile"], BuildSettings(builder="dockerfile"), "dockerfile",
                     id="explicit-dockerfile"),
    ],
)  # fmt: skip
def test_choose_builder(files: list[str], settings: BuildSettings, expected: str) -> None:
    assert choose_builder(files, settings=settings, templates=TEMPLATES).name == expected


@pytest.mark.parametrize(
    ("files", "settings", "error", "says"),
    [
        pytest.param(["README.md"], NO, InvalidSource,
                     "(looked for: Dockerfile, project.toml, requirements.txt/pyproject.toml",
                     id="nothing-to-build"),
        pytest.param(["index.html"], BuildSettings(builder="dockerfile"), InvalidSource,
                     "no Dockerfile", id="explicit-dockerfile-missing"),
        pytest.param(["index.html"], BuildSettings(builder="template:ruby"), InvalidInput,
                     "choose one of template:python, template:node", id="unknown-template"),
        pytest.param(["index.html"], BuildSettings(builder="kaniko"), InvalidInput,
                     "choose one of dockerfile, pack, template:", id="unknown-builder"),
        pytest.param(["Dockerfile"], BuildSettings(dockerfile="Dockerfile.prod"), InvalidSource,
                     "Dockerfile.prod", id="named-dockerfile-missing"),
    ],
)  # fmt: skip
def test_choose_builder_refuses(
    files: list[str], settings: BuildSettings, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=None) as info:
        choose_builder(files, settings=settings, templates=TEMPLATES)
    assert says in str(info.value)


def test_choice_reason_is_said() -> None:
    choice = choose_builder(["requirements.txt"], settings=NO, templates=TEMPLATES)
    assert choice.reason == "no Dockerfile; requirements.txt found"


def test_service_settings_and_request_override() -> None:
    service = service_settings({
        "slipway.dev/builder": "template:python",
        "slipway.dev/build-env": "A=1, B=two\nC=x=y",
        "slipway.dev/pack-builder": "paketobuildpacks/builder-jammy-base",
    })  # fmt: skip
    assert service.build_args == (("A", "1"), ("B", "two"), ("C", "x=y"))
    merged = BuildSettings(builder="pack", build_args=(("B", "three"),)).over(service)
    assert merged.builder == "pack"
    assert merged.build_args == (("A", "1"), ("B", "three"), ("C", "x=y"))
    assert merged.pack_builder == "paketobuildpacks/builder-jammy-base"


@pytest.mark.parametrize("bad", ["NOEQUALS", "=v", "1X=2", "A B=1"])
def test_build_args_must_be_name_value(bad: str) -> None:
    with pytest.raises(InvalidInput, match="must look like NAME=value"):
        parse_pairs([bad], what="build arg")


# --- templates -------------------------------------------------------------------------------

WSGI_APP = "def application(environ, start_response):\n    ...\n"
CASES = {
    "python-requirements-wsgi": (
        "python", {"requirements.txt": "six==1.16.0\n", "app.py": WSGI_APP}, (), ()
    ),
    "python-procfile-with-args": (
        "python",
        {"requirements.txt": "flask\ngunicorn\n", "Procfile": "web: gunicorn -b :$PORT app:app\n"},
        ("PIP_PRE",), ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"),
    ),
    "python-pyproject-fastapi": (
        "python",
        {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["fastapi>=0.110", "httpx"]\n',
         "main.py": "from fastapi import FastAPI\napp = FastAPI()\n"},
        (), (),
    ),
    "node-lockfile": ("node", {"package.json": '{"scripts": {"start": "node server.js"}}',
                               "package-lock.json": "{}", "server.js": ""}, (), ()),
    "node-no-lockfile": ("node", {"package.json": '{"scripts": {"start": "node i.js"}}'},
                         ("NPM_CONFIG_LOGLEVEL",), ("NPM_TOKEN",)),
    "static": ("static", {"index.html": "<h1>hi</h1>"}, (), ()),
    "procfile": ("procfile", {"Procfile": "release: true\nweb: ./serve --port $PORT\n"}, (), ()),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_template_renders_golden_dockerfile(case: str) -> None:
    name, contents, args, secrets = CASES[case]
    template = buildtemplates.find(TEMPLATES, name)
    files = sorted(contents)
    text = buildtemplates.render(
        template,
        files=files,
        contents={f: contents[f] for f in buildtemplates.wanted_files(files)},
        args=args,
        secrets=secrets,
        cache_id="slipway-0123456789abcdef0123",
    )
    golden = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("SLIPWAY_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize(
    ("case", "cache"),
    [
        pytest.param("python-requirements-wsgi", "-pip,target=/root/.cache/pip", id="python"),
        pytest.param("python-procfile-with-args", "-pip,target=/root/.cache/pip", id="py-secrets"),
        pytest.param("node-lockfile", "-npm,target=/root/.npm", id="node"),
        pytest.param("node-no-lockfile", "-npm,target=/root/.npm", id="node-secrets"),
    ],
)
def test_installs_come_before_the_source_with_a_cache_and_secret_mounts(
    case: str, cache: str
) -> None:
    _, _, args, secrets = CASES[case]
    text = (GOLDEN / f"{case}.Dockerfile").read_text()
    install = text.index("RUN --mount=type=cache")
    source = text.index("COPY --chown=10001:10001 . /app")
    assert install < source, "a code change must reuse the install layer"
    assert "RUN " not in text[source:] and text.count("FROM ") == 1
    assert f"RUN --mount=type=cache,id=slipway-0123456789abcdef0123{cache}" in text
    for name in secrets:  # a mount for the install step only, never an ARG
        assert f"--mount=type=secret,id={name}" in text[install:source]
        assert f'export {name}="$(cat /run/secrets/{name})" && ' in text[install:source]
        assert f"ARG {name}" not in text
    for name in args:
        assert text.index(f"ARG {name}\n") < install
    assert "USER 10001:10001" in text[source:] and "PORT=8080" in text


def test_base_image_is_configurable() -> None:
    template = buildtemplates.find(TEMPLATES, "static")
    text = buildtemplates.render(template, files=["index.html"], contents={}, base="my/base:1")
    assert "FROM my/base:1\n" in text


@pytest.mark.parametrize(
    ("name", "contents", "says"),
    [
        pytest.param("procfile", {"Procfile": "worker: run\n"}, "no `web:` line", id="no-web"),
        pytest.param("node", {"package.json": '{"scripts": {"test": "x"}}'}, 'no "start" script',
                     id="node-without-start"),
        pytest.param("python", {"requirements.txt": "six\n", "app.py": "print(1)\n"},
                     "no WSGI/ASGI app found", id="python-without-app"),
        pytest.param("node", {"package.json": "{nope"}, "package.json does not parse",
                     id="bad-package-json"),
    ],
)  # fmt: skip
def test_template_bad_input(name: str, contents: dict[str, str], says: str) -> None:
    template = buildtemplates.find(TEMPLATES, name)
    with pytest.raises(InvalidSource) as info:
        buildtemplates.render(template, files=sorted(contents), contents=contents)
    assert says in info.value.message


# --- Dockerfile checks and context -------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "args", "expected"),
    [
        pytest.param("FROM a:1\nRUN x\n", {}, ["a:1"], id="one"),
        pytest.param("FROM a:1 AS deps\nFROM deps\nFROM scratch\n", {}, ["a:1"], id="stages"),
        pytest.param("ARG V=2\nFROM b:${V}\n", {}, ["b:2"], id="arg-default"),
        pytest.param("ARG V=2\nFROM b:$V\n", {"V": "3"}, ["b:3"], id="arg-given"),
        pytest.param("from --platform=linux/amd64 c as x\n", {}, ["c"], id="platform-lowercase"),
    ],
)  # fmt: skip
def test_from_images(dockerfile: str, args: dict[str, str], expected: list[str]) -> None:
    assert from_images(dockerfile, build_args=args) == expected


def test_registry_host() -> None:
    assert has_registry_host("127.0.0.1:5000/x") and has_registry_host("ghcr.io/a/b")
    assert not has_registry_host("python:3.12") and not has_registry_host("slipway/busybox:1")


def test_mask_hides_secret_values() -> None:
    assert mask("token=s3cr3t and s3cr3t", ["s3cr3t", ""]) == "token=**** and ****"


# --- queue -----------------------------------------------------------------------------------


def test_queue_runs_in_order_one_at_a_time_and_cancels_waiting() -> None:
    queue = BuildQueue(concurrency=1, timeout_s=60)
    order: list[str] = []
    queued: dict[str, int] = {}
    gate = threading.Event()
    errors: dict[str, Exception] = {}

    def build(build_id: str) -> None:
        try:
            with queue.slot(build_id, on_queued=lambda n: queued.__setitem__(build_id, n),
                            on_start=lambda: order.append(build_id)):  # fmt: skip
                gate.wait(10)
        except BuildFailed as e:
            errors[build_id] = e

    threads = []
    for build_id in ("a", "b", "c", "d"):
        t = threading.Thread(target=build, args=(build_id,))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    assert queue.cancel("c")
    gate.set()
    for t in threads:
        t.join(10)
    assert order == ["a", "b", "d"]
    assert queued == {"b": 1, "c": 2, "d": 3}
    assert isinstance(errors["c"], BuildCancelled) and "while queued" in str(errors["c"])


def test_queue_times_out_a_running_build() -> None:
    queue = BuildQueue(concurrency=2, timeout_s=0.2)
    with queue.slot("x", on_queued=lambda n: None, on_start=lambda: None) as control:
        assert control.changed.wait(5)
    with pytest.raises(BuildFailed, match=r"timed out after 0.2s"):
        control.check()
