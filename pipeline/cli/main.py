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

from pipeline.build import sources
from pipeline.cli.client import Client, ClientError
from pipeline.core.errors import SlipwayError

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
secrets_app = typer.Typer(no_args_is_help=True, help="Secrets, encrypted at rest; used as env.")
app.add_typer(secrets_app, name="secrets")
app.add_typer(images, name="images")
app.add_typer(builds, name="builds")
keys_app = typer.Typer(no_args_is_help=True, help="Keys that sign identity tokens.")
auth_app = typer.Typer(no_args_is_help=True, help="Identity tokens for people.")
app.add_typer(keys_app, name="keys")
app.add_typer(auth_app, name="auth")

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
    no_traffic: Annotated[
        bool, typer.Option("--no-traffic", help="Deploy at 0%: what serves now keeps serving.")
    ] = False,
    tag: Annotated[str, typer.Option("--tag", help="Tag URL for the new revision.")] = "",
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="KEY=value lines, like a .env file.")
    ] = None,
    remove_env: Annotated[
        list[str] | None, typer.Option("--remove-env", help="Drop this variable; repeatable.")
    ] = None,
    set_secrets: Annotated[
        list[str] | None,
        typer.Option("--set-secrets", help="ENV=SECRET:KEY, from `slipway secrets`; repeatable."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Max requests per instance (0: any).")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", help="Request timeout in seconds (max 3600).")
    ] = None,
    min_instances: Annotated[
        int | None, typer.Option("--min-instances", help="autoscaling min-scale.")
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option("--max-instances", help="autoscaling max-scale (0: no cap).")
    ] = None,
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
    allow_unauthenticated: Annotated[
        bool | None,
        typer.Option(
            "--allow-unauthenticated/--no-allow-unauthenticated",
            help="Public (default for new services), or private: only invokers with an "
            "identity token.",
        ),
    ] = None,
) -> None:
    """Build (or take an image) and deploy it as a new revision; traffic moves when ready."""
    if sum(x is not None for x in (source, image, git)) != 1:
        raise _fail("give exactly one of --source DIR, --git URL or --image REGISTRY/REPO:TAG")
    pairs = (_env_file(env_file) if env_file else []) + list(env or [])
    params: list[tuple[str, str]] = [("env", e) for e in pairs]
    params += [("remove_env", n) for n in remove_env or []]
    params += [("secret", ref) for ref in set_secrets or []]
    if concurrency is not None:
        params.append(("concurrency", str(concurrency)))
    if timeout is not None:
        params.append(("timeout", str(timeout)))
    if min_instances is not None:
        params.append(("min_instances", str(min_instances)))
    if max_instances is not None:
        params.append(("max_instances", str(max_instances)))
    if no_traffic:
        params.append(("no_traffic", "1"))
    if tag:
        params.append(("tag", tag))
    params += [("build_arg", a) for a in build_arg or []]
    if builder:
        params.append(("builder", builder))
    if dockerfile:
        params.append(("dockerfile", dockerfile))
    if base_image:
        params.append(("base_image", base_image))
    secrets = _secrets(build_secret or [])
    if allow_unauthenticated is not None:
        params.append(("allow_unauthenticated", "1" if allow_unauthenticated else "0"))
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


