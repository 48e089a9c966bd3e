"""A 403 from the API server, in words: which verb on which resource was refused, to whom, and
how to fix it (the chart's Role). Pure, apart from the exception it names."""

from __future__ import annotations

import re
from typing import Protocol

from pipeline.core.errors import Unavailable


class Resource(Protocol):
    """What the message needs of `apply.Resource` (apply imports this module, not the reverse)."""

    @property
    def qualified(self) -> str: ...


class Forbidden(Unavailable):
    """The API server's RBAC refused a call (403). Retrying the same call cannot help until an
    admin grants the verb; it is an `Unavailable` so that callers that retry (the metadata
    server's 503, a reconciler pass) keep working unchanged once the Role is fixed."""

    def __init__(self, message: str, *, verb: str, resource: str) -> None:
        super().__init__(message)
        self.verb = verb
        self.resource = resource


# The API server's own words for an RBAC refusal (k8s.io/apiserver's forbidden message):
# `<what> is forbidden: User "<user>" cannot <verb> resource "<plural>" in API group "<group>" ...`
_REFUSAL = re.compile(r'User "(?P<user>[^"]*)" cannot (?P<verb>[a-z]+) resource')


def refused_verb(*, attempted: str, api_message: str) -> str:
    """The verb to grant: the one the API server says it refused, else the one Slipway tried."""
    found = _REFUSAL.search(api_message)
    return found.group("verb") if found else attempted.split(" ", 1)[0]


def forbidden_message(*, verb: str, resource: Resource, namespace: str, api_message: str) -> str:
    """What a 403 tells the user: the verb and resource refused, who was refused, and the fix.

    `verb` is what Slipway attempted ("patch (and create)" for a server-side apply that may
    create); the API server's message names the one verb it checked and refused: that one is
    the verb to grant."""
    attempted = verb.replace(" (and create)", " and create")
    missing = refused_verb(attempted=verb, api_message=api_message)
    found = _REFUSAL.search(api_message)
    who = f"the service account {found.group('user')}" if found else "Slipway's service account"
    return (
        f"Kubernetes denied Slipway '{attempted}' on {resource.qualified} in namespace "
        f"{namespace} (403: {api_message}). Grant {who} the verb '{missing}' on "
        f"{resource.qualified} in namespace {namespace}: with the Helm chart, `helm upgrade` puts "
        "its Role back (charts/slipway/templates/rbac.yaml lists every verb Slipway needs); "
        "otherwise add that verb to the Role bound to the account "
        f"(`kubectl -n {namespace} edit role <its role>`)"
    )
