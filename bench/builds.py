"""Dockerfile builds, classic builder vs BuildKit side by side, for the Python and Node templates.

For each app it times three builds with each builder, interleaved so both see the same network:
the first build (a fresh marker in the dependency manifest makes the install step cold, and
BuildKit's package cache mount starts empty), a one-line application change, and a change of one
dependency. The classic builder builds the templates as they were before BuildKit (a `deps`
stage, no cache mounts; kept below), BuildKit builds today's templates (`buildtemplates/`, cache
mounts) with the argv and environment the platform uses (`pipeline.build.buildkit`). Both build
a context folder on the local Docker Engine; the time is `docker build`'s wall clock (no push).

    .venv/bin/python -m bench.builds [--quick] [--json]

--quick: one run per case and small dependency sets (under five minutes here); otherwise the
median of three runs, with larger dependency sets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.common import Column, bench_arguments, emit, progress, table
from pipeline.build import basecatalog, baseimages, buildkit
from pipeline.build import templates as buildtemplates

# The templates as the classic builder built them (before BuildKit): the install in a `deps`
# stage with no download cache, the result copied into the final stage.
CLASSIC = {
    "python": """\
FROM {{ base }} AS deps
WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir \
--disable-pip-version-check -r requirements.txt{% for p in packages %} {{ p }}{% endfor %}

FROM {{ base }}
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:{{ path }} PORT=8080 HOME=/tmp PYTHONUNBUFFERED=1
WORKDIR /app
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["sh", "-c", {{ command | tojson }}]
""",
    "node": """\
FROM {{ base }} AS deps
WORKDIR /app
COPY {% for f in manifests %}{{ f }} {% endfor %}./
RUN mkdir -p node_modules && {{ install }}

FROM {{ base }}
ENV PORT=8080 HOME=/tmp NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=10001:10001 /app/node_modules /app/node_modules
COPY --chown=10001:10001 . /app
USER 10001:10001
CMD ["npm", "start", "--silent"]
""",
}

PY_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bench v1\\n"]
"""
NODE_APP = "require('http').createServer((q, r) => r.end('bench v1\\n'))" \
           ".listen(process.env.PORT);\n"  # fmt: skip

# (dependencies, the one that changes: (name, before, after)); quick sets stay small.
PY_DEPS = {
    True: ({"requests": "2.32.3", "six": "1.16.0"}, ("six", "1.16.0", "1.17.0")),
    False: ({"requests": "2.32.3", "flask": "3.0.3", "six": "1.16.0"}, ("six", "1.16.0", "1.17.0")),
}
NODE_DEPS = {
    True: ({"express": "4.19.2", "ms": "2.1.2"}, ("ms", "2.1.2", "2.1.3")),
    False: ({"express": "4.19.2", "lodash": "4.17.21", "ms": "2.1.2"}, ("ms", "2.1.2", "2.1.3")),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class App:
    name: str
    files: Callable[[dict[str, str]], dict[str, str]]  # dependencies -> source files
    code: str  # the file the one-line change edits
    deps: tuple[dict[str, str], tuple[str, str, str]]


def python_files(deps: dict[str, str]) -> dict[str, str]:
    lines = "".join(f"{k}=={v}\n" for k, v in deps.items())
    return {"requirements.txt": lines, "app.py": PY_APP}


def node_files(deps: dict[str, str]) -> dict[str, str]:
    package = {"name": "bench", "version": "1.0.0", "scripts": {"start": "node server.js"},
               "dependencies": deps}  # fmt: skip
    return {"package.json": json.dumps(package), "server.js": NODE_APP}


def dockerfiles(app: App, folder: Path, *, cache_id: str) -> dict[str, str]:
    """{"classic": text, "buildkit": text} for the app as it is in `folder` now."""
    template = buildtemplates.find(buildtemplates.load(), app.name)
    files = sorted(p.name for p in folder.iterdir())
    contents = {f: (folder / f).read_text() for f in buildtemplates.wanted_files(files)}
    old = dataclasses.replace(template, text=CLASSIC[app.name])
    return {
        "classic": buildtemplates.render(old, files=files, contents=contents),
        "buildkit": buildtemplates.render(
            template, files=files, contents=contents, cache_id=cache_id
        ),
    }


def build_seconds(builder: str, *, cli: str, context: Path, dockerfile: Path, tag: str) -> float:
    if builder == "buildkit":
        run = buildkit.build_invocation(
            cli=cli, context=context, dockerfile=dockerfile, tag=tag,
            iidfile=dockerfile.with_suffix(".iid"), build_args={}, secrets={},
            base_env=os.environ,
        )  # fmt: skip
        argv, env = run.argv, run.env
    else:
        argv = [cli, "build", "--file", str(dockerfile), "--tag", tag, str(context)]
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{builder} build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)


