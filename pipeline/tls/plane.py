"""The data plane the reconciler drives, completed: mapped domains route, HTTPS has certificates.

The reconciler builds its plane from services and revisions (`reconcile.routing`); this wrapper
stands where it applies the plane and adds what lives beside them. Each mapped host becomes a
route with the split of its service's own host (`with_mappings`, pure: Knative's DomainMapping
routes to the service's traffic, tags not included), and with HTTPS on, every public host's
certificate rides along (`issuance.Certificates.tls_for`). Everything else goes to HAProxy's
data plane unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from pipeline.autoscale.scaler import Load
from pipeline.core import names
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.dataplane.drains import HAProxyDataPlane
from pipeline.dataplane.model import DataPlane, Route, Tls
from pipeline.store.domains import DomainMapping
from pipeline.tls.issuance import Certificates


def with_mappings(plane: DataPlane, mappings: Iterable[DomainMapping], *, domain: str) -> DataPlane:
    """`plane` with a route per mapped host whose service has a route of its own."""
    by_host = {r.host: r for r in plane.routes}
    added: list[Route] = []
    for mapping in sorted(mappings, key=lambda m: m.host):
        own = by_host.get(names.service_host(mapping.service, domain))
        if own is None or mapping.host in by_host:
            continue  # no traffic yet (or a host the platform already routes: never shadowed)
        added.append(replace(own, host=mapping.host))
    if not added:
        return plane
    return replace(plane, routes=tuple(sorted([*plane.routes, *added], key=lambda r: r.host)))


def public_hosts(plane: DataPlane) -> list[str]:
    return [r.host for r in plane.routes if not r.internal_only]


class ServingPlane:
    """HAProxy's data plane behind the reconciler, with mapped domains and certificates."""

    def __init__(
        self,
        inner: HAProxyDataPlane,
        *,
        domain: str,
        mappings: Callable[[], Sequence[DomainMapping]],
        certificates: Certificates | None = None,
    ) -> None:
        self.inner = inner
        self._domain = domain
        self._mappings = mappings
        self._certificates = certificates
        self._tls: Tls | None = None  # the last certificates HAProxy was given
        self._log = get_log(component="tls")

    def apply(self, plane: DataPlane) -> str:
        plane = with_mappings(plane, self._mappings(), domain=self._domain)
        if self._certificates is not None:
            plane = replace(plane, tls=self._tls_for(public_hosts(plane)))
        return self.inner.apply(plane)

    def _tls_for(self, hosts: list[str]) -> Tls:
        """This pass's certificates; a certificate that cannot be issued now (a full disk) must
        not hold routing back, so the last ones serve on while there are any."""
        assert self._certificates is not None
        try:
            self._tls = self._certificates.tls_for(hosts)
        except (SlipwayError, OSError) as exc:
            if self._tls is None:
                raise
            self._log.warning("certificates_not_updated", error=str(exc))
        return self._tls

    def busy(self, backend: str, server: str) -> bool:
        return self.inner.busy(backend, server)

    def down(self) -> dict[str, set[str]]:
        return self.inner.down()

    def load(self) -> dict[str, Load]:
        return self.inner.load()
