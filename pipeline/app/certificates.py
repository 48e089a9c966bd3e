"""The HTTPS half of the embedded engine, wired from settings: the local CA, the ACME issuer
with its challenge responders, and the `Certificates` that keep HAProxy's certificates issued.

Only with `SLIPWAY_HTTPS_PORT`. `SLIPWAY_ACME_DIRECTORY=""` leaves ACME out (the local CA signs
every name); `SLIPWAY_ACME_DNS_HOOK` adds DNS-01 and with it one wildcard certificate.
"""

from __future__ import annotations

from datetime import timedelta

from pipeline.core.settings import Settings
from pipeline.dataplane.challenges import HAProxyChallenges
from pipeline.dataplane.process import HAProxyManager
from pipeline.store.certificates import CertificateStore
from pipeline.tls.challenges import DnsHook
from pipeline.tls.issuance import Certificates, utcnow
from pipeline.tls.localca import LocalCA
from pipeline.tls.orders import AcmeIssuer


def acme_issuer(settings: Settings, *, manager: HAProxyManager) -> AcmeIssuer | None:
    if not settings.acme_directory:
        return None
    return AcmeIssuer(
        directory=settings.acme_directory,
        account_dir=settings.tls_dir / "acme",
        http=HAProxyChallenges(site=manager.site, runtime=manager.runtime),
        email=settings.acme_email,
        ca_bundle=settings.acme_ca_bundle,
        dns=DnsHook(settings.acme_dns_hook) if settings.acme_dns_hook else None,
        dns_zone=settings.domain,
    )


def certificates_of(
    settings: Settings, *, store: CertificateStore, manager: HAProxyManager
) -> Certificates:
    local = LocalCA(settings.tls_dir)
    local.ensure(now=utcnow())  # at first start: ./scripts/up prints where its root is
    return Certificates(
        store=store,
        local=local,
        acme=acme_issuer(settings, manager=manager),
        domain=settings.domain,
        wildcard=bool(settings.acme_dns_hook),
        check_interval=timedelta(seconds=settings.tls_check_interval_s),
    )
