"""Pure helpers at the edges: source archives, names, image references."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import pytest

from pipeline.build import registry, sources
from pipeline.build.registry import unused_images
from pipeline.core import names
from pipeline.core.errors import InvalidInput, InvalidName, InvalidSource
from pipeline.core.records import Revision
from tests.unit import factories


def test_pack_honours_ignore_files_and_skips_git(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "app.py").write_text("print()\n")
    (tmp_path / ".gitignore").write_text("*.log\nbuild/\n")
    (tmp_path / ".dockerignore").write_text("secrets.env\n")
    (tmp_path / "secrets.env").write_text("TOKEN=1")
    (tmp_path / "debug.log").write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.bin").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")

    data = sources.pack(tmp_path)

    info = sources.inspect(data)
    assert info.files == (".dockerignore", ".gitignore", "Dockerfile", "app.py")
    assert sources.pack(tmp_path) == data, "reproducible: same folder, same bytes"


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(body)
            tar.addfile(ti, io.BytesIO(body))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"not a tar", "not a readable tar archive", id="garbage"),
        pytest.param(_tar({"../etc/passwd": b"x"}), "escapes the source folder", id="dotdot"),
        pytest.param(_tar({"/abs": b"x"}), "escapes the source folder", id="absolute"),
    ],
)
def test_inspect_refuses_bad_archives(data: bytes, message: str) -> None:
    with pytest.raises(InvalidSource, match=message):
        sources.inspect(data)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("hello", True, id="plain"),
        pytest.param("a" * 47, True, id="longest"),
        pytest.param("a" * 48, False, id="tag-url-too-long"),
        pytest.param("Hello", False, id="uppercase"),
        pytest.param("1abc", False, id="leading-digit"),
        pytest.param("abc-", False, id="trailing-dash"),
        pytest.param("a_b", False, id="underscore"),
        pytest.param("sec-nl\n", False, id="trailing-newline"),
        pytest.param("t--web", False, id="tag-separator"),
    ],
)
def test_service_names(name: str, ok: bool) -> None:
    if ok:
        assert names.validate_service_name(name) == name
        assert len(names.tag_host("commit-abcdef1", name, "x").split(".")[0]) <= 63
    else:
        with pytest.raises(InvalidName):
            names.validate_service_name(name)


def test_derived_names() -> None:
    assert names.revision_name("hello", 3) == "hello-00003"
    assert names.service_url("hello", "localhost", 8080) == "http://hello.localhost:8080"
    assert names.tag_url("commit-abc1234", "hello", "example.com", 80) == (
        "http://commit-abc1234--hello.example.com"
    )


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param("127.0.0.1:5000/some/image:tag", "127.0.0.1:5000/some/image:tag", id="tag"),
        pytest.param("localhost:5000/app", "localhost:5000/app:latest", id="default-latest"),
        pytest.param("reg.example.com/a/b@sha256:" + "a" * 64,
                     "reg.example.com/a/b@sha256:" + "a" * 64, id="digest"),
    ],
)  # fmt: skip
def test_image_references(ref: str, expected: str) -> None:
    assert str(registry.parse(ref)) == expected


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("nginx", id="docker-hub-short"),
        pytest.param("library/nginx:1", id="docker-hub-path"),
        pytest.param("127.0.0.1:5000/UPPER:1", id="uppercase-repo"),
        pytest.param("127.0.0.1:5000/x@sha256:short", id="bad-digest"),
    ],
)
def test_bad_image_references(ref: str) -> None:
    with pytest.raises(InvalidInput):
        registry.parse(ref)


@pytest.mark.parametrize(
    ("branch", "service", "tag"),
    [
        pytest.param("feature/login", "hello", "branch-feature-login", id="slash"),
        pytest.param("Fix_Bug#12", "hello", "branch-fix-bug-12", id="odd-characters"),
        pytest.param("x" * 80, "a" * 40, "branch-" + "x" * 14, id="cut-to-fit"),
    ],
)
def test_branch_tags_fit_the_host_label(branch: str, service: str, tag: str) -> None:
    got = names.branch_tag(branch, service=service)
    assert got == tag
    assert names.validate_tag(got, service=service) == got


def test_a_double_dash_service_name_says_whose_url_it_would_take() -> None:
    with pytest.raises(InvalidName, match=r"tag 't' of service 'web'.*e\.g\. 't-web'"):
        names.validate_service_name("t--web")
    assert not names.is_service_name("t--web")


@pytest.mark.parametrize("tag", ["t\n", "canary\n", "\ncanary", "Canary"])
def test_tags_refuse_what_a_host_cannot_hold(tag: str) -> None:
    with pytest.raises(InvalidName):
        names.validate_tag(tag, service="web")


@pytest.mark.parametrize(
    ("service", "tags", "others", "clash"),
    [
        pytest.param("web", ["t"], {"t--web": []}, "tag 't' of service 'web'.*service 't--web'",
                     id="tag-host-is-a-service-host"),
        pytest.param("t--web", [], {"web": ["t"]}, "service 't--web'.*tag 't' of service 'web'",
                     id="service-host-is-a-tag-host"),
        pytest.param("b", ["a--x"], {"a--x--b": []}, "tag 'a--x' of service 'b'",
                     id="tag-with-separator"),
        pytest.param("web", ["t"], {"web": ["t"], "api": ["t"]}, None, id="own-hosts-are-fine"),
    ],
)  # fmt: skip
def test_shared_hosts_are_refused_naming_both(
    service: str, tags: list[str], others: dict[str, list[str]], clash: str | None
) -> None:
    if clash is None:
        names.refuse_shared_hosts(service, tags, others=others, domain="localhost")
        return
    with pytest.raises(InvalidName, match=clash) as refused:
        names.refuse_shared_hosts(service, tags, others=others, domain="localhost")
    assert "pick another tag or service name" in refused.value.message


def test_tag_too_long_for_its_service_is_refused() -> None:
    with pytest.raises(InvalidName, match="at most 21"):
        names.validate_tag("a" * 22, service="s" * 40)
    assert names.commit_tag("3f2a9c1deadbeef") == "commit-3f2a9c1"


def _rev(name: str, image: str, *, built: bool) -> Revision:
    return dataclasses.replace(
        factories.revision("web", int(name[-1])), image=image, build_id="b1" if built else None
    )


def test_unused_images_are_only_slipways_own_builds_no_longer_run() -> None:
    d = "sha256:" + "1" * 64
    e = "sha256:" + "2" * 64
    f = "sha256:" + "3" * 64
    collected = [
        _rev("web-00001", f"127.0.0.1:5000/web@{d}", built=True),  # built, unused: goes
        _rev("web-00002", f"127.0.0.1:5000/web@{e}", built=True),  # built, still run: stays
        _rev("web-00003", f"127.0.0.1:5000/users/own@{f}", built=False),  # the user's: stays
        _rev("web-00004", f"registry.example.com/web@{f}", built=True),  # another registry
    ]
    remaining = [_rev("web-00005", f"127.0.0.1:5000/web@{e}", built=True)]
    assert unused_images(collected, remaining, registry="127.0.0.1:5000") == [
        f"127.0.0.1:5000/web@{d}"
    ]
    assert unused_images(collected, remaining, registry="10.0.0.1:5000") == []
