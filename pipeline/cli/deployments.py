"""`slipway deploy`: options in, one POST /v1/services/<name>/deployments out, its events printed.

The options become a `DeployParams` (pipeline.deploy.params, the shape the API reads) and travel
as its query; the source travels as the body (a gzip archive, a git URL in JSON, or nothing for
an image); build secrets travel in headers or the JSON body, never in the URL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pipeline.build import sources
from pipeline.cli import envfiles
from pipeline.cli.output import fail, follow_stream, out
from pipeline.core.errors import InvalidInput, SlipwayError
from pipeline.core.pairs import parse_pairs
from pipeline.deploy.params import DeployParams

SECRET_HEADER = "X-Slipway-Build-Secret"

# DeployParams fields whose flag is not `--` + the field name.
FLAGS = {"secret": "--set-secrets"}

# The options, one alias each, so that the command's signature reads as a list of flags.
Name = Annotated[str, typer.Argument(help="Service name (DNS-1035 label).")]
Source = Annotated[
    Path | None, typer.Option("--source", help="Folder to build (with a Dockerfile).")
]
Image = Annotated[str | None, typer.Option("--image", help="Deploy this image; no build.")]
Git = Annotated[str | None, typer.Option("--git", help="Clone this repository URL and build it.")]
Ref = Annotated[str, typer.Option("--ref", help="Branch, tag or sha for --git.")]
NoTraffic = Annotated[
    bool, typer.Option("--no-traffic", help="Deploy at 0%: what serves now keeps serving.")
]
Tag = Annotated[str, typer.Option("--tag", help="Tag URL for the new revision.")]
EnvFile = Annotated[
    Path | None, typer.Option("--env-file", help="KEY=value lines, like a .env file.")
]
RemoveEnv = Annotated[
    list[str] | None, typer.Option("--remove-env", help="Drop this variable; repeatable.")
]
SetSecrets = Annotated[
    list[str] | None,
    typer.Option("--set-secrets", help="ENV=SECRET:KEY, from `slipway secrets`; repeatable."),
]
Concurrency = Annotated[
    int | None, typer.Option("--concurrency", help="Max requests per instance (0: any).")
]
Timeout = Annotated[
    int | None, typer.Option("--timeout", help="Request timeout in seconds (max 3600).")
]
MinInstances = Annotated[int | None, typer.Option("--min-instances", help="autoscaling min-scale.")]
MaxInstances = Annotated[
    int | None, typer.Option("--max-instances", help="autoscaling max-scale (0: no cap).")
]
Port = Annotated[
    int | None,
    typer.Option(
        "--port", help="Port the container listens on, given to it as $PORT (default 8080)."
    ),
]
Command = Annotated[
    list[str] | None,
    typer.Option(
        "--command",
        help="Entrypoint, words separated by commas: --command=python,app.py. "
        "--command='' clears it (the image's ENTRYPOINT runs).",
    ),
]
Args = Annotated[
    list[str] | None,
    typer.Option(
        "--args",
        help="Arguments to the entrypoint, separated by commas: --args=-m,http.server. "
        "Words holding commas: --args='^|^-c|echo a,b' splits on '|'. --args='' clears them.",
    ),
]
Cpu = Annotated[str | None, typer.Option("--cpu", help="CPU limit per instance: 1, 0.5 or 500m.")]
Memory = Annotated[
    str | None, typer.Option("--memory", help="Memory limit per instance: 128Mi, 512Mi, 1Gi.")
]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=value, repeatable.")]
Builder = Annotated[
    str | None,
    typer.Option("--builder", help="dockerfile, pack or template:<name> (default: detect)."),
]
Dockerfile = Annotated[
    str | None, typer.Option("--dockerfile", help="Dockerfile path in the source folder.")
]
BaseImage = Annotated[
    str | None, typer.Option("--base-image", help="Base image for a build template.")
]
BuildArg = Annotated[
    list[str] | None, typer.Option("--build-arg", help="NAME=value for the build, repeatable.")
]
BuildSecret = Annotated[
    list[str] | None,
    typer.Option(
        "--build-secret",
        help="NAME (value from your environment) or NAME=value; kept out of logs and the "
        "image history. Repeatable.",
    ),
]
AllowUnauthenticated = Annotated[
    bool | None,
    typer.Option(
        "--allow-unauthenticated/--no-allow-unauthenticated",
        help="Public (default for new services), or private: only invokers with an identity token.",
    ),
]


def deploy(
    name: Name,
    source: Source = None,
    image: Image = None,
    git: Git = None,
    ref: Ref = "HEAD",
    no_traffic: NoTraffic = False,
    tag: Tag = "",
    env_file: EnvFile = None,
    remove_env: RemoveEnv = None,
    set_secrets: SetSecrets = None,
    concurrency: Concurrency = None,
    timeout: Timeout = None,
    min_instances: MinInstances = None,
    max_instances: MaxInstances = None,
    port: Port = None,
    command: Command = None,
    args: Args = None,
    cpu: Cpu = None,
    memory: Memory = None,
    env: Env = None,
    builder: Builder = None,
    dockerfile: Dockerfile = None,
    base_image: BaseImage = None,
    build_arg: BuildArg = None,
    build_secret: BuildSecret = None,
    allow_unauthenticated: AllowUnauthenticated = None,
) -> None:
    """Build (or take an image) and deploy it as a new revision; traffic moves when ready.

    A flag not given keeps what the service's last revision had."""
    if sum(x is not None for x in (source, image, git)) != 1:
        raise fail("give exactly one of --source DIR, --git URL or --image REGISTRY/REPO:TAG")
    try:
        params = deploy_params(
            image=image, env=[*(envfiles.read(env_file) if env_file else []), *(env or [])],
            remove_env=remove_env, set_secrets=set_secrets, tag=tag, no_traffic=no_traffic,
            concurrency=concurrency, timeout=timeout, min_instances=min_instances,
            max_instances=max_instances, allow_unauthenticated=allow_unauthenticated,
            builder=builder, dockerfile=dockerfile, base_image=base_image, build_arg=build_arg,
            container=ContainerFlags(
                port=port, command=gcloud_list(command), args=gcloud_list(args), cpu=cpu,
                memory=memory,
            ),
        )  # fmt: skip
        secrets = build_secrets(build_secret or [], environ=os.environ)
        archive = sources.pack(source) if source is not None else None
    except SlipwayError as e:
        raise fail(e.message) from e
    if archive is not None:
        out.print(f"-----> Uploading {source} ({len(archive) // 1024} KiB)", highlight=False)
    request = deploy_request(params=params, git=git, ref=ref, archive=archive, secrets=secrets)
    ready: dict[str, Any] = {}
    done = follow_stream("POST", f"/v1/services/{name}/deployments",
                         seen=lambda ev: ready.update(ev) if ev.get("event") == "ready" else None,
                         **request)  # fmt: skip
    if done.get("event") != "done":
        raise fail("the deployment stream ended early: see `slipway services describe`")
    if "urls" not in ready:  # a server from before the ready step listed them: say them here
        urls = done.get("urls") or []
        out.print(f"{done['revision']} ready  {'  '.join(urls)}", highlight=False)


