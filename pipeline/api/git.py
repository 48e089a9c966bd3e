"""Smart HTTP git at /git/<svc>.git: clone, fetch and push, behind the API token.

The wire protocol is dulwich's; this module only moves bytes between HTTP and a dulwich handler
running in a worker thread, so that receive-pack's progress (the build output, as `remote:`
lines) reaches the pusher while the build runs, not when it ends. Credentials: basic auth with
the token as the password (any user name), or a bearer token.
"""

from __future__ import annotations

import base64
import hmac
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any, cast

from dulwich.protocol import (
    CAPABILITY_SIDE_BAND_64K,
    SIDE_BAND_CHANNEL_PROGRESS,
    ReceivableProtocol,
)
from dulwich.repo import Repo
from dulwich.server import (
    BackendRepo,
    DictBackend,
    PackHandler,
    ReceivePackHandler,
    UploadPackHandler,
)
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from pipeline.api.dependencies import PlatformDep
from pipeline.app.platform import Platform
from pipeline.core.errors import InvalidName
from pipeline.core.logs import get as get_log
from pipeline.deploy.gitpush import PushHandler

SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_PUSH_BYTES = 512 * 1024 * 1024
# git gzips only fetch negotiation (have/want lines), never pack data: this is far above any
# real request and far below what an inflation bomb would take.
MAX_INFLATED_BYTES = 128 * 1024 * 1024
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Slipway"'}


def authorised(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            _user, _, value = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
    elif scheme.lower() != "bearer":
        return False
    return bool(value) and hmac.compare_digest(value.encode(), token.encode())


router = APIRouter(include_in_schema=False)


@router.get("/git/{name}/info/refs")
def info_refs(name: str, request: Request, platform: PlatformDep, service: str = "") -> Response:
    if service not in SERVICES:
        raise HTTPException(403, "only smart HTTP is served: use git 1.6.6 or newer")
    svc, repo = _repo_for(platform, request, name, create=service == "git-receive-pack")
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO().read, out.write)
    proto.write_pkt_line(f"# service={service}\n".encode())
    proto.write_pkt_line(None)
    cls = _handler_class(platform, svc, service, repo)
    cls(_backend(repo), ["/"], proto, stateless_rpc=True, advertise_refs=True).handle()
    return Response(
        out.getvalue(),
        media_type=f"application/x-{service}-advertisement",
        headers={"Cache-Control": "no-cache"},
    )


@router.post("/git/{name}/git-upload-pack")
async def upload_pack(name: str, request: Request, platform: PlatformDep) -> StreamingResponse:
    return await _rpc(platform, name, request, "git-upload-pack")


@router.post("/git/{name}/git-receive-pack")
async def receive_pack(name: str, request: Request, platform: PlatformDep) -> StreamingResponse:
    return await _rpc(platform, name, request, "git-receive-pack")


async def _rpc(platform: Platform, name: str, request: Request, kind: str) -> StreamingResponse:
    svc, repo = _repo_for(platform, request, name, create=kind == "git-receive-pack")
    if request.headers.get("content-type") != f"application/x-{kind}-request":
        raise HTTPException(415, f"expected Content-Type application/x-{kind}-request")
    body = await _read_limited(request, MAX_PUSH_BYTES)
    if request.headers.get("content-encoding") == "gzip":
        body = _gunzip_capped(body, MAX_INFLATED_BYTES)
    get_log(component="git").info("git_rpc", service=svc, rpc=kind, bytes=len(body))
    cls = _handler_class(platform, svc, kind, repo)
    return StreamingResponse(
        _run(lambda proto: cls(_backend(repo), ["/"], proto, stateless_rpc=True), body),
        media_type=f"application/x-{kind}-result",
        headers={"Cache-Control": "no-cache"},
    )


def _repo_for(
    platform: Platform, request: Request, name: str, *, create: bool
) -> tuple[str, Repo]:
    if not authorised(request, platform.token):
        raise HTTPException(
            401,
            "git needs the Slipway token as the password: "
            "git remote add slipway http://x:<token>@localhost:8080/git/<svc>.git",
            headers=CHALLENGE,
        )
    service = name.removesuffix(".git")
    try:
        repo = platform.repos.open(service, create=create)
    except InvalidName as e:
        raise HTTPException(400, e.message) from e
    if repo is None:
        raise HTTPException(404, f"no repository for service {service!r}: push to create it")
    return service, repo


def _handler_class(
    platform: Platform, service: str, kind: str, repo: Repo
) -> Callable[..., PackHandler]:
    if kind == "git-upload-pack":
        return UploadPackHandler
    push = PushHandler(service=service, repo=repo, deployer=platform.deployer, store=platform.store)
    return _receive_handler(push)


def _backend(repo: Repo) -> DictBackend:
    repos: dict[str, BackendRepo] = {"/": cast(BackendRepo, repo)}
    return DictBackend(repos)


def _gunzip_capped(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body a bounded chunk at a time, refusing it as soon as it passes `limit`:
    600 KB of gzip can inflate to gigabytes, and `gzip.decompress` would hold them all."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while data and not inflater.eof:
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise HTTPException(413, f"the gzip body inflates past the {limit} byte limit")
            data = inflater.unconsumed_tail
    except zlib.error as e:
        raise HTTPException(400, f"the gzip body does not inflate: {e}") from e
    return bytes(out)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise HTTPException(413, f"push of {declared} bytes is over the {limit} byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"push is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _run(make: Callable[[ReceivableProtocol], PackHandler], body: bytes) -> Iterator[bytes]:
    """Run a dulwich handler in a thread; yield what it writes, as it writes it."""
    out: queue.Queue[bytes | None] = queue.Queue()

    def write(data: bytes) -> int:
        out.put(bytes(data))
        return len(data)

    def work() -> None:
        try:
            make(ReceivableProtocol(BytesIO(body).read, write)).handle()
        except Exception:
            get_log(component="git").exception("git_handler_crashed")
        finally:
            out.put(None)

    threading.Thread(target=work, name="git-rpc", daemon=True).start()
    while (chunk := out.get()) is not None:
        yield chunk


def _receive_handler(push: PushHandler) -> type[ReceivePackHandler]:
    class SlipwayReceivePack(ReceivePackHandler):
        """Runs the build between unpacking the objects and moving the ref."""

        def _on_update(self, ref_name: Any, old_sha: Any, new_sha: Any) -> bytes | None:
            def progress(line: str) -> None:
                if self.has_capability(CAPABILITY_SIDE_BAND_64K):
                    data = (line + "\n").encode()
                    for i in range(0, len(data), 65000):
                        self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, data[i : i + 65000])

            return push.on_update(bytes(ref_name), bytes(old_sha), bytes(new_sha), progress)

    return SlipwayReceivePack
