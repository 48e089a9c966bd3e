"""Running one build for a deploy: the build row, the stored source, the log file, the queue slot.

Where a push, a webhook or `deploy --source` turns a source archive into an image: choose the
builder (before the service lock, so a bad source fails at once), then, holding the lock, record
the build, keep its source and log, wait for a slot in the queue, build and push. Secret build
values never reach the log, the caller or the build row: every line and error is masked first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from pipeline.build import sources
from pipeline.build import templates as buildtemplates
from pipeline.build.builders import (
    Builder,
    BuilderChoice,
    BuildRequest,
    BuildSettings,
    Kind,
    choose_builder,
    service_settings,
)
from pipeline.build.masking import mask
from pipeline.build.queue import BuildQueue
from pipeline.core import names
from pipeline.core.errors import BuildCancelled, Conflict, SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.settings import Settings
from pipeline.deploy.events import Emit, stage
from pipeline.store.state import Store


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    """A source and how it will be built, decided before the build is queued."""

    source: bytes  # gzip tar
    info: sources.SourceInfo
    choice: BuilderChoice
    settings: BuildSettings


@dataclass(frozen=True, kw_only=True)
class Built:
    build_id: str
    image: str  # registry/repo@sha256:...


class BuildRuns:
    def __init__(
        self, *, store: Store, builders: Callable[[Kind], Builder], settings: Settings
    ) -> None:
        self._store = store
        self._builders = builders
        self._settings = settings
        self._templates = buildtemplates.load(settings.buildtemplates_dir)
        self._queue = BuildQueue(
            concurrency=settings.build_concurrency, timeout_s=settings.build_timeout_s
        )

    def plan(self, service: str, *, source: bytes, build: BuildSettings | None) -> BuildPlan:
        """The builder for this source: the request's settings over the service's own."""
        info = sources.inspect(source)
        existing = self._store.find_service(service)
        metadata = (existing.spec.get("metadata") or {}) if existing else {}
        annotations = metadata.get("annotations") or {}
        settings = (build or BuildSettings()).over(service_settings(annotations))
        choice = choose_builder(info.files, settings=settings, templates=self._templates)
        return BuildPlan(source=source, info=info, choice=choice, settings=settings)

    def run(self, service: str, plan: BuildPlan, *, emit: Emit) -> Built:
        """Build and push (the caller holds the service lock); raises what the build raised."""
        record = self._store.create_build(service, builder=plan.choice.name, status="queued")
        log_path = self._keep_source(record.id, plan.source)
        emit({"event": "build", "build": record.id, "builder": plan.choice.name})
        started = time.monotonic()
        try:
            with BuildLog(
                log_path, secrets=[v for _, v in plan.settings.secrets], emit=emit
            ) as out:
                out.line(f"-----> Builder: {plan.choice.name} ({plan.choice.reason})")
                image = self._build(service, record.id, plan, out)
        finally:
            # Kept only while a build may fetch it (in-cluster Jobs do): sources are the
            # user's code, and stored forever they would fill the disk.
            self._source_path(record.id).unlink(missing_ok=True)
        emit(stage(f"Built and pushed {image}", seconds=round(time.monotonic() - started, 1)))
        get_log(service=service, build=record.id).info("build_succeeded", image=image)
        return Built(build_id=record.id, image=image)

    def cancel(self, build_id: str) -> None:
        """Stop a queued or running build; it fails with "cancelled" and no revision is made."""
        build = self._store.get_build(build_id)
        if not build.unfinished:
            raise Conflict(f"build {build_id} already {build.status}: nothing to cancel")
        if not self._queue.cancel(build_id):
            # Not in this process (it died with a previous one): just record the end.
            self._store.finish_build(build_id, error="build cancelled", status="cancelled")
        deadline = time.monotonic() + 20  # the kill escalates to SIGKILL after 5 s
        while self._store.get_build(build_id).unfinished and time.monotonic() < deadline:
            time.sleep(0.1)

    def _keep_source(self, build_id: str, source: bytes) -> Path:
        """Store the source (in-cluster build Jobs fetch it) and return the log's path."""
        log_path = self._settings.builds_dir / f"{build_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._settings.sources_dir.mkdir(parents=True, exist_ok=True)
        self._source_path(build_id).write_bytes(source)
        return log_path

    def _source_path(self, build_id: str) -> Path:
        return self._settings.sources_dir / f"{build_id}.tar.gz"

    def _build(self, service: str, build_id: str, plan: BuildPlan, out: BuildLog) -> str:
        def queued(ahead: int) -> None:
            out.line(
                f"-----> Queued: {ahead} build(s) ahead "
                f"(at most {self._queue.concurrency} at once)"
            )

        request = BuildRequest(
            build_id=build_id,
            source=plan.source,
            info=plan.info,
            repository=names.image_repository(self._settings.registry, service),
            choice=plan.choice,
            settings=plan.settings,
        )
        try:
            with self._queue.slot(
                build_id, on_queued=queued, on_start=lambda: self._store.start_build(build_id)
            ) as control:
                result = self._builders(plan.choice.kind).build(
                    request, on_line=out.line, control=control
                )
                # Recorded while the slot is held: the next build starts after this.
                self._store.finish_build(build_id, image=result.image)
        except SlipwayError as e:
            message = out.mask(e.message)
            status = "cancelled" if isinstance(e, BuildCancelled) else "failed"
            out.line(f"-----> Build {status}: {message}")
            self._store.finish_build(build_id, error=message, status=status)
            get_log(service=service, build=build_id).warning("build_failed", error=message)
            raise
        except BaseException:
            self._store.finish_build(build_id, error="internal error during the build")
            raise
        return result.image


class BuildLog:
    """A build's output: masked, appended to its log file and emitted, line by line."""

    def __init__(self, path: Path, *, secrets: Sequence[str], emit: Emit) -> None:
        self._path = path
        self._secrets = secrets
        self._emit = emit
        self._file: IO[str] | None = None

    def __enter__(self) -> BuildLog:
        self._file = self._path.open("a", encoding="utf-8")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()

    def mask(self, text: str) -> str:
        return mask(text, self._secrets)

    def line(self, text: str) -> None:
        text = self.mask(text)
        assert self._file is not None, "BuildLog used outside its with-block"
        self._file.write(text + "\n")
        self._file.flush()
        self._emit({"event": "log", "line": text})
