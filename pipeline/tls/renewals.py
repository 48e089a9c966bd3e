"""When a certificate is ordered, renewed, retried or left alone: decided purely.

`due` takes the certificates that are wanted (from the hosts the data plane routes), what the
store has, and the time, and says which to order now and why. A certificate is renewed once a
third of its life is left (Let's Encrypt's 90 days: at 60), or earlier when the CA's renewal
information (ARI, RFC 9773) says so — which is how a revoked certificate gets replaced. A failed
order leaves the old chain serving and waits `retry_delay` before the next attempt: short when
the CA could not be reached, growing when the CA refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.store.certificates import Certificate
from pipeline.tls.hosts import Issuer

RENEW_WHEN_LEFT = 1 / 3
# The reason a certificate carries once the CA's renewal information asked to renew it now.
ARI_RENEW_NOW = "RenewalRequested"
UNREACHABLE_RETRY = (timedelta(seconds=5), timedelta(minutes=10))  # (first, longest)
REFUSED_RETRY = (timedelta(minutes=1), timedelta(hours=12))


@dataclass(frozen=True, kw_only=True)
class Order:
    name: str
    hosts: tuple[str, ...]
    issuer: Issuer
    why: str  # said in the certificate's message once the order is done


def renew_time(not_before: datetime, not_after: datetime) -> datetime:
    return not_after - (not_after - not_before) * RENEW_WHEN_LEFT


def retry_delay(failures: int, *, reachable: bool) -> timedelta:
    """After the `failures`-th failure in a row: double each time, up to the longest."""
    first, longest = REFUSED_RETRY if reachable else UNREACHABLE_RETRY
    return min(first * (1 << max(failures - 1, 0)), longest)


def why_due(
    cert: Certificate | None, *, hosts: tuple[str, ...], issuer: Issuer, now: datetime
) -> str:
    """Why `cert` must be ordered now ("" if it need not be)."""
    if cert is not None and cert.retry_at is not None and now < cert.retry_at:
        return ""
    if cert is None or not cert.issued:
        return "first certificate" if cert is None or not cert.failures else "retry"
    if set(cert.hosts) != set(hosts):
        return f"names changed to {', '.join(hosts)}"
    if cert.issuer != issuer:
        return f"issuer changed to {'the ACME directory' if issuer == 'acme' else 'the local CA'}"
    if cert.not_after is not None and now >= cert.not_after:
        return "expired"
    if cert.renew_at is not None and now >= cert.renew_at:
        if cert.reason == ARI_RENEW_NOW:
            return "the CA asked for a new certificate (renewal information)"
        return "renewal time reached" if not cert.failures else "retry of the renewal"
    return ""


def due(
    wanted: Mapping[str, tuple[str, ...]],
    have: Mapping[str, Certificate],
    *,
    issuers: Mapping[str, Issuer],
    now: datetime,
) -> list[Order]:
    """The orders to place now, by certificate name."""
    orders = []
    for name, hosts in sorted(wanted.items()):
        why = why_due(have.get(name), hosts=hosts, issuer=issuers[name], now=now)
        if why:
            orders.append(Order(name=name, hosts=hosts, issuer=issuers[name], why=why))
    return orders


def ari_due(cert: Certificate, *, now: datetime) -> bool:
    """Time to ask the ACME CA's renewal information about `cert` again."""
    return (
        cert.issuer == "acme"
        and cert.issued
        and (cert.check_at is None or now >= cert.check_at)
        and (cert.renew_at is None or now < cert.renew_at)
    )


def expired_unwanted(
    have: Mapping[str, Certificate], wanted: Mapping[str, tuple[str, ...]], *, now: datetime
) -> list[str]:
    """Certificates no host needs any more and that could not serve anyway: to forget."""
    return sorted(
        name
        for name, cert in have.items()
        if name not in wanted and (cert.not_after is None or cert.not_after <= now)
    )
