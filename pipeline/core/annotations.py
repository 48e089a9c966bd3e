"""Every label and annotation key Slipway reads or writes, each declared once beside its parser.

Knative keeps these in `pkg/apis/serving/register.go`; so do we. Nothing else in the tree spells
a `slipway.dev/*`, `serving.knative.dev/*`, `networking.knative.dev/*` or
`autoscaling.knative.dev/*` key: a key spelled twice drifts into two grammars. This module is
core vocabulary: it imports nothing above `core`. Richer typed readers built on these keys live
with their flow (`spec.autoscaling` types the autoscaling keys, `build.builders` the build
settings, `webhooks.tracking` the repository a service follows).

The invoker grammar, the same on both engines (`identity.access` next to Docker; the Knative
engine and `knative.istio`):

    slipway.dev/invokers: "service:caller,user:alice,checkout"

An entry is a *member*, the string a token's `sub` holds (`service:<svc>` for code in a
service's instance, `user:<name>` for a person), or a bare service name, short for
`service:<name>`. Entries are read in order, once each, as members.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.core import names
from pipeline.core.errors import InvalidInput, InvalidSpec

# --- API groups ----------------------------------------------------------------------------------
SERVING_GROUP = "serving.knative.dev"
SERVING_API_VERSION = f"{SERVING_GROUP}/v1"

# --- on the Service, set by users (or by `slipway services` commands) -----------------------------
PRIVATE_ANNOTATION = "slipway.dev/private"
INVOKERS_ANNOTATION = "slipway.dev/invokers"
GITHUB_REPOSITORY_ANNOTATION = "slipway.dev/github-repository"
GITLAB_PROJECT_ANNOTATION = "slipway.dev/gitlab-project"
DEPLOY_BRANCH_ANNOTATION = "slipway.dev/deploy-branch"
PREVIEW_FORKS_ANNOTATION = "slipway.dev/preview-forks"
# `SECRET[:KEY]`: the Slipway secret whose key (default `token`) signs this service's webhooks.
WEBHOOK_SECRET_ANNOTATION = "slipway.dev/webhook-secret"
DEFAULT_WEBHOOK_SECRET_KEY = "token"
BUILDER_ANNOTATION = "slipway.dev/builder"
DOCKERFILE_ANNOTATION = "slipway.dev/dockerfile"
BUILD_ENV_ANNOTATION = "slipway.dev/build-env"
PACK_BUILDER_ANNOTATION = "slipway.dev/pack-builder"
BASE_IMAGE_ANNOTATION = "slipway.dev/base-image"
DEFAULT_DEPLOY_BRANCH = "main"

# --- on a revision template, set by users ---------------------------------------------------------
# How long an idle instance stays frozen (paused, memory kept) before it is stopped; "0": never
# frozen, stopped at once. Knative's closest is `scale-to-zero-pod-retention-period`.
FROZEN_RETENTION_ANNOTATION = "slipway.dev/frozen-retention-period"

# --- written by Slipway ---------------------------------------------------------------------------
# On a revision template: the secret versions the revision pinned when it was created.
SECRET_VERSIONS_ANNOTATION = "slipway.dev/secret-versions"
# Labels on every object Slipway creates in a cluster: how it recognises its own.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "slipway"  # the managed-by value and the server-side apply field manager
PLATFORM_LABEL = "slipway.dev/platform"
SERVICE_LABEL = "slipway.dev/service"
# One key, two places: a label on build Jobs, an annotation on the revision template it built.
BUILD_LABEL = "slipway.dev/build"
BUILD_ANNOTATION = BUILD_LABEL

# --- Knative Serving ------------------------------------------------------------------------------
# Knative puts these on revisions and their pods.
KNATIVE_SERVICE_LABEL = f"{SERVING_GROUP}/service"
KNATIVE_REVISION_LABEL = f"{SERVING_GROUP}/revision"
# What the API server writes on a Service; accepted in pasted YAML and dropped.
CREATOR_ANNOTATION = f"{SERVING_GROUP}/creator"
LAST_MODIFIER_ANNOTATION = f"{SERVING_GROUP}/lastModifier"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
CLUSTER_LOCAL = "cluster-local"
RETIRED_VISIBILITY_LABEL = f"{SERVING_GROUP}/visibility"  # Knative's old name, refused by name

# Revision-template annotations Knative's autoscaler reads (`spec.autoscaling` types them).
AUTOSCALING_PREFIX = "autoscaling.knative.dev/"
KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
MIN_SCALE_ANNOTATION = AUTOSCALING_PREFIX + "min-scale"
MAX_SCALE_ANNOTATION = AUTOSCALING_PREFIX + "max-scale"
INITIAL_SCALE_ANNOTATION = AUTOSCALING_PREFIX + "initial-scale"
TARGET_ANNOTATION = AUTOSCALING_PREFIX + "target"
TARGET_UTILIZATION_ANNOTATION = AUTOSCALING_PREFIX + "target-utilization-percentage"
WINDOW_ANNOTATION = AUTOSCALING_PREFIX + "window"
SCALE_DOWN_DELAY_ANNOTATION = AUTOSCALING_PREFIX + "scale-down-delay"
METRIC_ANNOTATION = AUTOSCALING_PREFIX + "metric"
CLASS_ANNOTATION = AUTOSCALING_PREFIX + "class"
# Real Knative annotations Slipway's autoscaler does not implement.
KNATIVE_ONLY_AUTOSCALING = tuple(
    AUTOSCALING_PREFIX + key
    for key in (
        "activation-scale",
        "panic-window-percentage",
        "panic-threshold-percentage",
        "scale-to-zero-pod-retention-period",
        "target-burst-capacity",
    )
)
# Knative's camelCase spellings from before v0.19, which it still reads (`kmap.KeyPriority` in
# its register.go): legacy key -> current key. Each is read with the current key's parser; a
# template giving both spellings with different values is refused (`spec.autoscaling`).
LEGACY_AUTOSCALING = {
    AUTOSCALING_PREFIX + legacy: AUTOSCALING_PREFIX + current
    for legacy, current in (
        ("minScale", "min-scale"),
        ("maxScale", "max-scale"),
        ("initialScale", "initial-scale"),
        ("scaleDownDelay", "scale-down-delay"),
        ("targetUtilizationPercentage", "target-utilization-percentage"),
        ("panicWindowPercentage", "panic-window-percentage"),
        ("panicThresholdPercentage", "panic-threshold-percentage"),
        ("scaleToZeroPodRetentionPeriod", "scale-to-zero-pod-retention-period"),
        ("targetBurstCapacity", "target-burst-capacity"),
    )
}


def k8s_labels(*, platform: str, **extra: str) -> dict[str, str]:
    """Labels on every object Slipway creates in a cluster: how it recognises its own."""
    labels = {MANAGED_BY_LABEL: MANAGER, PLATFORM_LABEL: platform}
    labels.update(extra)
    return labels


# --- parsers -------------------------------------------------------------------------------------


def text(annotations: Mapping[str, object], key: str) -> str:
    """The value, stripped; "" when unset or not a string (hostile YAML can hold anything)."""
    raw = annotations.get(key)
    return raw.strip() if isinstance(raw, str) else ""


def is_cluster_local(labels: Mapping[str, object]) -> bool:
    return labels.get(VISIBILITY_LABEL) == CLUSTER_LOCAL


def deploy_branch(annotations: Mapping[str, object]) -> str:
    """The branch whose pushes serve; any other branch builds a preview."""
    return text(annotations, DEPLOY_BRANCH_ANNOTATION) or DEFAULT_DEPLOY_BRANCH


def github_repository(annotations: Mapping[str, object]) -> str:
    """`owner/name`, lowercased: GitHub compares repository paths case-insensitively."""
    return text(annotations, GITHUB_REPOSITORY_ANNOTATION).lower()


def gitlab_project(annotations: Mapping[str, object]) -> str:
    """`group/name`, lowercased, as GitLab compares them."""
    return text(annotations, GITLAB_PROJECT_ANNOTATION).lower()


def preview_forks(annotations: Mapping[str, object]) -> bool:
    return text(annotations, PREVIEW_FORKS_ANNOTATION).lower() == "true"


def webhook_secret(annotations: Mapping[str, object]) -> tuple[str, str] | None:
    """(secret, key) of the service's own webhook secret; None: the platform's applies."""
    raw = text(annotations, WEBHOOK_SECRET_ANNOTATION)
    if not raw:
        return None
    secret, _, key = raw.partition(":")
    return secret.strip(), key.strip() or DEFAULT_WEBHOOK_SECRET_KEY


_USER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")


def is_user_name(name: str) -> bool:
    return bool(_USER.fullmatch(name))


def parse_member(member: str) -> str:
    """`service:<svc>` or `user:<name>`, the form a token's `sub` holds; anything else is
    refused with the accepted forms."""
    kind, _, name = member.partition(":")
    valid = names.is_service_name(name) if kind == "service" else is_user_name(name)
    if kind in ("service", "user") and valid:
        return member
    raise InvalidInput(
        f"invalid invoker {member!r}: use service:<service name> or user:<name>, "
        "e.g. service:caller or user:alice"
    )


def parse_invoker(entry: str) -> str:
    """One entry of `slipway.dev/invokers` as a member: a bare service name means the service."""
    if ":" not in entry and names.is_service_name(entry):
        return names.identity_subject(entry)
    try:
        return parse_member(entry)
    except InvalidInput:
        raise InvalidInput(
            f"invalid invoker {entry!r}: use service:<service name>, user:<name> or a service "
            "name, e.g. 'service:caller,user:alice' or 'checkout,billing'"
        ) from None


@dataclass(frozen=True, kw_only=True)
class Access:
    """Who may call a service, read from its two access annotations."""

    private: bool = False
    invokers: tuple[str, ...] = ()  # members, in order, once each
    # (annotation key, message) for each value the grammar refuses; left out of the above.
    refused: tuple[tuple[str, str], ...] = ()


def read_access(annotations: Mapping[str, object]) -> Access:
    """The one parser of `slipway.dev/private` and `slipway.dev/invokers`. It never raises:
    what it cannot read is listed in `refused`, and each engine decides (the data plane skips
    an entry no token could match; the Knative engine refuses the spec, see `access_of`)."""
    refused: list[tuple[str, str]] = []
    raw_private = text(annotations, PRIVATE_ANNOTATION)
    private = raw_private.lower()
    if private not in ("", "true", "false"):
        refused.append((PRIVATE_ANNOTATION, f'expected "true" or "false", got {raw_private!r}'))
    members: list[str] = []
    for entry in text(annotations, INVOKERS_ANNOTATION).split(","):
        if not entry.strip():
            continue
        try:
            member = parse_invoker(entry.strip())
        except InvalidInput as exc:
            refused.append((INVOKERS_ANNOTATION, exc.message))
            continue
        if member not in members:
            members.append(member)
    return Access(private=private == "true", invokers=tuple(members), refused=tuple(refused))


def access_of(annotations: Mapping[str, object]) -> Access:
    """`read_access`, refusing the first value it could not read: InvalidSpec names the key."""
    access = read_access(annotations)
    for key, message in access.refused:
        raise InvalidSpec(message, path=f"metadata.annotations.{key}")
    return access
