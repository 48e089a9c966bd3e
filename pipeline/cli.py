"""The `slipway` command: a thin client over the API, plus `server` to run the control plane."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline import sources
from pipeline.client import Client, ClientError
from pipeline.errors import SlipwayError

# Locals in tracebacks could include the token: never show them.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Slipway: source to URL.",
    pretty_exceptions_show_locals=False,
)
services = typer.Typer(no_args_is_help=True, help="List, describe, replace and delete services.")
revisions = typer.Typer(no_args_is_help=True, help="Inspect revisions.")
images = typer.Typer(no_args_is_help=True, help="Base images made from the OS package archive.")
app.add_typer(services, name="services")
app.add_typer(revisions, name="revisions")
builds = typer.Typer(no_args_is_help=True, help="Builds and their logs.")
app.add_typer(images, name="images")
app.add_typer(builds, name="builds")

# soft_wrap: long lines (digests, URLs) stay whole when piped or copied.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _client() -> Client:
    return Client.from_env()


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code=1)


def _follow(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Print deployment events as they arrive; return the final one."""
    last: dict[str, Any] = {}
    for ev in events:
        last = ev
        kind = ev.get("event")
        if kind == "log":
            line = str(ev["line"])
            indent = "" if line.startswith("----->") else "       "
            out.print(f"{indent}{line}", highlight=False, markup=False)
        elif kind == "build":
            out.print(f"-----> Build {ev['build']} ({ev['builder']})", highlight=False)
        elif kind == "stage":
            secs = f"   {ev['seconds']}s" if ev.get("seconds") else ""
            out.print(f"-----> {ev['text']}{secs}", highlight=False, markup=False)
        elif kind == "revision":
            out.print(
                f"-----> Revision {ev['revision']} created, waiting until ready", highlight=False
            )
        elif kind == "ready":
            out.print(f"-----> {ev['revision']} ready   {ev['seconds']}s", highlight=False)
        elif kind == "error":
            if ev.get("log_tail"):
                err.print(ev["log_tail"], highlight=False, markup=False)
            raise _fail(ev["message"])
    return last


@app.command()
def deploy(
    name: Annotated[str, typer.Argument(help="Service name (DNS-1035 label).")],
    source: Annotated[
        Path | None, typer.Option("--source", help="Folder to build (with a Dockerfile).")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Deploy this image; no build.")
    ] = None,
    git: Annotated[
        str | None, typer.Option("--git", help="Clone this repository URL and build it.")
    ] = None,
    ref: Annotated[str, typer.Option("--ref", help="Branch, tag or sha for --git.")] = "HEAD",
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="NAME=value, repeatable.")
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option("--builder", help="dockerfile, pack or template:<name> (default: detect)."),
    ] = None,
    dockerfile: Annotated[
        str | None, typer.Option("--dockerfile", help="Dockerfile path in the source folder.")
    ] = None,
    base_image: Annotated[
        str | None, typer.Option("--base-image", help="Base image for a build template.")
    ] = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="NAME=value for the build, repeatable.")
    ] = None,
    build_secret: Annotated[
        list[str] | None,
        typer.Option(
            "--build-secret",
            help="NAME (value from your environment) or NAME=value; kept out of logs and the "
            "image history. Repeatable.",
        ),
    ] = None,
) -> None:
    """Build (or take an image) and deploy it as a new revision; traffic moves when ready."""
    if sum(x is not None for x in (source, image, git)) != 1:
        raise _fail("give exactly one of --source DIR, --git URL or --image REGISTRY/REPO:TAG")
    params: list[tuple[str, str]] = [("env", e) for e in env or []]
    params += [("build_arg", a) for a in build_arg or []]
    if builder:
        params.append(("builder", builder))
    if dockerfile:
        params.append(("dockerfile", dockerfile))
    if base_image:
        params.append(("base_image", base_image))
    secrets = _secrets(build_secret or [])
    client = _client()
    try:
        if image is not None:
            params.append(("image", image))
            events = client.stream("POST", f"/v1/services/{name}/deployments", params=params)
        elif git is not None:
            events = client.stream(
                "POST",
                f"/v1/services/{name}/deployments",
                params=params,
                json={"git": {"url": git, "ref": ref}, "build_secrets": dict(secrets)},
            )
        else:
            assert source is not None
            try:
                archive = sources.pack(source)
            except SlipwayError as e:
                raise _fail(e.message) from e
            out.print(f"-----> Uploading {source} ({len(archive) // 1024} KiB)", highlight=False)
            events = client.stream(
                "POST",
                f"/v1/services/{name}/deployments",
                params=params,
                content=archive,
                headers=[
                    ("Content-Type", "application/gzip"),
                    *((SECRET_HEADER, f"{k}={v}") for k, v in secrets),
                ],
            )
        done = _follow(events)
    except ClientError as e:
        raise _fail(e.message) from e
    if done.get("event") != "done":
        raise _fail("the deployment stream ended early: see `slipway services describe`")
    urls = done.get("urls") or []
    out.print(f"{done['revision']} ready  {'  '.join(urls)}", highlight=False)


SECRET_HEADER = "X-Slipway-Build-Secret"


