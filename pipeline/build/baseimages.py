"""Slipway's own base images, made from the Debian package archive and named for what they are.

No container registry is reachable from a Slipway machine, so nothing here pulls: every base
image is a root filesystem assembled from Debian packages on this machine and loaded with
`docker import`. Build templates and users' Dockerfiles start `FROM` these references.

Every image carries the host's CA bundle, because the package archives are reached through a
TLS proxy with its own CA: whatever a later build step fetches must trust it.

The plans (catalog, `docker import` changes, rootfs layout, debootstrap argv, mirror) are pure;
`ensure_base_images` applies them and builds only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import docker
import docker.errors
import requests
from structlog.typing import FilteringBoundLogger

from pipeline.core import logs
from pipeline.core.errors import Conflict, InvalidInput, SlipwayError, Unavailable
from pipeline.core.names import LABEL_PREFIX
from pipeline.engines.dockerclient import ENGINE_DOWN, connect

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where update-ca-certificates looks for local CAs: a later run inside an image keeps the host's.
LOCAL_CA = "/usr/local/share/ca-certificates/host-ca.crt"
APP_UID = 10001
LABEL_BASE = f"{LABEL_PREFIX}.base"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BUSYBOX_VERSION = "1.35"
BUSYBOX = f"slipway/busybox:{BUSYBOX_VERSION}-{SUITE}"
"""Debian's `busybox-static` (.deb fetched with `apt-get download`, unpacked with `dpkg-deb -x`):
/bin/busybox with a symlink per applet, root and `app` (uid 10001) users, /tmp and the host CA
bundle. A few seconds to build; the test suite's services run on it."""

DEBIAN = "slipway/debian:bookworm"
"""`debootstrap --variant=minbase --include=ca-certificates bookworm` from the host's Debian
mirror, upgraded from bookworm-updates and bookworm-security (which stay in its APT sources, so
an `apt-get install` in a Dockerfile gets fixed packages too), with the host CA bundle installed
and apt lists removed."""

PYTHON = "slipway/python:3.11-bookworm"
"""The debian image's recipe plus python3 (3.11 in bookworm), pip and venv; pip and requests are
pointed at the host CA bundle. Debian marks the system Python externally managed (PEP 668), so
`pip install` wants a venv (or `--break-system-packages`)."""

NODE = "slipway/node:bookworm"
"""The debian image's recipe plus Debian's nodejs (18 in bookworm) and npm; node and npm are
pointed at the host CA bundle. npm pulls a few hundred Debian packages, so this one is slow to
make (minutes) and is left out of the default `ensure` set: `scripts/up` makes it."""


@dataclass(frozen=True, kw_only=True)
class BaseImage:
    reference: str
    description: str
    how: Literal["busybox", "debootstrap"]
    packages: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cmd: tuple[str, ...] = ()
    # Installed with apt-get inside the new root after debootstrap: debootstrap's own resolver
    # cannot configure some large dependency trees (npm's) in --include.
    apt_packages: tuple[str, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_BASE: self.description}


_CA_ENV = {"SSL_CERT_FILE": CA_BUNDLE}
CATALOG: dict[str, BaseImage] = {
    image.reference: image
    for image in (
        BaseImage(
            reference=BUSYBOX,
            description=f"busybox-static from Debian {SUITE}",
            how="busybox",
            packages=("busybox-static",),
            env={"PATH": "/bin", **_CA_ENV},
            cmd=("sh",),
        ),
        BaseImage(
            reference=DEBIAN,
            description=f"debootstrap minbase of Debian {SUITE}",
            how="debootstrap",
            packages=("ca-certificates",),
            env={"PATH": STANDARD_PATH, **_CA_ENV},
            cmd=("bash",),
        ),
        BaseImage(
            reference=PYTHON,
            description=f"debootstrap minbase of Debian {SUITE} with python3, pip and venv",
            how="debootstrap",
            packages=("ca-certificates", "python3", "python3-pip", "python3-venv"),
            env={
                "PATH": STANDARD_PATH,
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",
                **_CA_ENV,
                "REQUESTS_CA_BUNDLE": CA_BUNDLE,
                "PIP_CERT": CA_BUNDLE,
            },
            cmd=("python3",),
        ),
        BaseImage(
            reference=NODE,
            description=f"debootstrap minbase of Debian {SUITE} with nodejs and npm",
            how="debootstrap",
            packages=("ca-certificates", "nodejs"),
            apt_packages=("npm",),
            env={
                "PATH": STANDARD_PATH,
                "LANG": "C.UTF-8",
                **_CA_ENV,
                "NODE_EXTRA_CA_CERTS": CA_BUNDLE,
                "NPM_CONFIG_CAFILE": CA_BUNDLE,
                "NPM_CONFIG_UPDATE_NOTIFIER": "false",
                "NPM_CONFIG_FUND": "false",
                "NPM_CONFIG_AUDIT": "false",
            },
            cmd=("node",),
        ),
    )
}
# Made by `ensure` without arguments; the slow ones (node) only when asked for by name.
DEFAULT_SET = (BUSYBOX, DEBIAN, PYTHON)


