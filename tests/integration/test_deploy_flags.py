"""`slipway deploy --port --command --args --cpu --memory` and `slipway traffic --update-tags
--clear-tags --to-revisions LATEST=N`, through the real CLI, control plane, dockerd and HAProxy:
the flags reach the running container (docker inspect), and the split and tag URLs serve.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from pipeline.core import names
from tests.integration.conftest import BUSYBOX, Slipway, push_image, write_app

pytestmark = pytest.mark.integration

HTTPD_FLAGS = ["-f", "-p", "9000", "-h", "/flags"]


def two_sites(folder: Path) -> Path:
    """An image whose own CMD serves /www on $PORT; /flags is there for --command to serve."""
    folder.mkdir(parents=True)
    for site, body in (("www", "from the image\n"), ("flags", "from the flags\n")):
        (folder / site).mkdir()
        (folder / site / "index.html").write_text(body)
    (folder / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY www /www\nCOPY flags /flags\nUSER app\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'
    )
    return folder


def inspect(slipway: Slipway, client: docker.DockerClient, revision: str) -> dict[str, Any]:
    """`docker inspect` of the revision's running instance."""
    running = [
        c for c in slipway.containers(client)
        if c.labels.get(names.LABEL_REVISION) == revision and c.status == "running"
    ]  # fmt: skip
    assert running, f"no running instance of {revision}"
    attrs: dict[str, Any] = running[0].attrs
    return attrs


def test_container_flags_reach_the_instance_and_stay_until_changed(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    ref = push_image(
        docker_client, two_sites(tmp_path / "app"), f"{slipway.env['SLIPWAY_REGISTRY']}/box/app:1"
    )
    out = slipway.cli(
        "deploy", "box", "--image", ref, "--port", "9000", "--command", "httpd",
        f"--args={','.join(HTTPD_FLAGS)}", "--memory", "128Mi", "--cpu", "0.5",
    )  # fmt: skip
    assert "box-00001 ready" in out.stdout
    # It answers on 9000: the readiness probe and HAProxy both went to --port.
    assert slipway.get("box").text == "from the flags\n"
    attrs = inspect(slipway, docker_client, "box-00001")
    assert attrs["Config"]["Entrypoint"] == ["httpd"]
    assert attrs["Config"]["Cmd"] == HTTPD_FLAGS
    assert "PORT=9000" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["Memory"] == 128 * 2**20
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000

    # Another flag alone: a new revision that keeps port, command, args and limits.
    out = slipway.cli("deploy", "box", "--image", ref, "--env", "X=1")
    assert "box-00002 ready" in out.stdout
    kept = inspect(slipway, docker_client, "box-00002")
    assert "X=1" in kept["Config"]["Env"] and "PORT=9000" in kept["Config"]["Env"]
    assert (kept["Config"]["Entrypoint"], kept["Config"]["Cmd"]) == (["httpd"], HTTPD_FLAGS)
    limits = (kept["HostConfig"]["Memory"], kept["HostConfig"]["NanoCpus"])
    assert limits == (128 * 2**20, 5 * 10**8)

    # Empty --command and --args clear them: the image's own CMD runs, on the new port.
    out = slipway.cli(
        "deploy", "box", "--image", ref, "--command=", "--args=", "--port", "8081", "--cpu", "1"
    )
    assert "box-00003 ready" in out.stdout
    assert slipway.get("box").text == "from the image\n"
    own = inspect(slipway, docker_client, "box-00003")
    assert own["Config"]["Cmd"] == ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]
    assert "PORT=8081" in own["Config"]["Env"]
    assert (own["HostConfig"]["Memory"], own["HostConfig"]["NanoCpus"]) == (128 * 2**20, 10**9)

    # A bad value is refused before anything is sent, naming the flag and the fix.
    bad = slipway.cli("deploy", "box", "--image", ref, "--memory", "128MB", check=False)
    assert bad.returncode == 1
    assert "--memory: '128MB' is not a positive Kubernetes quantity" in bad.stderr


def bodies(slipway: Slipway, host: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            seen[slipway.get(host, client=client).text] += 1
    return seen


def test_update_tags_clear_tags_and_a_latest_share(
    slipway: Slipway, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    repo = f"{slipway.env['SLIPWAY_REGISTRY']}/tags/app"
    refs = [
        push_image(docker_client, write_app(tmp_path / f"v{n}", body=f"v{n}\n"), f"{repo}:{n}")
        for n in (1, 2, 3)
    ]
    slipway.cli("deploy", "tags", "--image", refs[0])
    slipway.cli("deploy", "tags", "--image", refs[1])

    # LATEST=50: half follows the latest ready revision, whichever it is.
    out = slipway.cli("traffic", "tags", "--to-revisions", "LATEST=50,tags-00001=50")
    assert "50%  tags-00001" in out.stdout and "50%  tags-00002" in out.stdout
    seen = bodies(slipway, "tags", 200)
    assert set(seen) == {"v1\n", "v2\n"} and 60 <= seen["v1\n"] <= 140, seen

    # --update-tags: a tag on a revision, and one that follows the latest.
    slipway.cli("traffic", "tags", "--update-tags", "old=tags-00001,edge=LATEST")
    assert slipway.get("old--tags.localhost").text == "v1\n"
    assert slipway.get("edge--tags.localhost").text == "v2\n"
    view = slipway.api_get("/v1/services/tags").json()
    assert {"latestRevision": True, "percent": 50} in view["spec"]["spec"]["traffic"]
    assert {"tag": "edge", "latestRevision": True, "percent": 0} in view["spec"]["spec"]["traffic"]

    # A new revision under the same traffic block (Knative YAML, as is): LATEST and the edge tag
    # move to it; the pinned half and the old tag stay.
    document = view["spec"]
    document["spec"]["template"]["spec"]["containers"][0]["image"] = refs[2]
    (tmp_path / "tags.yaml").write_text(yaml.safe_dump(document))
    slipway.cli("services", "replace", str(tmp_path / "tags.yaml"))
    seen = bodies(slipway, "tags", 200)
    assert set(seen) == {"v1\n", "v3\n"}, seen
    assert slipway.get("edge--tags.localhost").text == "v3\n"
    assert slipway.get("old--tags.localhost").text == "v1\n"

    # --clear-tags: every tag URL goes; the split stays.
    out = slipway.cli("traffic", "tags", "--clear-tags")
    view = slipway.api_get("/v1/services/tags").json()
    assert [t for t in view["traffic"] if t.get("tag")] == []
    for host in ("old--tags.localhost", "edge--tags.localhost"):
        assert slipway.get(host).status_code == 404, host
    assert set(bodies(slipway, "tags", 40)) == {"v1\n", "v3\n"}

    # Bad input changes nothing.
    for args, message in [
        (["--to-revisions", "LATEST=60"], "percents sum to 60, want 100"),
        (["--to-revisions", "LATEST=60", "--to-latest"], "--to-latest and LATEST="),
        (["--clear-tags", "--remove-tags", "old"], "--clear-tags already removes every tag"),
        (["--update-tags", "x=tags-00009"], "--update-tags: no revision 'tags-00009'"),
    ]:
        bad = slipway.cli("traffic", "tags", *args, check=False)
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)
