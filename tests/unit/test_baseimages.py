"""The pure plans behind Slipway's base images: catalogue (basecatalog), import changes, layouts,
argv and mirror (rootfs), tar and mount filters (baseimages)."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pipeline.build import baseimages
from pipeline.build.basecatalog import (
    BUSYBOX,
    CA_BUNDLE,
    CATALOG,
    DEBIAN,
    DEFAULT_SET,
    NODE,
    PYTHON,
    BaseImage,
    import_changes,
    lookup,
)
from pipeline.build.baseimages import mounts_under, tar_member
from pipeline.build.rootfs import (
    DEBIAN_KEYRING,
    DEFAULT_MIRROR,
    Node,
    busybox_layout,
    chroot_apt_argv,
    debootstrap_argv,
    host_mirror,
    image_sources,
    upstream_version,
)
from pipeline.core.errors import InvalidInput, Unavailable


def test_catalog_is_keyed_by_reference() -> None:
    assert list(CATALOG) == [BUSYBOX, DEBIAN, PYTHON, NODE]
    assert DEFAULT_SET == (BUSYBOX, DEBIAN, PYTHON)  # node is slow to make: asked for by name
    assert all(ref == image.reference for ref, image in CATALOG.items())
    assert BUSYBOX == "slipway/busybox:1.35-bookworm"
    assert DEBIAN == "slipway/debian:bookworm"
    assert PYTHON == "slipway/python:3.11-bookworm"


def test_unknown_reference_is_invalid_input_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"'busybox:latest'.*slipway/busybox:1\.35-bookworm"):
        lookup("busybox:latest")


@pytest.fixture
def unreachable_engine() -> Iterator[docker.DockerClient]:
    # Port 1 on loopback refuses. (A missing unix socket would do too, but docker-py leaks the
    # socket of a failed unix connect, and warnings are errors here.)
    client = docker.DockerClient(base_url="tcp://127.0.0.1:1", version="1.41")
    yield client
    client.close()


def test_unknown_reference_is_refused_before_docker_is_asked(
    unreachable_engine: docker.DockerClient,
) -> None:
    with pytest.raises(InvalidInput):
        baseimages.ensure_base_images(unreachable_engine, references=["nope:1"])


def test_engine_down_is_unavailable_with_the_fix(unreachable_engine: docker.DockerClient) -> None:
    with pytest.raises(Unavailable, match=r"Docker Engine is not reachable.*\./scripts/up"):
        baseimages.ensure_base_images(unreachable_engine, references=[BUSYBOX])


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        pytest.param(
            BUSYBOX,
            [
                'ENV PATH="/bin"',
                'ENV SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"',
                'LABEL dev.slipway.base="busybox-static from Debian bookworm"',
                'CMD ["sh"]',
            ],
            id="busybox",
        ),
        pytest.param(
            DEBIAN,
            [
                'ENV PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
                'ENV SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"',
                'LABEL dev.slipway.base="debootstrap minbase of Debian bookworm"',
                'CMD ["bash"]',
            ],
            id="debian",
        ),
    ],
)
def test_import_changes(reference: str, expected: list[str]) -> None:
    assert import_changes(CATALOG[reference]) == expected


def test_python_image_points_pip_and_requests_at_the_ca_bundle() -> None:
    changes = import_changes(CATALOG[PYTHON])
    for key in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert f'ENV {key}="{CA_BUNDLE}"' in changes
    assert 'ENV PYTHONUNBUFFERED="1"' in changes
    assert changes[-1] == 'CMD ["python3"]'


def test_import_changes_quote_values_with_spaces_and_quotes() -> None:
    image = BaseImage(
        reference="x/y:z",
        description='a "quoted" base',
        how="busybox",
        packages=(),
        env={"A": "say hi"},
        cmd=("sh", "-c", "echo $A"),
    )
    assert import_changes(image) == [
        'ENV A="say hi"',
        'LABEL dev.slipway.base="a \\"quoted\\" base"',
        'CMD ["sh", "-c", "echo $A"]',
    ]


def _layout() -> dict[str, Node]:
    nodes = busybox_layout(
        ["[", "httpd", "nc", "sh", "wget", "busybox"],
        busybox=Path("/x/bin/busybox"),
        ca_bundle=Path("/host/ca.crt"),
    )
    return {node.path: node for node in nodes}


@pytest.mark.parametrize("applet", ["sh", "httpd", "nc", "wget", "["])
def test_busybox_layout_links_every_applet_in_bin(applet: str) -> None:
    assert _layout()[f"bin/{applet}"] == Node(f"bin/{applet}", "symlink", text="busybox")


def test_busybox_layout_files() -> None:
    layout = _layout()
    assert layout["bin/busybox"] == Node("bin/busybox", "copy", 0o755, "/x/bin/busybox")
    assert layout["etc/ssl/certs/ca-certificates.crt"].text == "/host/ca.crt"
    passwd = layout["etc/passwd"].text.splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert "app:x:10001:10001:app:/home/app:/bin/sh" in passwd
    assert "app:x:10001:" in layout["etc/group"].text.splitlines()
    assert layout["tmp"].mode == 0o1777
    assert (layout["home/app"].uid, layout["home/app"].gid) == (10001, 10001)
    assert "hosts: files dns" in layout["etc/nsswitch.conf"].text


def test_busybox_layout_lists_parents_before_children() -> None:
    seen: set[str] = {""}
    for node in busybox_layout(["sh"], busybox=Path("/b"), ca_bundle=Path("/c")):
        assert node.path.rpartition("/")[0] in seen, node.path
        seen.add(node.path)


@pytest.mark.parametrize(
    ("version", "upstream"),
    [
        pytest.param("1:1.35.0-4+deb12u1+b1", "1.35.0", id="epoch-and-revision"),
        pytest.param("1.35.0-4", "1.35.0", id="revision"),
        pytest.param("2.0", "2.0", id="native"),
    ],
)
def test_upstream_version(version: str, upstream: str) -> None:
    assert upstream_version(version) == upstream


def test_debootstrap_argv_for_python() -> None:
    argv = debootstrap_argv(
        CATALOG[PYTHON], target=Path("/w/rootfs"), mirror="http://m/debian", cache_dir=Path("/c")
    )
    assert argv == [
        "debootstrap",
        "--variant=minbase",
        "--include=ca-certificates,python3,python3-pip,python3-venv",
        "--cache-dir=/c",
        "bookworm",
        "/w/rootfs",
        "http://m/debian",
    ]


def test_debootstrap_argv_without_cache() -> None:
    argv = debootstrap_argv(CATALOG[DEBIAN], target=Path("/t"), mirror=DEFAULT_MIRROR)
    assert argv[-3:] == ["bookworm", "/t", DEFAULT_MIRROR]
    assert "--include=ca-certificates" in argv
    assert not any(arg.startswith("--cache-dir") for arg in argv)


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://one.example/debian bookworm main
deb http://one.example/debian-security bookworm-security main
"""