# ---------------------------------------------------------------------------------------------
# Pure plans


def lookup(reference: str) -> BaseImage:
    try:
        return CATALOG[reference]
    except KeyError:
        known = ", ".join(CATALOG)
        raise InvalidInput(f"unknown base image {reference!r}: choose one of {known}") from None


def import_changes(image: BaseImage) -> list[str]:
    """Dockerfile instructions for `docker import --change`, values JSON-quoted."""
    changes = [f"ENV {key}={json.dumps(value)}" for key, value in image.env.items()]
    changes += [f"LABEL {key}={json.dumps(value)}" for key, value in image.labels.items()]
    if image.cmd:
        changes.append(f"CMD {json.dumps(list(image.cmd))}")
    return changes


@dataclass(frozen=True)
class Node:
    """One entry of a root filesystem: `text` is a file's content, a symlink's target, or the
    host path a `copy` comes from."""

    path: str
    kind: Literal["dir", "file", "symlink", "copy"]
    mode: int = 0o755
    text: str = ""
    uid: int = 0
    gid: int = 0


def busybox_layout(applets: Sequence[str], *, busybox: Path, ca_bundle: Path) -> list[Node]:
    """The busybox image's root filesystem, parents before children."""
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"app:x:{APP_UID}:{APP_UID}:app:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    group = f"root:x:0:\napp:x:{APP_UID}:\nnogroup:x:65534:\n"
    return [
        Node("bin", "dir"),
        Node("bin/busybox", "copy", text=str(busybox)),
        *(Node(f"bin/{name}", "symlink", text="busybox") for name in applets if name != "busybox"),
        Node("dev", "dir"),
        Node("etc", "dir"),
        Node("etc/passwd", "file", 0o644, passwd),
        Node("etc/group", "file", 0o644, group),
        Node("etc/nsswitch.conf", "file", 0o644, "passwd: files\ngroup: files\nhosts: files dns\n"),
        Node("etc/ssl", "dir"),
        Node("etc/ssl/certs", "dir"),
        Node(CA_BUNDLE.lstrip("/"), "copy", 0o644, str(ca_bundle)),
        Node("home", "dir"),
        Node("home/app", "dir", uid=APP_UID, gid=APP_UID),
        Node("proc", "dir"),
        Node("root", "dir", 0o700),
        Node("sys", "dir"),
        Node("tmp", "dir", 0o1777),
    ]


def upstream_version(debian_version: str) -> str:
    """`1:1.35.0-4+deb12u1` -> `1.35.0`: without the epoch and the Debian revision."""
    without_epoch = debian_version.strip().split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0]


def debootstrap_argv(
    image: BaseImage, *, target: Path, mirror: str, cache_dir: Path | None = None
) -> list[str]:
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(image.packages)}"]
    if cache_dir is not None:
        argv.append(f"--cache-dir={cache_dir}")
    return [*argv, SUITE, str(target), mirror]


def image_sources(*, mirror: str, security_mirror: str, suite: str = SUITE) -> str:
    """The image's APT sources (deb822, like Debian's own images): the release with its
    point-release updates, and security updates. debootstrap writes only the release, so an
    image built from it alone would never see a security fix."""
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        f"Signed-By: {DEBIAN_KEYRING}\n\n"
        f"Types: deb\nURIs: {security_mirror}\nSuites: {suite}-security\nComponents: main\n"
        f"Signed-By: {DEBIAN_KEYRING}\n"
    )


def chroot_apt_argv(image: BaseImage, *, rootfs: Path) -> list[str]:
    """Inside the new root: upgrade to the updates and security suites, then install what
    debootstrap could not (`apt_packages`)."""
    steps = ["apt-get update -q", "apt-get upgrade -y -q"]
    if image.apt_packages:
        steps.append(
            "apt-get install -y -q --no-install-recommends " + " ".join(image.apt_packages)
        )
    script = "export DEBIAN_FRONTEND=noninteractive && " + " && ".join([*steps, "apt-get clean"])
    return ["chroot", str(rootfs), "/bin/sh", "-c", script]


# Removed from a debootstrap tree: package indexes and downloaded .debs (rebuilt by `apt-get
# update`), and the host's hostname and resolver that debootstrap copies (Docker supplies both).
DEBOOTSTRAP_PRUNE = (
    "var/lib/apt/lists/*",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/lock",  # left by the apt-get run in the new root
    "var/cache/apt/*.bin",
    "etc/hostname",
    "etc/resolv.conf",
)

