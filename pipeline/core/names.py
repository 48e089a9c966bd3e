"""Every name Slipway derives from a service or revision, in one place.

Knative keeps these in `resources/names`; so do we. Containers, HAProxy backends and servers,
hostnames, image repositories and labels are all computed here and nowhere else, so that the
reconciler can recognise what it owns after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pipeline.core.errors import InvalidName

# Knative tags a revision as `<tag>--<svc>`; a service name never holds the separator, so a
# service host never equals a tag host. The longest tag Slipway makes itself is `commit-<sha7>`
# (14 characters), and a hostname label is at most 63 characters.
TAG_SEPARATOR = "--"
DNS_LABEL_MAX = 63
LONGEST_OWN_TAG = len("commit-0000000")
SERVICE_NAME_MAX = DNS_LABEL_MAX - LONGEST_OWN_TAG - len(TAG_SEPARATOR)  # 47

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

LABEL_PREFIX = "dev.slipway"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_PLATFORM = f"{LABEL_PREFIX}.platform"
LABEL_SERVICE = f"{LABEL_PREFIX}.service"
LABEL_REVISION = f"{LABEL_PREFIX}.revision"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"


def is_dns1035_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(_DNS1035.fullmatch(value))


def is_service_name(value: str) -> bool:
    return (
        len(value) <= SERVICE_NAME_MAX
        and bool(_DNS1035.fullmatch(value))
        and TAG_SEPARATOR not in value
    )


def validate_service_name(name: str) -> str:
    """Return `name` if it can name a service, else raise InvalidName saying how to fix it."""
    if not _DNS1035.fullmatch(name):
        raise InvalidName(
            f"invalid service name {name!r}: use lowercase letters, digits and '-', starting "
            "with a letter and ending with a letter or digit (a DNS-1035 label), e.g. 'hello-api'"
        )
    if TAG_SEPARATOR in name:
        tag, _, service = name.rpartition(TAG_SEPARATOR)
        raise InvalidName(
            f"invalid service name {name!r}: '{TAG_SEPARATOR}' separates a tag from its service "
            f"in a host, so '{name}' would take the URL of tag {tag!r} of service {service!r}; "
            "use a single '-', e.g. " + repr(name.replace(TAG_SEPARATOR, "-"))
        )
    if len(name) > SERVICE_NAME_MAX:
        raise InvalidName(
            f"invalid service name {name!r}: {len(name)} characters, at most {SERVICE_NAME_MAX} "
            f"so that the tag URL host 'commit-xxxxxxx--{name}' stays within 63 characters"
        )
    return name


def validate_tag(tag: str, *, service: str = "") -> str:
    """A tag names the host `<tag>--<svc>`: a DNS-1035 label that fits with the service name."""
    room = DNS_LABEL_MAX - len(TAG_SEPARATOR) - max(len(service), 1)
    if not is_dns1035_label(tag):
        raise InvalidName(
            f"invalid traffic tag {tag!r}: use a DNS-1035 label (lowercase letters, digits, '-', "
            "starting with a letter), e.g. 'canary'"
        )
    if len(tag) > room:
        where = f"'{tag}--{service}'" if service else "'<tag>--<service>'"
        raise InvalidName(
            f"invalid traffic tag {tag!r}: {len(tag)} characters, at most {room} so that the "
            f"host {where} stays within {DNS_LABEL_MAX} characters"
        )
    return tag


def commit_tag(sha: str) -> str:
    return f"commit-{sha[:7]}"


def branch_tag(branch: str, *, service: str) -> str:
    """`branch-<slug>`, cut to fit the host label next to the service name."""
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "x"
    room = DNS_LABEL_MAX - len(TAG_SEPARATOR) - len(service)
    return f"branch-{slug}"[:room].rstrip("-")


def revision_name(service: str, number: int) -> str:
    return f"{service}-{number:05d}"


def service_host(service: str, domain: str) -> str:
    return f"{service}.{domain}"


def tag_host(tag: str, service: str, domain: str) -> str:
    return f"{tag}{TAG_SEPARATOR}{service}.{domain}"


def hosts(service: str, tags: Iterable[str], *, domain: str) -> dict[str, str]:
    """Every host `service` answers on (its own, then one per tag), each with who claims it."""
    claims = {service_host(service, domain): f"service {service!r}"}
    for tag in tags:
        claims[tag_host(tag, service, domain)] = f"tag {tag!r} of service {service!r}"
    return claims


def refuse_shared_hosts(
    service: str, tags: Iterable[str], *, others: Mapping[str, Iterable[str]], domain: str
) -> None:
    """Raise InvalidName if a host of `service` or of one of its tags is already a host of
    another service (`others`: service -> its tags). HAProxy can route a host to one place only,
    so the second claim is refused when it is written rather than shadowing the first."""
    mine = hosts(service, tags, domain=domain)
    for other, their_tags in sorted(others.items()):
        if other == service:
            continue
        theirs = hosts(other, their_tags, domain=domain)
        for host in sorted(mine.keys() & theirs.keys()):
            raise InvalidName(
                f"{mine[host]} would answer on {host!r}, which is already the host of "
                f"{theirs[host]}: pick another tag or service name, or delete service {other!r} "
                "first"
            )


def service_url(service: str, domain: str, port: int) -> str:
    return _url(service_host(service, domain), port)


def tag_url(tag: str, service: str, domain: str, port: int) -> str:
    return _url(tag_host(tag, service, domain), port)


def _url(host: str, port: int) -> str:
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def image_repository(registry: str, service: str) -> str:
    return f"{registry}/{service}"


def container_name(platform: str, revision: str, instance: str) -> str:
    return f"slipway-{platform}-{revision}-{instance}"


def backend_name(revision: str) -> str:
    return f"rev-{revision}"


def server_name(instance: str) -> str:
    return f"i-{instance}"


# A revision backend's backup server, the activator, is named after the revision: HAProxy sends
# the chosen server's name in a header (`http-send-name-header`), so a request the activator gets
# names its revision at no cost to the requests that go to an instance (a `set-header` of the
# revision cost each of them ~1.2k instructions).
ACTIVATOR_SERVER_PREFIX = "activator-"


def activator_server_name(revision: str) -> str:
    return f"{ACTIVATOR_SERVER_PREFIX}{revision}"


def is_activator_server(name: str) -> bool:
    return name.startswith(ACTIVATOR_SERVER_PREFIX)


def revision_of_activator_server(name: str) -> str:
    """The revision an activator server is named after; "" for any other server name."""
    return name.removeprefix(ACTIVATOR_SERVER_PREFIX) if is_activator_server(name) else ""


def instance_labels(*, platform: str, service: str, revision: str, instance: str) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_PLATFORM: platform,
        LABEL_SERVICE: service,
        LABEL_REVISION: revision,
        LABEL_INSTANCE: instance,
    }


# --- Kubernetes (the Knative engine); label keys are in `core.annotations` ------------------


def request_authentication_name(service: str) -> str:
    return f"{service}-slipway-jwt"


def authorization_policy_name(service: str) -> str:
    return f"{service}-slipway-invokers"


def build_job_name(build_id: str) -> str:
    return f"slipway-build-{build_id}"


def identity_subject(service: str) -> str:
    """The `sub` of a JWT the metadata service mints for an instance of `service`: the member
    invoker lists name it by (`core.annotations`), and the `<iss>/<sub>` Istio matches."""
    return f"service:{service}"


def user_subject(user: str) -> str:
    """The `sub` of a token minted for a person (`slipway token`)."""
    return f"user:{user}"
