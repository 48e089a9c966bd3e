"""`pack build` as Slipway runs it: argv, builder choice, trust, the volume key, the pack-related
settings, and what each pack failure says (pack 0.40.9's exact output, from buildpacks/README.md).
The real pack runs in tests/integration/test_pack.py.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pipeline.build.builders import BuildRequest, BuildSettings
from pipeline.build.buildpacks import PackBuilder, pack_argv, project_builder, volume_key
from pipeline.build.packerrors import PackRun, failure
from pipeline.build.processes import BuildControl
from pipeline.build.sources import SourceInfo
from pipeline.core.errors import BuildFailed, Unavailable
from pipeline.core.settings import DEFAULT_PACK_BUILDER, Settings, default_pack_bin

OWN = DEFAULT_PACK_BUILDER
PAKETO = "paketobuildpacks/builder-jammy-base"


def source(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def request(files: dict[str, str], settings: BuildSettings | None = None) -> BuildRequest:
    return BuildRequest(
        build_id="b1", source=source(files), info=SourceInfo(files=tuple(files)),
        repository="127.0.0.1:5000/app", settings=settings or BuildSettings(),
    )  # fmt: skip


# --- argv --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "trust", "expected"),
    [
        pytest.param(OWN, True, ["--builder", OWN, "--pull-policy", "never", "--trust-builder"],
                     id="own-builder-local-and-trusted"),
        pytest.param(PAKETO, False, ["--builder", PAKETO, "--pull-policy", "if-not-present"],
                     id="remote-builder-pulled-if-missing-untrusted"),
        pytest.param("", False, [], id="no-builder-packs-default"),
    ],
)  # fmt: skip
def test_pack_argv(builder: str, trust: bool, expected: list[str]) -> None:
    argv = pack_argv(
        pack="pack", image="r/app", tag="r/app:build-1", builder=builder, trust=trust,
        path=Path("/src"), env=[("A", "1")], env_file=Path("/tmp/s.env"),
    )  # fmt: skip
    assert argv == [
        "pack", "build", "r/app", "--tag", "r/app:build-1", *expected, "--path", "/src",
        "--default-process", "web", "--env", "A=1", "--env-file", "/tmp/s.env",
    ]  # fmt: skip


def test_the_image_name_is_stable_and_the_build_id_only_a_tag() -> None:
    """pack keys its cache volumes and the previous image on the name: a unique name per build
    would make every build cold."""
    argv = pack_argv(
        pack="pack", image="r/app", tag="r/app:build-2", builder=OWN, trust=True,
        path=Path("/s"), env=[], env_file=None,
    )  # fmt: skip
    assert argv[:5] == ["pack", "build", "r/app", "--tag", "r/app:build-2"]
    assert "--env-file" not in argv


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[_]\nschema-version = "0.2"\n[io.buildpacks]\nbuilder = "paketo/b:1"\n', "paketo/b:1"),
        ("[project]\nid = 'x'\n", ""),
        ("not toml [", ""),
    ],
)
def test_project_builder(text: str, expected: str) -> None:
    assert project_builder(text) == expected


PROJECT = '[_]\nschema-version = "0.2"\n[io.buildpacks]\nbuilder = "project/b:1"\n'


@pytest.mark.parametrize(
    ("files", "service", "default", "expected"),
    [
        pytest.param({"project.toml": PROJECT}, "svc/b:1", OWN, ("svc/b:1", "the service"),
                     id="service-wins"),
        pytest.param({"project.toml": PROJECT}, "", OWN, ("project/b:1", "project.toml"),
                     id="then-project-toml"),
        pytest.param({"project.toml": ""}, "", OWN, (OWN, "Slipway's default"),
                     id="then-slipways-builder"),
        pytest.param({"project.toml": ""}, "", "ops/b:2", ("ops/b:2", "SLIPWAY_PACK_BUILDER"),
                     id="then-the-configured-one"),
        pytest.param({"project.toml": ""}, "", "", ("", "pack's default"),
                     id="none-configured"),
    ],
)  # fmt: skip
def test_builder_choice(
    files: dict[str, str], service: str, default: str, expected: tuple[str, str]
) -> None:
    builder = PackBuilder(None, default_builder=default)
    assert builder.choose(request(files, BuildSettings(pack_builder=service))) == expected


@pytest.mark.parametrize(
    ("default", "configured", "builder", "trusted"),
    [
        pytest.param(OWN, frozenset(), OWN, True, id="slipways-builder"),
        pytest.param("ops/b:2", frozenset(), "ops/b:2", True, id="the-operators-default"),
        pytest.param("ops/b:2", frozenset(), OWN, True, id="slipways-builder-still"),
        pytest.param(OWN, frozenset(), PAKETO, False, id="a-builder-a-user-names"),
        pytest.param(OWN, frozenset({PAKETO}), PAKETO, True, id="unless-configured"),
        pytest.param("", frozenset(), "", False, id="packs-default"),
    ],
)  # fmt: skip
def test_trust(default: str, configured: frozenset[str], builder: str, trusted: bool) -> None:
    packer = PackBuilder(None, default_builder=default, trusted_builders=configured)
    assert packer.trusts(builder) is trusted


def test_volume_key_is_stable_secret_derived_and_not_the_secret(tmp_path: Path) -> None:
    first = volume_key(tmp_path)
    stored = tmp_path / "pack-volume-key"
    assert volume_key(tmp_path) == first  # the same cache volumes after a restart
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_text().strip() not in first
    assert volume_key(tmp_path / "other") != first  # another platform, other volumes


def test_pack_not_installed_says_how_to_install_it() -> None:
    builder = PackBuilder(None, pack_bin="/nonexistent/pack")  # fails before Docker is used
    with pytest.raises(BuildFailed) as caught:
        builder.build(request({"project.toml": ""}), on_line=lambda _line: None,
                      control=BuildControl("b1"))  # fmt: skip
    assert "pack is not installed on the Slipway machine (looked for /nonexistent/pack)" in str(
        caught.value
    )
    assert "`./scripts/tools pack`" in str(caught.value) and "SLIPWAY_PACK" in str(caught.value)


# --- settings ----------------------------------------------------------------------------------


def test_pack_settings_default_to_the_built_pack_and_slipways_builder(tmp_path: Path) -> None:
    for version in ("v0.9.0", "v0.40.9", "v0.38.2"):
        binary = tmp_path / f"pack-{version}" / "bin" / "pack"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    newest = str(tmp_path / "pack-v0.40.9" / "bin" / "pack")
    assert default_pack_bin(tmp_path) == newest
    assert default_pack_bin(tmp_path / "empty") == "pack"

    settings = Settings.from_env({"SLIPWAY_TOOLS_CACHE": str(tmp_path)})
    assert settings.pack_bin == newest
    assert settings.pack_builder == "slipway/builder:bookworm"
    assert settings.pack_trusted_builders == frozenset()

    settings = Settings.from_env({
        "SLIPWAY_TOOLS_CACHE": str(tmp_path), "SLIPWAY_PACK": "/opt/pack",
        "SLIPWAY_PACK_BUILDER": " ops/b:2 ", "SLIPWAY_PACK_TRUSTED_BUILDERS": f"{PAKETO}, ,x/y",
    })  # fmt: skip
    assert settings.pack_bin == "/opt/pack"
    assert settings.pack_builder == "ops/b:2"
    assert settings.pack_trusted_builders == frozenset({PAKETO, "x/y"})


# --- failures ----------------------------------------------------------------------------------

LIFECYCLE_51 = "ERROR: failed to build: executing lifecycle: failed with status code: 51"
LIFECYCLE_20 = "ERROR: failed to build: executing lifecycle: failed with status code: 20"
DETECT_OUTPUT = [
    "======== Results ========", "fail: slipway/python@0.1.0", "fail: slipway/node@0.1.0",
    "ERROR: No buildpack groups passed detection.",
    "ERROR: Please check that you are running against the correct path.",
    "ERROR: failed to detect: no buildpacks participating",
]  # fmt: skip
NO_WEB = (
    "ERROR: slipway/python: no web process: add a Procfile with a `web: <command>` line, or a "
    "main.py or app.py that listens on $PORT"
)


def fetch_error(ref: str) -> str:
    full = f"index.docker.io/{ref}"
    return (
        f"ERROR: failed to build: failed to fetch builder image '{full}': image '{full}' does not "
        "exist on the daemon: not found"
    )


@pytest.mark.parametrize(
    ("builder", "code", "output", "says"),
    [
        pytest.param(OWN, 1, [fetch_error(OWN)],
                     f"Slipway's builder image {OWN} is not on this machine: make it with "
                     "./scripts/builder", id="own-builder-missing"),
        pytest.param("slipway/nope:bookworm", 1, [fetch_error("slipway/nope:bookworm")],
                     "the builder image slipway/nope:bookworm is not on this machine, and Slipway "
                     "never pulls slipway/ images: name an existing builder with the annotation "
                     "slipway.dev/pack-builder", id="local-builder-missing"),
        pytest.param(PAKETO, 1, [fetch_error(PAKETO)],
                     f"the builder image {PAKETO} is not on this machine and could not be pulled: "
                     f"load it into the Docker Engine (docker pull {PAKETO})",
                     id="remote-builder-missing"),
        pytest.param(OWN, 1, [*DETECT_OUTPUT, LIFECYCLE_20],
                     f"no buildpack of {OWN} detects this app: Slipway's builder builds a Python "
                     "app (requirements.txt or pyproject.toml), a Node.js app (package.json)",
                     id="nothing-detects"),
        pytest.param(OWN, 1, [LIFECYCLE_20, "Warning: something after"],
                     f"no buildpack of {OWN} detects this app", id="detect-by-status"),
        pytest.param(PAKETO, 1, [*DETECT_OUTPUT, LIFECYCLE_20],
                     f"no buildpack of {PAKETO} detects this app: add the files its buildpacks "
                     f"look for (`pack builder inspect {PAKETO}` lists them)",
                     id="nothing-detects-other"),
        pytest.param(OWN, 1, [
            "-----> Python 3.11.2 (/usr/bin/python3)", NO_WEB,
            "ERROR: failed to build: exit status 1", LIFECYCLE_51],
                     "a buildpack failed: slipway/python: no web process: add a Procfile",
                     id="buildpack-error-line"),
        pytest.param(PAKETO, 1, ["   pip: resolution impossible",
                                 "ERROR: failed to build: exit status 1", LIFECYCLE_51],
                     "a buildpack failed: pip: resolution impossible",
                     id="buildpack-without-error-line"),
        pytest.param("", 2, ["Please select a default builder with:", "",
                             "\tpack config default-builder <builder-image>"],
                     "pack has no builder configured: set one with the annotation "
                     "slipway.dev/pack-builder, `[io.buildpacks] builder = ...` in project.toml, "
                     "or SLIPWAY_PACK_BUILDER", id="no-builder-exit-2"),
        pytest.param(PAKETO, 1, [
            "ERROR: failed to build: fetching lifecycle image: image "
            "'docker.io/buildpacksio/lifecycle:0.21.0' does not exist on the daemon: not found"],
                     f"{PAKETO} is not a trusted builder, so pack wants the separate lifecycle "
                     f"image, which is not on this machine (failed to build: fetching lifecycle "
                     f"image: image 'docker.io/buildpacksio/lifecycle:0.21.0' does not exist on "
                     f"the daemon: not found): if you trust {PAKETO}, add it to "
                     "SLIPWAY_PACK_TRUSTED_BUILDERS", id="untrusted-builder"),
        pytest.param(OWN, 1, [
            "ERROR: failed to build: invalid run-image 'slipway/cnb-run:bookworm': image "
            "'slipway/cnb-run:bookworm' does not exist on the daemon: not found"],
                     f"the run image of {OWN} is not on this machine (failed to build: invalid "
                     "run-image 'slipway/cnb-run:bookworm'", id="run-image-missing"),
        pytest.param(OWN, 1, [
            "ERROR: failed to initialize analyzer: getting previous image: Error response from "
            "daemon: client version 1.52 is too new. Maximum supported API version is 1.41",
            "ERROR: failed to build: executing lifecycle: failed with status code: 1"],
                     "speaks a newer Docker Engine API than this engine: remake the builder with "
                     "./scripts/builder", id="engine-too-old"),
        pytest.param(OWN, 1, [
            "ERROR: failed to build: invalid app path '/tmp/x': evaluate symlink: lstat /tmp/x: "
            "no such file or directory"],
                     "pack build exited 1: failed to build: invalid app path '/tmp/x'",
                     id="anything-else-says-packs-error"),
    ],
)  # fmt: skip
def test_pack_failures_name_the_fix(builder: str, code: int, output: list[str], says: str) -> None:
    run = PackRun(builder=builder, own_builder=builder == OWN, local=builder.startswith("slipway/"))
    errors = [line for line in output if line.startswith("ERROR:")]

    error = failure(run, returncode=code, errors=errors, tail=output)

    assert isinstance(error, BuildFailed)
    assert error.message.startswith("build failed: ")
    assert says in error.message, error.message
    assert error.log_tail == "\n".join(output)


def test_a_docker_engine_that_does_not_answer_is_unavailable() -> None:
    line = (
        "ERROR: failed to build: Cannot connect to the Docker daemon at unix:///var/run/docker.sock"
    )
    run = PackRun(builder=OWN, own_builder=True, local=True)
    error = failure(run, returncode=1, errors=[line], tail=[line])
    assert isinstance(error, Unavailable) and error.retryable


def test_env_file_is_private(tmp_path: Path) -> None:
    from pipeline.build.buildpacks import _env_file

    assert _env_file(tmp_path, []) is None
    path = _env_file(tmp_path, [("TOKEN", "s3cret")])
    assert path is not None and path.read_text() == "TOKEN=s3cret\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
