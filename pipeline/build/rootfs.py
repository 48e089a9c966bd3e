"""Root filesystems for the base images: the busybox recipe and the debootstrap recipe.

The plans (rootfs layout, debootstrap and apt argv, APT sources, the host's mirror) are pure;
`busybox_rootfs` and `debootstrap_rootfs` apply them into a directory that `build.baseimages`
packs and imports. Every tree carries the host's CA bundle, because the package archives are
reached through a TLS proxy with its own CA: whatever a later build step fetches must trust it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from structlog.typing import FilteringBoundLogger

from pipeline.build.basecatalog import BUSYBOX, BUSYBOX_VERSION, CA_BUNDLE, SUITE, BaseImage
from pipeline.core.errors import Conflict, Unavailable

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Where update-ca-certificates looks for local CAs: a later run inside an image keeps the host's.
LOCAL_CA = "/usr/local/share/ca-certificates/host-ca.crt"
APP_UID = 10001


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


# ---------------------------------------------------------------------------------------------
# Apply


def busybox_rootfs(*, work: Path, rootfs: Path, log: FilteringBoundLogger) -> None:
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
            "change BUSYBOX in pipeline/build/basecatalog.py to match"
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


def debootstrap_rootfs(
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