def _secrets(given: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in given:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise _fail(f"--build-secret {key}: no such variable in your environment")
            value = os.environ[key]
        pairs.append((key, value))
    return pairs


@services.command("list")
def services_list() -> None:
    try:
        rows = _client().request("GET", "/v1/services")
    except ClientError as e:
        raise _fail(e.message) from e
    table = Table("NAME", "URL", "LATEST READY", "TRAFFIC", box=None)
    for s in rows:
        split = ", ".join(f"{t['revision']}={t['percent']}%" for t in s["traffic"] if t["percent"])
        table.add_row(s["name"], s["url"], s["latest_ready_revision"] or "-", split or "-")
    out.print(table)


@services.command("describe")
def services_describe(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    try:
        view = _client().request("GET", f"/v1/services/{name}")
    except ClientError as e:
        raise _fail(e.message) from e
    if as_json:
        out.print_json(json.dumps(view))
        return
    out.print(f"[bold]{view['name']}[/]  {view['url']}  generation {view['generation']}")
    out.print("Traffic:")
    for t in view["traffic"]:
        tag = f"  #{t['tag']} {t['url']}" if t.get("tag") else ""
        out.print(f"  {t['percent']:>3}%  {t['revision']}{tag}", highlight=False)
    table = Table("REVISION", "STATUS", "INSTANCES", "IMAGE", "REASON", box=None)
    for r in view["revisions"]:
        table.add_row(
            r["name"], r["status"], str(r["instances"]["running"]), r["image"], r["reason"]
        )
    out.print(table)
    for r in view["revisions"]:
        if r["status"] == "Failed":
            out.print(f"[red]{r['name']}[/]: {r['message']}", highlight=False)


@services.command("delete")
def services_delete(name: str) -> None:
    try:
        _client().request("DELETE", f"/v1/services/{name}")
    except ClientError as e:
        raise _fail(e.message) from e
    out.print(f"Deleted {name}")


@services.command("replace")
def services_replace(
    file: Annotated[Path, typer.Argument(help="A serving.knative.dev/v1 Service (YAML/JSON).")],
) -> None:
    """Create or replace a service from a Knative Service document."""
    try:
        text = file.read_text()
    except OSError as e:
        raise _fail(f"cannot read {file}: {e.strerror}") from e
    from pipeline import spec

    try:
        name = spec.parse_service(text, require_image=True).to_manifest()["metadata"]["name"]
    except SlipwayError as e:
        raise _fail(f"{file}: {e.message}") from e
    try:
        done = _follow(
            _client().stream(
                "PUT",
                f"/v1/services/{name}",
                content=text.encode(),
                headers={"Content-Type": "application/yaml"},
            )
        )
    except ClientError as e:
        raise _fail(e.message) from e
    state = "ready" if done.get("created") else "unchanged"
    out.print(f"{done['revision']} {state}  {'  '.join(done.get('urls') or [])}", highlight=False)


@revisions.command("list")
def revisions_list(service: str) -> None:
    try:
        rows = _client().request("GET", f"/v1/services/{service}/revisions")
    except ClientError as e:
        raise _fail(e.message) from e
    table = Table("REVISION", "STATUS", "INSTANCES", "CREATED", "REASON", box=None)
    for r in rows:
        table.add_row(
            r["name"], r["status"], str(r["instances"]["running"]), r["created"], r["reason"]
        )
    out.print(table)


@builds.command("list")
def builds_list(
    service: Annotated[str | None, typer.Option("--service", help="Only this service.")] = None,
) -> None:
    try:
        rows = _client().request(
            "GET", "/v1/builds", params={"service": service} if service else {}
        )
    except ClientError as e:
        raise _fail(e.message) from e
    table = Table("BUILD", "SERVICE", "STATUS", "CREATED", "IMAGE / ERROR", box=None)
    for b in rows:
        table.add_row(b["id"], b["service"], b["status"], b["created"], b["error"] or b["image"])
    out.print(table)


@builds.command("cancel")
def builds_cancel(build_id: str) -> None:
    """Stop a queued or running build; no revision is made from it."""
    try:
        build = _client().request("POST", f"/v1/builds/{build_id}/cancel")
    except ClientError as e:
        raise _fail(e.message) from e
    out.print(f"Build {build_id} {build['status']}", highlight=False)


@builds.command("log")
def builds_log(
    build_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
) -> None:
    """Print a build's log; with --follow, stream it while the build runs."""
    client = _client()
    try:
        for chunk in client.stream_text(
            f"/v1/builds/{build_id}/log", params={"follow": "1" if follow else "0"}
        ):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        status = client.request("GET", f"/v1/builds/{build_id}")
    except ClientError as e:
        raise _fail(e.message) from e
    if status["status"] == "failed":
        raise _fail(f"build {build_id} failed: {status['error']}")


@images.command("ensure")
def images_ensure(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
    all_images: Annotated[
        bool, typer.Option("--all", help="Also the slow ones (slipway/node).")
    ] = False,
    refs: Annotated[list[str] | None, typer.Argument(help="Image references.")] = None,
) -> None:
    """Make Slipway's base images from the OS package archive (no registry needed)."""
    from pipeline import baseimages

    argv = (["--force"] if force else []) + (["--all"] if all_images else []) + list(refs or [])
    raise typer.Exit(code=baseimages.main(argv))


@app.command()
def server() -> None:
    """Run the control plane (API + reconciler) in the foreground."""
    from pipeline import server as server_mod

    try:
        server_mod.run()
    except SlipwayError as e:
        raise _fail(e.message) from e


@app.command()
def version() -> None:
    from pipeline import __version__

    out.print(f"slipway {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