CASES = ("first build", "one-line code change", "one-dependency change")


def run_app(app: App, *, quick: bool, cli: str, tags: list[str]) -> list[dict[str, object]]:
    """The three cases for one app, both builders each time; medians over the runs."""
    runs = 1 if quick else 3
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(runs):
        for key, took in one_run(app, cli=cli, tags=tags).items():
            seconds.setdefault(key, []).append(took)
    cases = []
    for case in CASES:
        classic = statistics.median(seconds[(case, "classic")])
        bk = statistics.median(seconds[(case, "buildkit")])
        cases.append({"name": f"{app.name}: {case}", "app": app.name, "case": case,
                      "classic_s": round(classic, 2), "buildkit_s": round(bk, 2),
                      "buildkit_over_classic": round(bk / classic, 2), "runs": runs})  # fmt: skip
    return cases


def one_run(app: App, *, cli: str, tags: list[str]) -> dict[tuple[str, str], float]:
    """{(case, builder): seconds} for one fresh copy of the app."""
    deps, (dep, before, _) = app.deps
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp:
        folder, work = Path(tmp) / "app", Path(tmp) / "work"
        folder.mkdir()
        work.mkdir()
        marker = secrets.token_hex(4)  # a cold install step, and an empty cache mount
        write(folder, app.files({**deps, dep: before}))
        _mark(folder, app, marker)
        for case in CASES:
            _change(case, folder=folder, app=app, marker=marker)
            texts = dockerfiles(app, folder, cache_id=f"slipway-bench-{marker}")
            for builder, text in texts.items():
                dockerfile = work / f"{builder}.Dockerfile"
                dockerfile.write_text(text)
                tag = f"slipway-bench/{app.name}-{builder}:{marker}"
                tags.append(tag)
                seconds[(case, builder)] = build_seconds(
                    builder, cli=cli, context=folder, dockerfile=dockerfile, tag=tag
                )
    return seconds


def _change(case: str, *, folder: Path, app: App, marker: str) -> None:
    if case == "one-line code change":
        path = folder / app.code
        path.write_text(path.read_text().replace("bench v1", "bench v2"))
    elif case == "one-dependency change":
        deps, (dep, _, after) = app.deps
        manifest = app.files({**deps, dep: after})
        write(folder, {k: v for k, v in manifest.items() if k != app.code})
        _mark(folder, app, marker)


def _mark(folder: Path, app: App, marker: str) -> None:
    if app.name == "python":
        path = folder / "requirements.txt"
        path.write_text(f"# {marker}\n{path.read_text()}")
    else:
        package = json.loads((folder / "package.json").read_text())
        package["description"] = marker
        (folder / "package.json").write_text(json.dumps(package))


COLUMNS = (
    Column("app", "app", "<8"), Column("case", "case", "<23"),
    Column("classic_s", "classic s", ">10.2f"), Column("buildkit_s", "BuildKit s", ">11.2f"),
    Column("buildkit_over_classic", "BuildKit/classic", ">17.2f"),
)  # fmt: skip


def main() -> int:
    parser = bench_arguments(__doc__)
    parser.add_argument("--quick", action="store_true", help="one run each, small dependency sets")
    opts = parser.parse_args()
    client = docker.from_env(timeout=300)
    baseimages.ensure_base_images(client, references=[basecatalog.PYTHON, basecatalog.NODE])
    apps = [
        App(name="python", files=python_files, code="app.py", deps=PY_DEPS[opts.quick]),
        App(name="node", files=node_files, code="server.js", deps=NODE_DEPS[opts.quick]),
    ]
    cli = buildkit.docker_cli()
    tags: list[str] = []
    cases: list[dict[str, object]] = []
    try:
        for app in apps:
            cases += run_app(app, quick=opts.quick, cli=cli, tags=tags)
            if not opts.json:
                progress(table([c for c in cases if c["app"] == app.name], COLUMNS))
    finally:
        for tag in dict.fromkeys(tags):  # only the images this run made
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(tag)
    emit(cases, COLUMNS, as_json=opts.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
