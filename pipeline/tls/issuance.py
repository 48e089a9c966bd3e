"""The certificates HAProxy serves, kept issued and renewed for the hosts it routes.

Every reconcile pass hands the data plane to `tls_for(hosts)` (through `tls.plane`): the hosts
it routes become the wanted certificates (`hosts.wanted`), certificates the local CA signs are
issued or renewed there and then (milliseconds, offline: a new service's `*.localhost` host has
its certificate in the same pass that routes it), and the answer is what the HTTPS listener
serves. ACME certificates are ordered by `run`, a worker thread, because an order takes seconds:
it places the orders `renewals.due` asks for, asks the CA's renewal information when a check is
due, forgets certificates no host needs once they expired, and wakes the reconciler when a new
certificate is ready, whose next pass hands it to HAProxy through the runtime API.

A failed order never takes the old certificate away: the row keeps its chain (still served) and
says why the order failed, which `slipway services describe` shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.dataplane.model import CertFile, Tls
from pipeline.store.certificates import Certificate, CertificateStore
from pipeline.tls import hosts as hostnames
from pipeline.tls import pems, renewals
from pipeline.tls.localca import LocalCA
from pipeline.tls.orders import AcmeIssuer, OrderFailed
from pipeline.tls.renewals import ARI_RENEW_NOW, Order

FALLBACK = "fallback.slipway.invalid"  # served when no certificate matches the client's SNI


def utcnow() -> datetime:
    return datetime.now(UTC)


class Certificates:
    def __init__(
        self,
        *,
        store: CertificateStore,
        local: LocalCA,
        acme: AcmeIssuer | None,
        domain: str,
        wildcard: bool = False,
        check_interval: timedelta = timedelta(hours=6),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._local = local
        self._acme = acme
        self._domain = domain
        self._wildcard = wildcard and acme is not None and not hostnames.is_local(domain)
        self._check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()  # the maps below
        # Changes made from a row read earlier (renew, renewal info) hold this from the read to
        # the write, so they never write back an older chain over one just issued.
        self._writes = threading.RLock()
        self._wanted: dict[str, tuple[str, ...]] = {}
        self._have = {c.name: c for c in store.list()}
        self._files: dict[tuple[str, str], CertFile] = {}
        self._signal = threading.Event()
        self.on_change: Callable[[], None] = lambda: None  # the reconciler's wake, once wired
        self._log = get_log(component="tls")

    # -- what the data plane asks ----------------------------------------------------------------

    def tls_for(self, hosts: Iterable[str]) -> Tls:
        """The certificates for `hosts`, local ones issued or renewed now."""
        wanted = hostnames.wanted(hosts, domain=self._domain, wildcard=self._wildcard)
        wanted[FALLBACK] = (FALLBACK,)
        with self._lock:
            changed, self._wanted = wanted != self._wanted, wanted
        now = self._clock()
        for order in self._due(now):
            if order.issuer == "local":
                self._place(order, now=now)
        if changed:
            self._signal.set()  # new hosts may want ACME orders
        with self._lock:
            served = [c for name, c in self._have.items() if name in wanted and c.issued]
        files = {c.name: self._file(c) for c in served}
        self._files = {(f.name, f.serial): f for f in files.values()}  # older serials go
        fallback = files.pop(FALLBACK)
        return Tls(fallback=fallback, certificates=tuple(files[n] for n in sorted(files)))

    def known(self) -> list[Certificate]:
        with self._lock:
            return sorted(self._have.values(), key=lambda c: c.name)

    def covering(self, host: str) -> Certificate | None:
        name = hostnames.certificate_name(host, domain=self._domain, wildcard=self._wildcard)
        with self._lock:
            return self._have.get(name)

    def renew(self, name: str) -> Certificate:
        """Order a new certificate for `name` now (`slipway domains renew`)."""
        with self._writes:
            with self._lock:
                cert = self._have.get(name) or self._store.get(name)
            cert = replace(cert, renew_at=self._clock(), retry_at=None)
            self._save(cert)
        self._signal.set()
        self.on_change()
        return cert

    # -- the worker ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except SlipwayError as exc:
                self._log.warning("tls_pass_failed", error=exc.message)
            except Exception:
                self._log.exception("tls_pass_crashed")
            self._signal.wait(interval_s)
            self._signal.clear()

    def run_once(self) -> None:
        now = self._clock()
        for order in self._due(now):
            if order.issuer == "acme":
                self._place(order, now=now)
        with self._lock:
            have, wanted = dict(self._have), dict(self._wanted)
        for cert in have.values():
            if cert.name in wanted and renewals.ari_due(cert, now=now):
                self._check(cert, now=now)
        for name in renewals.expired_unwanted(have, wanted, now=now) if wanted else ():
            self._store.delete(name)
            with self._lock:
                self._have.pop(name, None)

    # -- steps -----------------------------------------------------------------------------------

    def _due(self, now: datetime) -> list[Order]:
        with self._lock:
            wanted, have = dict(self._wanted), dict(self._have)
        issuers = {n: hostnames.issuer_of(n, acme=self._acme is not None) for n in wanted}
        return renewals.due(wanted, have, issuers=issuers, now=now)

    def _place(self, order: Order, *, now: datetime) -> None:
        with self._lock:
            before = self._have.get(order.name)
        log = self._log.bind(certificate=order.name, issuer=order.issuer, why=order.why)
        try:
            if order.issuer == "local":
                chain, key = self._local.issue(order.hosts, now=now)
            else:
                assert self._acme is not None
                chain, key = self._acme.issue(order.hosts)
        except OrderFailed as exc:
            self._save(_failed(order, before, exc, now=now))
            log.warning("certificate_order_failed", reason=exc.reason, error=exc.message)
            return
        facts = pems.facts(chain)
        renewed = before is not None and before.issued
        cert = Certificate(
            name=order.name,
            hosts=order.hosts,
            issuer=order.issuer,
            chain_pem=chain,
            serial=facts.serial,
            not_before=facts.not_before,
            not_after=facts.not_after,
            renew_at=renewals.renew_time(facts.not_before, facts.not_after),
            status="Ready",
            reason="Renewed" if renewed else "Issued",
            message=f"{order.why}: issued by {facts.issuer}, valid until "
            f"{facts.not_after:%Y-%m-%d %H:%M} UTC",
        )
        self._save(cert, key_pem=key)
        log.info("certificate_issued", serial=facts.serial, not_after=facts.not_after.isoformat())
        if order.issuer == "acme":
            self.on_change()

    def _check(self, cert: Certificate, *, now: datetime) -> None:
        """Ask the CA when to renew (ARI); a renewal it wants now is ordered on the next pass."""
        assert self._acme is not None
        try:
            renew_at, again = self._acme.renewal_info(cert.chain_pem)
        except OrderFailed as exc:
            renew_at, again = None, now + renewals.retry_delay(1, reachable=False) * 12
            self._log.info("renewal_info_unavailable", certificate=cert.name, error=exc.message)
        with self._writes:
            with self._lock:
                current = self._have.get(cert.name)
            if current is None or current.serial != cert.serial:
                return  # renewed meanwhile: this answer was about the old certificate
            self._checked(current, renew_at=renew_at, again=again, now=now)

    def _checked(
        self, cert: Certificate, *, renew_at: datetime | None, again: datetime, now: datetime
    ) -> None:
        checked = replace(cert, check_at=min(again, now + self._check_interval))
        if renew_at is not None and renew_at <= now:
            checked = replace(
                checked,
                renew_at=renew_at,
                reason=ARI_RENEW_NOW,
                message="the CA's renewal information asks for a new certificate now (as it "
                "does for a revoked one)",
            )
        elif renew_at is not None:
            checked = replace(checked, renew_at=renew_at)
        self._save(checked)
        if checked.renew_at is not None and checked.renew_at <= now:
            self._signal.set()

    def _save(self, cert: Certificate, *, key_pem: str = "") -> None:
        with self._writes:
            self._store.save(cert, key_pem=key_pem)
            with self._lock:
                self._have[cert.name] = cert

    def _file(self, cert: Certificate) -> CertFile:
        key = (cert.name, cert.serial)
        if key not in self._files:
            pem = pems.bundle(cert.chain_pem, self._store.key_pem(cert))
            self._files[key] = CertFile(name=cert.name, pem=pem, serial=cert.serial)
        return self._files[key]


def _failed(
    order: Order, before: Certificate | None, exc: OrderFailed, *, now: datetime
) -> Certificate:
    """The row after a failed order: the old chain stays (and serves), the reason is said."""
    base = before or Certificate(name=order.name, hosts=order.hosts, issuer=order.issuer)
    failures = base.failures + 1
    message = exc.message
    if base.issued and base.not_after is not None:
        message += (
            f"; still serving the certificate valid until {base.not_after:%Y-%m-%d %H:%M} UTC"
        )
    return replace(
        base,
        status="Failed",
        reason=exc.reason,
        message=message,
        failures=failures,
        retry_at=now + renewals.retry_delay(failures, reachable=exc.reachable),
    )