def _env_file(path: Path) -> list[str]:
    """KEY=value lines; blank lines and # comments skipped; one pair of quotes stripped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror}") from e
    pairs = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise _fail(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.append(f"{key.strip()}={value}")
    return pairs


def _pairs(value: str, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise _fail(f"{flag} takes NAME=VALUE pairs separated by commas, got {item!r}")
        pairs[key] = val
    return pairs


def _percents(value: str, flag: str) -> dict[str, int]:
    out = {}
    for key, val in _pairs(value, flag).items():
        if not val.isdigit():
            raise _fail(f"{flag}: {key}={val} is not a whole percent")
        out[key] = int(val)
    return out


@app.command("traffic")
def traffic_cmd(
    name: str,
    to_revisions: Annotated[
        str, typer.Option("--to-revisions", help="REV=PCT,... e.g. hello-00003=90,hello-00004=10")
    ] = "",
    to_tags: Annotated[str, typer.Option("--to-tags", help="TAG=PCT,...")] = "",
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="The rest (or all) follows the latest revision.")
    ] = False,
    set_tags: Annotated[str, typer.Option("--set-tags", help="TAG=REV,...")] = "",
    remove_tags: Annotated[str, typer.Option("--remove-tags", help="TAG,...")] = "",
) -> None:
    """Split traffic between revisions and manage tag URLs; never creates a revision."""
    body = {
        "to_revisions": _percents(to_revisions, "--to-revisions"),
        "to_tags": _percents(to_tags, "--to-tags"),
        "to_latest": to_latest,
        "set_tags": _pairs(set_tags, "--set-tags"),
        "remove_tags": [t.strip() for t in remove_tags.split(",") if t.strip()],
    }
    try:
        view = _client().request("POST", f"/v1/services/{name}/traffic", json=body)
    except ClientError as e:
        raise _fail(e.message) from e
    _print_traffic(view)


@app.command()
def rollback(name: str) -> None:
    """Send all traffic back to the revision that served before the current one."""
    try:
        view = _client().request("POST", f"/v1/services/{name}/rollback")
    except ClientError as e:
        raise _fail(e.message) from e
    out.print(f"Rolled back {name} to {view['rolled_back_to']}", highlight=False)
    _print_traffic(view)


def _print_traffic(view: dict[str, Any], *, header: bool = True) -> None:
    if header:
        out.print(f"{view['name']}  {view['url']}", highlight=False)
    for t in view["traffic"]:
        tag = f"  #{t['tag']} {t['url']}" if t.get("tag") else ""
        out.print(f"  {t['percent']:>3}%  {t['revision']}{tag}", highlight=False)


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
    if view.get("private"):
        out.print(f"Private; invokers: {', '.join(view['invokers']) or '-'}", highlight=False)
    out.print("Traffic:")
    _print_traffic(view, header=False)
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


def _print_access(view: dict[str, Any]) -> None:
    state = "private" if view["private"] else "public"
    members = ", ".join(view["invokers"]) or "-"
    out.print(f"{view['name']}  {state}  invokers: {members}", highlight=False)


@services.command("add-invoker")
def services_add_invoker(
    name: str,
    member: Annotated[str, typer.Option("--member", help="service:<name> or user:<name>.")],
) -> None:
    """Allow a caller to invoke a private service (applied without a reload)."""
    try:
        view = _client().request("POST", f"/v1/services/{name}/invokers", json={"member": member})
    except ClientError as e:
        raise _fail(e.message) from e
    _print_access(view)


@services.command("remove-invoker")
def services_remove_invoker(
    name: str,
    member: Annotated[str, typer.Option("--member", help="service:<name> or user:<name>.")],
) -> None:
    """Take a caller off a private service's invokers."""
    try:
        view = _client().request("DELETE", f"/v1/services/{name}/invokers/{member}")
    except ClientError as e:
        raise _fail(e.message) from e
    _print_access(view)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """A new signing key; older keys keep verifying until every token they signed expired."""
    try:
        rows = _client().request("POST", "/v1/keys/rotate")
    except ClientError as e:
        raise _fail(e.message) from e
    for k in rows:
        out.print(f"{k['kid']}  {'signing' if k['signing'] else 'verifying'}", highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    try:
        rows = _client().request("GET", "/v1/keys")
    except ClientError as e:
        raise _fail(e.message) from e
    for k in rows:
        out.print(f"{k['kid']}  {'signing' if k['signing'] else 'verifying'}", highlight=False)


@auth_app.command("print-identity-token")
def auth_print_identity_token(
    audience: Annotated[str, typer.Option("--audience", help="URL of the service to call.")],
    user: Annotated[str, typer.Option("--user", help="Member user:<name> it identifies.")] = (
        "admin"
    ),
) -> None:
    """Print an identity token (≤ 1 h) for `user:<name>`, to call a private service."""
    try:
        done = _client().request(
            "POST", "/v1/auth/identity-token", json={"audience": audience, "user": user}
        )
    except ClientError as e:
        raise _fail(e.message) from e
    sys.stdout.write(done["token"] + "\n")


@revisions.command("list")
def revisions_list(service: str) -> None:
    try:
        rows = _client().request("GET", f"/v1/services/{service}/revisions")
    except ClientError as e:
        raise _fail(e.message) from e
    table = Table(
        "REVISION", "STATUS", "TRAFFIC", "TAGS", "INSTANCES", "CREATED", "READY", "DIGEST",
        "REASON", box=None,
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["name"], r["status"], f"{r['traffic']}%", ",".join(r["tags"]) or "-",
            str(r["instances"]["running"]), r["created"][:19], (r["ready_at"] or "-")[:19],
            r["image"].rsplit("@", 1)[-1][:19], r["reason"],
        )  # fmt: skip
    out.print(table)


@secrets_app.command("set")
def secrets_set(
    name: str,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE, or KEY=@file to read a file.")],
) -> None:
    """Store a new version of a secret (all its keys)."""
    data: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"expected KEY=VALUE or KEY=@file, got {key!r}")  # never echo values
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except OSError as e:
                raise _fail(f"cannot read {value[1:]}: {e.strerror}") from e
        data[key] = value
    try:
        done = _client().request("PUT", f"/v1/secrets/{name}", json={"data": data})
    except ClientError as e:
        raise _fail(e.message) from e
    out.print(f"{name} v{done['version']}  keys: {', '.join(done['keys'])}", highlight=False)