@pytest.mark.parametrize(
    ("text", "mirror"),
    [
        pytest.param(DEB822, "http://mirror.example/debian", id="deb822"),
        pytest.param(ONE_LINE, "https://one.example/debian", id="one-line-with-options"),
        pytest.param(
            "deb http://security.example/debian-security bookworm-security main\n"
            "deb http://plain.example/debian bookworm main contrib\n",
            "http://plain.example/debian",
            id="suite-must-match-exactly",
        ),
        pytest.param(
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            + DEB822,
            "http://mirror.example/debian",
            id="disabled-deb822-skipped",
        ),
        pytest.param(
            "Types: deb-src deb\nURIs:\n http://folded.example/debian\nSuites: bookworm\n",
            "http://folded.example/debian",
            id="deb822-folded-field",
        ),
        pytest.param(
            "deb cdrom:[Debian GNU/Linux]/ bookworm main\n", DEFAULT_MIRROR, id="cdrom-skipped"
        ),
        pytest.param(
            "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n",
            DEFAULT_MIRROR,
            id="other-suites-only",
        ),
        pytest.param("", DEFAULT_MIRROR, id="empty"),
    ],
)
def test_host_mirror(text: str, mirror: str) -> None:
    assert host_mirror(text) == mirror


def test_security_mirror_comes_from_the_host_or_debian() -> None:
    assert host_mirror(DEB822, suite="bookworm-security", default="d") == (
        "http://mirror.example/debian-security"
    )
    release_only = "deb http://m.example/debian bookworm main\n"
    assert host_mirror(release_only, suite="bookworm-security", default="d") == "d"


