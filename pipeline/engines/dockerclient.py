"""The one place a Docker Engine client is made; connection errors become `Unavailable`."""

from __future__ import annotations

import docker
import docker.errors

from pipeline.core.errors import Unavailable

ENGINE_DOWN = (
    "Docker Engine is not reachable ({detail}): start it with ./scripts/up "
    "(or `dockerd &`), or point DOCKER_HOST at a running engine"
)


def connect(*, timeout_s: int = 120) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as e:
        raise Unavailable(ENGINE_DOWN.format(detail=e.__class__.__name__)) from e
    return client