_ONE_LINE = re.compile(r"^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def host_mirror(sources_text: str, *, suite: str = SUITE, default: str = DEFAULT_MIRROR) -> str:
    """The URI of the first enabled `deb` source for `suite` in APT sources text, one-line
    (`sources.list`) or deb822 (`*.sources`) format, else `default` (Debian's)."""
    for paragraph in re.split(r"\n\s*\n", sources_text):
        fields: dict[str, str] = {}
        key = ""
        for raw in paragraph.splitlines():
            line = raw.rstrip()
            if not line or line.lstrip().startswith("#"):
                continue
            one_line = _ONE_LINE.match(line)
            if one_line:
                kind, uri, line_suite = one_line.groups()
                if kind == "deb" and line_suite == suite and _is_http(uri):
                    return uri.rstrip("/")
            elif line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if (
            "deb" in fields.get("types", "").split()
            and suite in fields.get("suites", "").split()
            and fields.get("enabled", "yes").lower() != "no"
        ):
            for uri in fields.get("uris", "").split():
                if _is_http(uri):
                    return uri.rstrip("/")
    return default


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def mounts_under(mountinfo_text: str, root: Path) -> list[str]:
    """Mount points at or below `root` in /proc/self/mountinfo text, deepest first."""
    prefix = str(root).rstrip("/")
    points = []
    for line in mountinfo_text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def tar_member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """tarfile filter for a root filesystem: numeric owners only, and nothing inside /dev,
    /proc or /sys (the runtime mounts its own)."""
    top, _, rest = info.name.partition("/")
    if top in ("dev", "proc", "sys") and rest:
        return None
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------------------------------------
# Apply


def ensure_base_images(
    client: docker.DockerClient,
    *,
    references: Iterable[str] | None = None,
    force: bool = False,
    log: FilteringBoundLogger | None = None,
) -> list[str]:
    """Build the base images that are missing (all of them with `force`); return those built."""
    log = log or logs.get(component="baseimages")
    images = [lookup(ref) for ref in (DEFAULT_SET if references is None else references)]
    with _engine_errors():
        client.ping()
        existing = [(image, _image_id(client, image.reference)) for image in images]
    wanted = [(image, old) for image, old in existing if force or old is None]
    if not wanted:
        return []
    work = Path(tempfile.mkdtemp(prefix="slipway-baseimages-"))
    try:
        cache = work / "debs"
        cache.mkdir()
        for image, old in wanted:
            _build(
                client,
                image,
                work=work / image.reference.replace("/", "_"),
                cache=cache,
                log=log.bind(image=image.reference),
            )
            if old is not None:
                _remove_if_unused(client, old)
    finally:
        _remove_tree(work)
    return [image.reference for image, _ in wanted]


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        image_id: str = client.images.get(reference).id
    except docker.errors.ImageNotFound:
        return None
    return image_id


def _remove_if_unused(client: docker.DockerClient, image_id: str) -> None:
    """Drop the image a rebuild replaced, unless containers or child images still use it."""
    with suppress(docker.errors.APIError):
        client.images.remove(image_id)


def _build(
    client: docker.DockerClient,
    image: BaseImage,
    *,
    work: Path,
    cache: Path,
    log: FilteringBoundLogger,
) -> None:
    rootfs = work / "rootfs"
    work.mkdir()
    log.info("base_image.build", how=image.how)
    if image.how == "busybox":
        _busybox_rootfs(work=work, rootfs=rootfs, log=log)
    else:
        _debootstrap_rootfs(image, rootfs=rootfs, cache=cache, log=log)
    tar_path = work / "rootfs.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=tar_member)
    repository, _, tag = image.reference.rpartition(":")
    with _engine_errors():
        output = client.api.import_image(
            src=str(tar_path), repository=repository, tag=tag, changes=import_changes(image)
        )
    for line in str(output).splitlines():
        message = json.loads(line) if line.strip().startswith("{") else {}
        if "error" in message:
            raise Unavailable(
                f"Docker Engine refused to import {image.reference}: {message['error']}"
            )
    log.info("base_image.built", size=tar_path.stat().st_size)


def _busybox_rootfs(*, work: Path, rootfs: Path, log: FilteringBoundLogger) -> None:
    download = work / "deb"
    download.mkdir()
    # -o APT::Sandbox::User=root: the _apt user cannot write into a private temp dir.
    _run(
        ["apt-get", "download", "-o", "APT::Sandbox::User=root", "busybox-static"],
        cwd=download,
        what="downloading busybox-static (try `apt-get update`)",
    )
    (deb,) = download.glob("busybox-static_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(work / "pkg")], what="unpacking busybox-static")
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], what="reading the .deb version")
    if not upstream_version(version).startswith(BUSYBOX_VERSION + "."):
        raise Conflict(
            f"Debian now ships busybox {version.strip()}, but the image is named {BUSYBOX}: "
            "change BUSYBOX in pipeline/build/baseimages.py to match"
        )
    busybox = work / "pkg" / "bin" / "busybox"
    applets = _run([str(busybox), "--list"], what="listing busybox applets").split()
    log.info("base_image.busybox", deb=deb.name, applets=len(applets))
    _write_nodes(rootfs, busybox_layout(applets, busybox=busybox, ca_bundle=HOST_CA_BUNDLE))