def deploy_params(
    *,
    image: str | None,
    env: list[str],
    remove_env: list[str] | None,
    set_secrets: list[str] | None,
    tag: str,
    no_traffic: bool,
    concurrency: int | None,
    timeout: int | None,
    min_instances: int | None,
    max_instances: int | None,
    allow_unauthenticated: bool | None,
    builder: str | None,
    dockerfile: str | None,
    base_image: str | None,
    build_arg: list[str] | None,
    container: ContainerFlags | None = None,
) -> DeployParams:
    """The deploy options as the API reads them; unset options stay unset (and off the URL)."""
    try:
        return DeployParams(
            image=image, env=env, remove_env=remove_env or [], secret=set_secrets or [],
            tag=tag, no_traffic=no_traffic, concurrency=concurrency, timeout=timeout,
            min_instances=min_instances, max_instances=max_instances,
            allow_unauthenticated=allow_unauthenticated, builder=builder or "",
            dockerfile=dockerfile or "", base_image=base_image or "", build_arg=build_arg or [],
            **vars(container or ContainerFlags()),
        )  # fmt: skip
    except ValidationError as e:
        problem = e.errors()[0]
        field = str(problem["loc"][0])
        flag = FLAGS.get(field, "--" + field.replace("_", "-"))
        raise InvalidInput(f"{flag}: {problem['msg'].removeprefix('Value error, ')}") from e


@dataclass(frozen=True, kw_only=True)
class ContainerFlags:
    """`--port`, `--command`, `--args`, `--cpu`, `--memory`: None keeps the last revision's."""

    port: int | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    cpu: str | None = None
    memory: str | None = None


def gcloud_list(given: list[str] | None) -> list[str] | None:
    """gcloud's list flag grammar: `a,b` is two words; `^|^a,b|c` splits on `|` instead (for
    words holding commas); repeated flags add up; an empty value alone means an empty list.
    None when the flag was not given."""
    if given is None:
        return None
    words: list[str] = []
    for value in given:
        if not value:
            continue
        delimiter = ","
        if value.startswith("^") and value.find("^", 1) > 1:
            end = value.find("^", 1)
            delimiter, value = value[1:end], value[end + 1 :]
        words += value.split(delimiter)
    return words


def build_secrets(
    given: Sequence[str], *, environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """`NAME=value` as given, or `NAME` alone for the value of that variable in `environ`."""
    pairs = []
    for item in given:
        if "=" not in item and item not in environ:
            raise InvalidInput(f"--build-secret {item}: no such variable in your environment")
        pairs.append(item if "=" in item else f"{item}={environ[item]}")
    return parse_pairs(pairs, what="build secret")


def deploy_request(
    *,
    params: DeployParams,
    git: str | None,
    ref: str,
    archive: bytes | None,
    secrets: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    """The keyword arguments of the deployment POST: the query, then the source as the body."""
    query = params.to_query()
    if git is not None:
        body = {"git": {"url": git, "ref": ref}, "build_secrets": dict(secrets)}
        return {"params": query, "json": body}
    if archive is None:  # --image: nothing to upload, no build to give secrets to
        return {"params": query}
    headers = [("Content-Type", "application/gzip")]
    headers += [(SECRET_HEADER, f"{k}={v}") for k, v in secrets]
    return {"params": query, "content": archive, "headers": headers}
