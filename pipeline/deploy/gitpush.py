"""What a `git push` does to a service: the receive-pack `update` step, ref by ref.

dulwich unpacks the pushed objects, then asks `on_update` for each ref before moving it. A push
to the deploy branch builds and deploys the commit (tagged `commit-<sha7>`); another branch builds
a 0% preview tagged `branch-<slug>`; deleting a branch removes its preview; tags are stored, not
built. Returning a message refuses the ref: git shows `! [remote rejected] main -> main (...)` and
the ref does not move, so the previous revision keeps serving.

A deployed ref ends with where its time went (`events.PushTimings`): `-----> Timings: receive
0.03s, build 0.25s (cached), push 0.06s, instance 0.31s, route 0.12s, cleanup 0.01s; total 0.80s`.
The first ref's receive counts from the moment the push reached this handler (its objects
unpacked included).
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dulwich.objects import Commit as GitCommit
from dulwich.objects import Tree
from dulwich.repo import Repo

from pipeline.build import sources
from pipeline.core import names
from pipeline.core.annotations import DEFAULT_DEPLOY_BRANCH
from pipeline.core.annotations import deploy_branch as branch_of
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.deploy import events
from pipeline.deploy.deployer import Deployer
from pipeline.deploy.manifests import Commit
from pipeline.store.state import Store

ZERO_SHA = b"0" * 40
Progress = Callable[[str], None]


def deploy_branch(store: Store, service: str) -> str:
    svc = store.find_service(service)
    if svc is None:
        return DEFAULT_DEPLOY_BRANCH
    return branch_of((svc.spec.get("metadata") or {}).get("annotations") or {})


def export_tree(repo: Repo, sha: bytes) -> bytes:
    """The commit's tree as a source archive (same rules as `slipway deploy --source`)."""
    commit = repo[sha]
    if not isinstance(commit, GitCommit):
        raise SlipwayError(f"{sha.decode()} is not a commit")
    with tempfile.TemporaryDirectory(prefix="slipway-push-") as tmp:
        _write_tree(repo, commit.tree, Path(tmp))
        return sources.pack(Path(tmp))


def _write_tree(repo: Repo, tree_id: bytes, into: Path) -> None:
    tree = repo[tree_id]
    assert isinstance(tree, Tree)
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", errors="surrogateescape")
        if name in ("", ".", "..") or "/" in name:
            continue
        target = into / name
        if stat.S_ISDIR(entry.mode):
            target.mkdir()
            _write_tree(repo, entry.sha, target)
        elif stat.S_ISLNK(entry.mode):
            os.symlink(repo[entry.sha].as_raw_string(), target)
        elif stat.S_ISREG(entry.mode):
            target.write_bytes(repo[entry.sha].as_raw_string())
            target.chmod(0o755 if entry.mode & 0o111 else 0o644)
        # Submodules (gitlinks) have no content here: skipped, as `git archive` does.


class PushHandler:
    """Decides and runs the deploy for each pushed ref of one service's repository."""

    def __init__(self, *, service: str, repo: Repo, deployer: Deployer, store: Store) -> None:
        self._service = service
        self._repo = repo
        self._deployer = deployer
        self._store = store
        self._since = time.monotonic()  # the next ref's receive starts here

    def on_update(self, ref: bytes, old: bytes, new: bytes, progress: Progress) -> bytes | None:
        name = ref.decode("utf-8", errors="replace")
        if not name.startswith("refs/heads/"):
            return None  # tags and other refs are stored, not built
        branch = name.removeprefix("refs/heads/")
        main = deploy_branch(self._store, self._service)
        if new == ZERO_SHA:
            if branch == main:
                progress(f"-----> Refusing to delete {branch}: it is the deploy branch")
                return b"deleting the deploy branch is refused"
            tag = names.branch_tag(branch, service=self._service)
            if self._store.find_service(self._service) and self._deployer.remove_tag(
                self._service, tag
            ):
                progress(f"-----> Removed preview {tag}")
            return None
        sha = new.decode()
        preview = "" if branch == main else names.branch_tag(branch, service=self._service)
        log = get_log(service=self._service, commit=sha[:7], branch=branch)
        timings = events.PushTimings(started=self._since)
        try:
            self._deploy(
                sha=sha, branch=branch, preview=preview, progress=progress, timings=timings
            )
            progress(timings.line())
            return None
        except SlipwayError as e:
            for line in e.message.splitlines():
                progress(f" !     {line}")
            log.warning("push_rejected", error=e.message)
            return _short_reason(e).encode()
        finally:
            self._since = time.monotonic()

    def _deploy(
        self,
        *,
        sha: str,
        branch: str,
        preview: str,
        progress: Progress,
        timings: events.PushTimings,
    ) -> None:
        source = export_tree(self._repo, sha.encode())
        info = sources.inspect(source)
        kind = "Dockerfile" if info.has("Dockerfile") else "no Dockerfile"
        progress(f"-----> Building {self._service}@{sha[:7]} ({kind})")
        outcome = self._deployer.deploy_source(
            self._service,
            source=source,
            env={},
            emit=_printer(progress, timings),
            commit=Commit(sha=sha, branch=branch, preview_tag=preview),
        )
        if not outcome.created:  # no ready step: say where the running revision answers
            for line in events.url_lines(outcome.urls, percent=outcome.percent):
                progress(line)


def _printer(progress: Progress, timings: events.PushTimings) -> Callable[[dict[str, Any]], None]:
    """Each deploy event as the lines `slipway deploy` prints, one `remote:` line each; the
    timings see each event as it passes."""

    def emit(event: dict[str, Any]) -> None:
        timings.see(event)
        for line in events.lines(event):
            progress(line)

    return emit


def _short_reason(e: SlipwayError) -> str:
    first = e.message.splitlines()[0] if e.message else type(e).__name__
    kind = type(e).__name__
    label = {"BuildFailed": "build failed", "RevisionFailed": "revision failed"}.get(kind, "")
    text = f"{label}: {first}" if label and not first.startswith(label) else first
    return text[:200]