def _write_nodes(root: Path, nodes: Iterable[Node]) -> None:
    root.mkdir()
    for node in nodes:
        path = root / node.path
        if node.kind == "dir":
            path.mkdir()
        elif node.kind == "file":
            path.write_text(node.text)
        elif node.kind == "copy":
            shutil.copyfile(node.text, path)
        else:
            path.symlink_to(node.text)
            continue
        os.chown(path, node.uid, node.gid)
        path.chmod(node.mode)


def _debootstrap_rootfs(
    image: BaseImage, *, rootfs: Path, cache: Path, log: FilteringBoundLogger
) -> None:
    """One recipe for every debootstrap image; only the package list differs."""
    if os.geteuid() != 0:
        raise Unavailable(
            f"building {image.reference} runs debootstrap, which needs root: "
            "run `python -m pipeline.build.baseimages` as root"
        )
    host = _host_sources()
    mirror = host_mirror(host)
    security = host_mirror(host, suite=f"{SUITE}-security", default=DEFAULT_SECURITY_MIRROR)
    log.info("base_image.debootstrap", mirror=mirror, packages=list(image.packages))
    argv = debootstrap_argv(image, target=rootfs, mirror=mirror, cache_dir=cache)
    _run(argv, what=f"debootstrap from {mirror}", log_file=rootfs / "debootstrap/debootstrap.log")
    apt = rootfs / "etc/apt"
    (apt / "sources.list").unlink(missing_ok=True)
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list.d/debian.sources").write_text(
        image_sources(mirror=mirror, security_mirror=security)
    )
    log.info("base_image.apt", upgrade=True, packages=list(image.apt_packages))
    _run(
        chroot_apt_argv(image, rootfs=rootfs),
        what=f"upgrading (and installing {' '.join(image.apt_packages) or 'nothing'}) in the new "
        f"root from {mirror} and {security}",
    )
    for relative in (CA_BUNDLE, LOCAL_CA):
        target = rootfs / relative.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, target)
        target.chmod(0o644)
    for pattern in DEBOOTSTRAP_PRUNE:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _host_sources(apt: Path = Path("/etc/apt")) -> str:
    files = [
        apt / "sources.list",
        *sorted((apt / "sources.list.d").glob("*.list")),
        *sorted((apt / "sources.list.d").glob("*.sources")),
    ]
    return "\n\n".join(path.read_text() for path in files if path.is_file())


def _run(
    argv: list[str], *, what: str, cwd: Path | None = None, log_file: Path | None = None
) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise Unavailable(
            f"{what}: {argv[0]} is not installed (apt-get install -y {argv[0]})"
        ) from None
    if done.returncode != 0:
        detail = done.stderr or done.stdout
        if log_file is not None and log_file.is_file():
            detail += log_file.read_text(errors="replace")
        tail = "\n".join(detail.strip().splitlines()[-15:])
        raise Unavailable(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Map docker-py and socket errors met mid-build to Unavailable."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as e:
        raise Unavailable(ENGINE_DOWN.format(detail=e.__class__.__name__)) from e


def _remove_tree(path: Path) -> None:
    """rmtree that first detaches anything a failed debootstrap left mounted inside (/proc,
    /sys), so it can never delete through a mount into the host."""
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if mounts_under(Path("/proc/self/mountinfo").read_text(), path):
        raise Unavailable(
            f"cannot clean up {path}: something is still mounted inside; "
            "unmount it and remove the directory by hand"
        )
    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build.baseimages",
        description="Build Slipway's base images if missing.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument("references", nargs="*", metavar="REF", help=", ".join(CATALOG))
    parser.add_argument("--all", action="store_true", help="also the slow ones (node)")
    args = parser.parse_args(argv)
    logs.configure()
    references = args.references or list(CATALOG if args.all else DEFAULT_SET)
    try:
        built = ensure_base_images(connect(), references=references, force=args.force)
    except SlipwayError as e:
        print(e.message, file=sys.stderr)
        return 1
    for reference in references:
        print(f"{'built' if reference in built else 'present'} {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
