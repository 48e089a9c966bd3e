"""`spec.traffic`: which revisions get what share of requests, and which get a tag URL.

Knative's rules, checked in two steps: the list on its own (`normalise_traffic`: one target per
entry, unique tags, percents summing to 100, the default of all traffic to the latest revision)
and against its service (`revisionName` must be one of this service's revisions). The traffic
CLI uses `validate_traffic` for both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from pydantic import Field

from pipeline.core.errors import InvalidName
from pipeline.core.names import validate_tag
from pipeline.spec.base import SpecModel, SpecProblem

TRAFFIC_PATH = "spec.traffic"


class TrafficTarget(SpecModel):
    unsupported_fields: ClassVar[Mapping[str, str]] = {
        "configurationName": "a Service routes only to its own configuration; "
        "use 'latestRevision: true' instead",
        "url": "is set by the platform in status, never in spec; remove it",
    }

    tag: str | None = None
    revision_name: str | None = Field(default=None, alias="revisionName")
    # Knative's defaulting: omitted means "true when no revisionName"; normalise_traffic sets it.
    latest_revision: bool | None = Field(default=None, alias="latestRevision")
    percent: int | None = Field(default=None, ge=0, le=100)

    @classmethod
    def to_latest(cls, *, percent: int | None = None, tag: str | None = None) -> TrafficTarget:
        return cls.model_validate({"latestRevision": True, "percent": percent, "tag": tag})

    @classmethod
    def to_revision(
        cls, revision_name: str, *, percent: int | None = None, tag: str | None = None
    ) -> TrafficTarget:
        return cls.model_validate(
            {"revisionName": revision_name, "latestRevision": False, "percent": percent, "tag": tag}
        )

    @property
    def share(self) -> int:
        return self.percent or 0


def default_traffic() -> list[TrafficTarget]:
    return [TrafficTarget.to_latest(percent=100)]


def normalise_traffic(targets: Sequence[TrafficTarget]) -> list[TrafficTarget]:
    """Check the list on its own; raise SpecProblem with `[i].field` paths. Empty -> default."""
    if not targets:
        return default_traffic()
    out: list[TrafficTarget] = []
    seen_tags: dict[str, int] = {}
    for index, target in enumerate(targets):
        at = f"[{index}]"
        if target.revision_name is not None and target.latest_revision:
            raise SpecProblem(
                "set either revisionName or 'latestRevision: true', not both",
                path=f"{at}.latestRevision",
            )
        if target.revision_name is None and target.latest_revision is False:
            raise SpecProblem(
                "needs a target: set revisionName, or 'latestRevision: true'", path=at
            )
        if target.tag is not None:
            try:
                validate_tag(target.tag)
            except InvalidName as exc:
                raise SpecProblem(exc.message, path=f"{at}.tag") from None
            if target.tag in seen_tags:
                raise SpecProblem(
                    f"duplicate tag {target.tag!r} (also on traffic[{seen_tags[target.tag]}]); "
                    "each tag names one URL",
                    path=f"{at}.tag",
                )
            seen_tags[target.tag] = index
        latest = target.revision_name is None
        out.append(target.model_copy(update={"latest_revision": latest}))
    total = sum(target.share for target in out)
    if total != 100:
        raise SpecProblem(
            f"traffic percents sum to {total}, want 100 (an entry without percent counts as 0)"
        )
    return out


def check_ownership(service_name: str, targets: Sequence[TrafficTarget]) -> None:
    """Raise SpecProblem if a target names a revision that is not this service's."""
    pattern = revision_pattern(service_name)
    for index, target in enumerate(targets):
        if target.tag is not None:
            try:
                validate_tag(target.tag, service=service_name)
            except InvalidName as exc:
                raise SpecProblem(exc.message, path=f"[{index}].tag") from None
        name = target.revision_name
        if name is not None and not pattern.fullmatch(name):
            raise SpecProblem(
                f"{name!r} is not a revision of service {service_name!r}; its revisions are "
                f"named '{service_name}-00001', '{service_name}-00002', ...",
                path=f"[{index}].revisionName",
            )


def revision_pattern(service_name: str) -> re.Pattern[str]:
    """The names Slipway gives this service's revisions (`names.revision_name`)."""
    return re.compile(rf"^{re.escape(service_name)}-[0-9]{{5,}}$")


def validate_traffic(service_name: str, targets: list[TrafficTarget]) -> list[TrafficTarget]:
    """Check a whole traffic list for `service_name`; return it normalised, or raise InvalidSpec.

    Normalised means: the default (all traffic to the latest revision) when empty, and
    `latestRevision` set on every entry, as Knative's defaulting does.
    """
    try:
        normalised = normalise_traffic(targets)
        check_ownership(service_name, normalised)
    except SpecProblem as problem:
        raise problem.to_invalid_spec(TRAFFIC_PATH) from None
    return normalised
