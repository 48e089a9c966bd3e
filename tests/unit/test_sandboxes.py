"""The sandbox pool's pure parts: what a sandbox is made with, how an instance joins one, which
sandboxes are orphans, and the image's contents."""

from __future__ import annotations

import io
import tarfile

from pipeline.core import names
from pipeline.core.revisions import RevisionConfig
from pipeline.engines import sandboxes
from pipeline.engines.docker import container_kwargs


def test_a_sandbox_holds_nothing_but_its_namespace() -> None:
    kwargs = sandboxes.sandbox_kwargs(
        image="slipway/sandbox:x", platform="p", network="slipway", dns="10.0.0.1"
    )
    host = kwargs["host_config"]
    assert host["network_mode"] == "slipway"
    assert host["cap_drop"] == ["ALL"] and host["read_only"] is True
    assert "no-new-privileges:true" in host["security_opt"]
    assert host["dns"] == ["10.0.0.1"], "instances share the sandbox's resolver"
    assert kwargs["user"] == "65534:65534"
    assert kwargs["stop_signal"] == "SIGKILL", "docker stop would wait out its timeout"
    assert kwargs["labels"][names.LABEL_PLATFORM] == "p"
    assert sandboxes.is_sandbox(kwargs["labels"])
    assert kwargs["labels"][sandboxes.LABEL_DNS] == "10.0.0.1"
    assert kwargs["name"].startswith("p-sandbox-")
    assert (
        "dns"
        not in sandboxes.sandbox_kwargs(image="i", platform="p", network="n", dns="")["host_config"]
    )


def test_an_instance_in_a_sandbox_joins_its_namespace_and_names_it() -> None:
    common = dict(platform="p", network="slipway", service="s", revision="s-00001",
                  instance="i-1", config=RevisionConfig(image="img"), dns="10.0.0.1")  # fmt: skip
    joined = container_kwargs(**common, sandbox="abc")  # type: ignore[arg-type]
    assert joined["network_mode"] == "container:abc"
    assert "network" not in joined and "dns" not in joined, "Docker refuses both when joining"
    assert joined["labels"][sandboxes.LABEL_SANDBOX] == "abc"
    alone = container_kwargs(**common)  # type: ignore[arg-type]
    assert alone["network"] == "slipway" and alone["dns"] == ["10.0.0.1"]
    assert sandboxes.LABEL_SANDBOX not in alone["labels"]
    assert not sandboxes.is_sandbox(joined["labels"])


def test_orphans_are_old_unnamed_and_not_held() -> None:
    made = {"named": 0.0, "spare": 0.0, "young": 990.0, "orphan": 0.0}
    found = sandboxes.orphans(made, ["named", ""], {"spare"}, now=1000.0)
    assert found == ["orphan"]


def test_the_image_holds_only_busybox() -> None:
    with tarfile.open(fileobj=io.BytesIO(sandboxes.image_tar(b"\x7fELF..."))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.size) == ("bin/busybox", 0o755, 7)