@secrets_app.command("list")
def secrets_list() -> None:
    try:
        rows = _client().request("GET", "/v1/secrets")
    except ClientError as e:
        raise _fail(e.message) from e
    table = Table("SECRET", "VERSION", "KEYS", box=None)
    for r in rows:
        table.add_row(r["name"], str(r["version"]), ", ".join(r["keys"]))
    out.print(table)


@secrets_app.command("delete")
def secrets_delete(name: str) -> None:
    try:
        _client().request("DELETE", f"/v1/secrets/{name}")
    except ClientError as e:
        raise _fail(e.message) from e
    out.print(f"Deleted secret {name}")


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
    from pipeline.build import baseimages

    argv = (["--force"] if force else []) + (["--all"] if all_images else []) + list(refs or [])
    raise typer.Exit(code=baseimages.main(argv))


@app.command()
def server() -> None:
    """Run the control plane (API + reconciler) in the foreground."""
    from pipeline.api import server as server_mod

    try:
        server_mod.run()
    except SlipwayError as e:
        raise _fail(e.message) from e


@app.command(hidden=True)
def dns(
    bind: Annotated[str, typer.Option("--bind")],
    domain: Annotated[str, typer.Option("--domain")],
) -> None:
    """The internal resolver (started by the control plane; see pipeline.dataplane.resolver)."""
    from pipeline.dataplane import resolver as internaldns

    internaldns.serve(bind=bind, port=53, domain=domain, address=bind)


@app.command(hidden=True)
def metadata(
    bind: Annotated[str, typer.Option("--bind")],
    port: Annotated[int, typer.Option("--port")],
    keys_dir: Annotated[Path, typer.Option("--keys-dir")],
    platform: Annotated[str, typer.Option("--platform")],
    issuer: Annotated[str, typer.Option("--issuer")],
    domain: Annotated[str, typer.Option("--domain")],
    engine: Annotated[str, typer.Option("--engine", help="docker or knative")] = "docker",
    network: Annotated[str, typer.Option("--network", help="docker: callers' network")] = "",
    namespace: Annotated[str, typer.Option("--namespace", help="knative: pods' namespace")] = "",
    kubeconfig: Annotated[str, typer.Option("--kubeconfig", help="knative: '' = in-cluster")] = "",
) -> None:
    """The metadata server (started by the control plane next to Docker, a container of the
    control-plane pod on Kubernetes; see pipeline.app.metadataserver)."""
    from pipeline.app import metadataserver as metadata_mod

    if engine not in ("docker", "knative"):
        raise _fail(f"--engine {engine!r}: use docker or knative")
    missing = "--network" if engine == "docker" and not network else ""
    missing = missing or ("--namespace" if engine == "knative" and not namespace else "")
    if missing:
        raise _fail(f"--engine {engine} needs {missing}")
    options = metadata_mod.Options(
        bind=bind, port=port, keys_dir=keys_dir, platform=platform, issuer=issuer, domain=domain,
        engine=engine, network=network, namespace=namespace, kubeconfig=kubeconfig,
    )  # fmt: skip
    try:
        metadata_mod.main(options)
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
