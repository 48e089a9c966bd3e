"""Git sources: clone a repository at one commit and hand back the source archive of its tree.

Webhooks (and `deploy --git`) name a repository URL and a commit; the rest of the push path
wants the same gzip tar the CLI uploads. The clone runs through dulwich (no `git` binary
needed), the commit is checked out detached, HEAD is checked against the requested sha, and the
tree is packed by `sources.pack`, so `.gitignore`/`.dockerignore` apply and `.git/` never ships.

dulwich, socket and urllib3 errors are mapped here, where they enter, to `BuildFailed` with the
URL, the short sha and the reason.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from dulwich import porcelain
from dulwich.config import ConfigFile, StackedConfig
from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from pipeline.build import sources
from pipeline.core.errors import BuildFailed, InvalidSource

_SHA = re.compile(r"^[0-9a-f]{40}$")


def clone_at(url: str, sha: str, *, timeout_s: float = 300) -> bytes:
    """The source archive (gzip tar, reproducible) of `url`'s tree at commit `sha`."""
    if not _SHA.match(sha):
        raise InvalidSource(f"{sha!r} is not a full commit sha (40 lowercase hex characters)")
    with tempfile.TemporaryDirectory(prefix="slipway-clone-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp) / "src"
        _bounded(lambda: _checkout(url, sha, folder, timeout_s=timeout_s), url, sha, timeout_s)
        return sources.pack(folder)


def _bounded(work: Callable[[], None], url: str, sha: str, timeout_s: float) -> None:
    """Run `work` with an overall deadline: a slow server must not hold a webhook build forever.

    dulwich's own timeout is per socket read; a server that trickles bytes would never hit it.
    On the deadline the worker thread is abandoned (daemon) and its temp dir removed under it.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:  # handed to the caller below, never swallowed
            failure.append(e)

    worker = threading.Thread(target=run, name=f"clone-{sha[:7]}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise BuildFailed(f"cloning {url} at {sha[:7]} failed: no answer within {timeout_s:g}s")
    if failure:
        raise failure[0]


def _checkout(url: str, sha: str, folder: Path, *, timeout_s: float) -> None:
    short = sha[:7]
    errors = io.BytesIO()
    try:
        repo = porcelain.clone(
            url,
            str(folder),
            checkout=False,
            errstream=errors,
            config=_config(timeout_s),
        )
    except Exception as e:  # dulwich, urllib3 and OS errors all mean "could not clone"
        raise BuildFailed(f"cloning {url} at {short} failed: {_reason(e)}") from e
    with repo:
        if not _has_commit(repo, sha):
            raise BuildFailed(
                f"cloning {url} at {short} failed: commit {sha} is not in the repository "
                "(force-pushed away, or in a fork this URL does not point at)"
            )
        try:
            # Detach HEAD at the commit, then materialise HEAD's tree: what clone's own
            # checkout does, for a commit that no branch has to point at any more.
            porcelain.update_head(repo, sha, detached=True)
            repo.get_worktree().reset_index()
        except Exception as e:
            raise BuildFailed(f"checking out {short} from {url} failed: {_reason(e)}") from e
        head = repo.head().decode("ascii")
        if head != sha:
            raise BuildFailed(
                f"cloning {url} at {short} failed: HEAD is {head} after checkout, not {sha}"
            )


def _has_commit(repo: Repo, sha: str) -> bool:
    key = ObjectID(sha.encode("ascii"))
    return key in repo.object_store and isinstance(repo.object_store[key], Commit)


def _config(timeout_s: float) -> StackedConfig:
    """The user's git config (proxies, CA bundles) plus a socket timeout for HTTP."""
    ours = ConfigFile()
    ours.set((b"http",), b"timeout", str(int(max(timeout_s, 1))).encode())
    config = StackedConfig.default()
    config.backends.insert(0, ours)
    return config


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def resolve_ref(url: str, ref: str) -> str:
    """A full sha for `ref` (a sha, a branch, a tag or HEAD) in the repository at `url`."""
    if _SHA.match(ref):
        return ref
    try:
        remote = porcelain.ls_remote(url, include_tags=True, quiet=True)
    except Exception as e:  # dulwich raises many kinds: every one means "cannot list"
        raise BuildFailed(f"listing the refs of {url} failed: {e}") from e
    wanted = [ref.encode()] if ref == "HEAD" else [
        f"refs/heads/{ref}".encode(), f"refs/tags/{ref}".encode(), ref.encode(),
    ]  # fmt: skip
    for name in wanted:
        sha = remote.refs.get(Ref(name))
        if sha:
            return sha.decode()
    raise InvalidSource(f"{url} has no branch or tag {ref!r}: check the name (`git ls-remote`)")
