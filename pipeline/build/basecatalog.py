"""Slipway's base images, the catalogue: what each one is, its reference and its image config.

No container registry is reachable from a Slipway machine, so every base image is a root
filesystem assembled here from Debian packages (`build.rootfs`) and loaded with `docker import`
(`build.baseimages`). Build templates and users' Dockerfiles start `FROM` these references. This
module is pure: the references, what goes into each image, and its `docker import` changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from pipeline.core.errors import InvalidInput
from pipeline.core.names import LABEL_PREFIX

SUITE = "bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
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