def test_image_sources_carry_updates_and_security() -> None:
    text = image_sources(mirror="http://m.example/debian", security_mirror="http://s.example/ds")
    paragraphs = [dict(line.split(": ", 1) for line in p.splitlines()) for p in text.split("\n\n")]
    assert [(p["URIs"], p["Suites"]) for p in paragraphs] == [
        ("http://m.example/debian", "bookworm bookworm-updates"),
        ("http://s.example/ds", "bookworm-security"),
    ]
    assert {p["Signed-By"] for p in paragraphs} == {DEBIAN_KEYRING}


@pytest.mark.parametrize("reference", [DEBIAN, PYTHON, NODE])
def test_every_debootstrap_image_is_upgraded_before_anything_is_installed(reference: str) -> None:
    image = lookup(reference)
    argv = chroot_apt_argv(image, rootfs=Path("/tmp/r"))
    assert argv[:4] == ["chroot", "/tmp/r", "/bin/sh", "-c"]
    steps = argv[4].split(" && ")
    assert steps[:3] == [
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update -q",
        "apt-get upgrade -y -q",
    ]
    assert steps[-1] == "apt-get clean"
    installs = [s for s in steps if s.startswith("apt-get install")]
    assert installs == (["apt-get install -y -q --no-install-recommends npm"]
                        if reference == NODE else [])  # fmt: skip


def test_mounts_under_lists_deepest_first_and_decodes_spaces() -> None:
    mountinfo = (
        "22 1 0:21 / / rw - overlay overlay rw\n"
        "80 22 0:5 / /tmp/w/rootfs/proc rw - proc proc rw\n"
        "81 80 0:6 / /tmp/w/rootfs/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw\n"
        "82 22 0:7 / /tmp/w/rootfs\\040two/sys rw - sysfs sysfs rw\n"
        "83 22 0:8 / /tmp/w/rootfs2 rw - tmpfs tmpfs rw\n"
    )
    assert mounts_under(mountinfo, Path("/tmp/w/rootfs")) == [
        "/tmp/w/rootfs/proc/sys/fs/binfmt_misc",
        "/tmp/w/rootfs/proc",
    ]
    assert mounts_under(mountinfo, Path("/tmp/w/rootfs two")) == ["/tmp/w/rootfs two/sys"]


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        pytest.param("dev", True, id="dev-dir-kept"),
        pytest.param("dev/null", False, id="device-dropped"),
        pytest.param("proc/self", False, id="proc-contents-dropped"),
        pytest.param("sys/kernel", False, id="sys-contents-dropped"),
        pytest.param("etc/shadow", True, id="files-kept"),
        pytest.param("device/x", True, id="only-exact-top-dirs"),
    ],
)
def test_tar_member_filter(name: str, kept: bool) -> None:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.uname, info.gname = 0, 42, "root", "shadow"
    result = tar_member(info)
    assert (result is not None) == kept
    if result is not None:
        assert (result.uid, result.gid, result.uname, result.gname) == (0, 42, "", "")
