"""Git sources: clone a repository at one commit and hand back the source archive of its tree.

Webhooks (and `deploy --git`) name a repository URL and a commit; the rest of the push path
wants the same gzip tar the CLI uploads. The clone runs through dulwich (no `git` binary
needed), the commit is checked out detached, HEAD is checked against the requested sha, and the
tree is packed by `sources.pack`, so `.gitignore`/`.dockerignore` apply and `.git/` never ships.

Every URL is checked before dulwich sees it: https only unless the operator allows more
(`SLIPWAY_GIT_SCHEMES`, e.g. `https,ssh`). A local path or `file://` is never cloned — it would
read any repository on the host, another service's included — and scp-style `user@host:path`
counts as ssh, which runs with the control plane's own keys. Every remote call has a deadline.

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
from urllib.parse import urlsplit

from dulwich import porcelain
from dulwich.client import LsRemoteResult
from dulwich.config import ConfigFile, StackedConfig
from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from pipeline.build import sources
from pipeline.core.errors import BuildFailed, InvalidInput, InvalidSource

_SHA = re.compile(r"[0-9a-f]{40}")
_SCP_LIKE = re.compile(r"[^/:@]+@[^/:]+:.*")  # git's `user@host:path` shorthand for ssh
DEFAULT_SCHEMES = frozenset({"https"})
KNOWN_SCHEMES = frozenset({"https", "http", "ssh"})


MAX_ANCESTRY_WALK = 100_000


class StaleCommit(InvalidInput):
    """The commit is the one deployed, or older: building it would roll the service back."""


def check_url(url: str, *, schemes: frozenset[str] = DEFAULT_SCHEMES) -> str:
    """The URL's scheme if it may be cloned, else InvalidInput naming the fix."""
    scheme = "ssh" if _SCP_LIKE.fullmatch(url) else urlsplit(url).scheme.lower()
    if scheme in ("", "file") or scheme not in KNOWN_SCHEMES:
        raise InvalidInput(
            f"git URL {url!r} is not a remote repository: give an https:// URL "
            "(repositories on the Slipway machine itself are never cloned)"
        )
    if scheme not in schemes:
        raise InvalidInput(
            f"git URL {url!r} uses {scheme}, which this Slipway does not allow: use https://, "
            f"or have the operator add {scheme} to SLIPWAY_GIT_SCHEMES (now "
            f"{','.join(sorted(schemes))})"
        )
    return scheme


def clone_at(
    url: str,
    sha: str,
    *,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
    timeout_s: float = 300,
    newer_than: str | None = None,
) -> bytes:
    """The source archive (gzip tar, reproducible) of `url`'s tree at commit `sha`.

    With `newer_than` (the commit deployed for this ref), raise StaleCommit when `sha` is that
    commit or one of its ancestors: a replayed old push must not roll a service back. A commit
    outside that history (a force push) is newer by definition."""
    check_url(url, schemes=schemes)
    if not _SHA.fullmatch(sha):
        raise InvalidSource(f"{sha!r} is not a full commit sha (40 lowercase hex characters)")
    with tempfile.TemporaryDirectory(prefix="slipway-clone-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp) / "src"
        checkout = lambda: _checkout(  # noqa: E731
            url, sha, folder, timeout_s=timeout_s, newer_than=newer_than
        )
        _bounded(checkout, url, f"clone at {sha[:7]}", timeout_s)
        return sources.pack(folder)


def _bounded(work: Callable[[], None], url: str, what: str, timeout_s: float) -> None:
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

    worker = threading.Thread(target=run, name=f"git-{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise BuildFailed(f"{what} of {url} failed: no answer within {timeout_s:g}s")
    if failure:
        raise failure[0]


def _checkout(
    url: str, sha: str, folder: Path, *, timeout_s: float, newer_than: str | None
) -> None:
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
        if newer_than:
            _refuse_stale(repo, sha, deployed=newer_than)
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


def _refuse_stale(repo: Repo, sha: str, *, deployed: str) -> None:
    if sha == deployed:
        raise StaleCommit(f"{sha[:7]} is already deployed")
    if not _has_commit(repo, deployed):
        return  # the deployed commit left the history (force push): anything is newer
    walker = repo.get_walker(include=[ObjectID(deployed.encode("ascii"))],
                             max_entries=MAX_ANCESTRY_WALK)  # fmt: skip
    if any(entry.commit.id.decode("ascii") == sha for entry in walker):
        raise StaleCommit(f"{sha[:7]} is older than {deployed[:7]}, which is deployed")


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


def resolve_ref(
    url: str, ref: str, *, schemes: frozenset[str] = DEFAULT_SCHEMES, timeout_s: float = 30
) -> str:
    """A full sha for `ref` (a sha, a branch, a tag or HEAD) in the repository at `url`."""
    check_url(url, schemes=schemes)
    if _SHA.fullmatch(ref):
        return ref
    listed: list[LsRemoteResult] = []

    def list_refs() -> None:
        try:
            listed.append(
                porcelain.ls_remote(url, config=_config(timeout_s), include_tags=True, quiet=True)
            )
        except Exception as e:  # dulwich raises many kinds: every one means "cannot list"
            raise BuildFailed(f"listing the refs of {url} failed: {e}") from e

    _bounded(list_refs, url, "listing the refs", timeout_s)
    remote = listed[0]
    wanted = [ref.encode()] if ref == "HEAD" else [
        f"refs/heads/{ref}".encode(), f"refs/tags/{ref}".encode(), ref.encode(),
    ]  # fmt: skip
    for name in wanted:
        sha = remote.refs.get(Ref(name))
        if sha:
            return sha.decode()
    raise InvalidSource(f"{url} has no branch or tag {ref!r}: check the name (`git ls-remote`)")
