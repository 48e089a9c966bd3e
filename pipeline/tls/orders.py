"""ACME orders through certbot's `acme` library: account, order, challenges, chain; renewal info.

Slipway speaks no ACME itself. `AcmeIssuer.issue(hosts)` registers an account on first use (key
and registration kept in the TLS directory, one per directory URL), makes a fresh P-256 key and
CSR, places the order, answers each authorization — HTTP-01 through HAProxy, DNS-01 through the
operator's hook for the wildcard and the platform domain — waits for the CA to validate and
issue, and returns the full chain with its key. `renewal_info` asks the CA when to renew (ARI).

Everything the library, `requests` or a challenge responder raises leaves as `OrderFailed`, with
a reason for the certificate's status and whether the CA was reached at all (which sets how soon
Slipway tries again).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from acme import challenges, client, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwa import RS256
from josepy.jwk import JWKRSA

from pipeline import __version__
from pipeline.core.errors import SlipwayError, Unavailable
from pipeline.store.certificates import write_private
from pipeline.tls import pems
from pipeline.tls.challenges import DnsChallenges, HttpChallenges

ORDER_TIMEOUT = timedelta(seconds=90)


class OrderFailed(SlipwayError):
    """An order (or a renewal-info check) that did not give a certificate."""

    def __init__(self, message: str, *, reason: str, reachable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.reachable = reachable  # False: the CA was not reached; try again soon


class AcmeIssuer:
    def __init__(
        self,
        *,
        directory: str,
        account_dir: Path,
        http: HttpChallenges,
        email: str = "",
        ca_bundle: str = "",
        dns: DnsChallenges | None = None,
        dns_zone: str = "",
        timeout: timedelta = ORDER_TIMEOUT,
    ) -> None:
        self.directory = directory
        self._account_dir = account_dir / hashlib.sha256(directory.encode()).hexdigest()[:16]
        self._http = http
        self._email = email
        self._ca_bundle = ca_bundle
        self._dns = dns
        self._dns_zone = dns_zone  # names at or under it are validated over DNS-01
        self._timeout = timeout
        self._client: client.ClientV2 | None = None
        self._lock = threading.Lock()  # one order at a time: the account's nonces are shared

    def issue(self, hosts: tuple[str, ...]) -> tuple[str, str]:
        """(full chain PEM, key PEM) for `hosts`."""
        with self._lock, self._translated():
            acme = self._acme()
            key, key_pem = pems.new_key()
            order = acme.new_order(pems.csr_pem(key, hosts))
            cleanups: list[Callable[[], None]] = []
            try:
                for authz in order.authorizations:
                    if authz.body.status != messages.STATUS_VALID:
                        cleanups.append(self._answer(acme, authz))
                done = acme.poll_and_finalize(order, deadline=_local_now() + self._timeout)
            finally:
                for cleanup in cleanups:
                    with contextlib.suppress(SlipwayError):
                        cleanup()
            return done.fullchain_pem, key_pem

    def renewal_info(self, chain_pem: str) -> tuple[datetime | None, datetime]:
        """(when the CA wants the certificate renewed or None, when to ask again), in UTC."""
        with self._lock, self._translated():
            renew, again = self._acme().renewal_time(chain_pem.encode())
        return (_utc(renew) if renew is not None else None), _utc(again)

    # -- steps ---------------------------------------------------------------------------------

    def _answer(
        self, acme: client.ClientV2, authz: messages.AuthorizationResource
    ) -> Callable[[], None]:
        name = authz.body.identifier.value
        over_dns = self._dns is not None and (
            bool(authz.body.wildcard)
            or name == self._dns_zone
            or name.endswith(f".{self._dns_zone}")
        )
        wanted = challenges.DNS01 if over_dns else challenges.HTTP01
        offered = [c for c in authz.body.challenges if isinstance(c.chall, wanted)]
        if not offered:
            raise OrderFailed(
                f"the CA offers no {wanted.typ} challenge for {name!r}"
                + (
                    "; a wildcard needs SLIPWAY_ACME_DNS_HOOK (DNS-01)"
                    if authz.body.wildcard
                    else ""
                ),
                reason="NoChallenge",
                reachable=True,
            )
        body = offered[0]
        response, validation = body.chall.response_and_validation(acme.net.key)
        if over_dns and self._dns is not None:
            fqdn, dns = body.chall.validation_domain_name(name), self._dns
            dns.present(fqdn, validation)
            cleanup = lambda: dns.cleanup(fqdn, validation)  # noqa: E731
        else:
            token, http = body.chall.encode("token"), self._http
            http.present(token, validation)
            cleanup = lambda: http.cleanup(token)  # noqa: E731
        acme.answer_challenge(body, response)
        return cleanup

    def _acme(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        net = client.ClientNetwork(
            self._account_key(), alg=RS256, user_agent=f"slipway/{__version__}"
        )
        if self._ca_bundle:
            # requests takes a CA file where the library passes its verify flag.
            net.verify_ssl = self._ca_bundle  # type: ignore[assignment]
        acme = client.ClientV2(client.ClientV2.get_directory(self.directory, net), net)
        net.account = self._registration(acme)
        self._client = acme
        return acme

    def _account_key(self) -> JWKRSA:
        path = self._account_dir / "account.key"
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(path, pem.decode())
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return JWKRSA(key=loaded)

    def _registration(self, acme: client.ClientV2) -> messages.RegistrationResource:
        path = self._account_dir / "registration.json"
        if path.exists():
            stored = messages.RegistrationResource.json_loads(path.read_text())
            assert isinstance(stored, messages.RegistrationResource)
            return stored
        new = messages.NewRegistration.from_data(
            email=self._email or None, terms_of_service_agreed=True
        )
        try:
            regr = acme.new_account(new)
        except acme_errors.ConflictError as exists:  # this key has an account already
            regr = messages.RegistrationResource(uri=exists.location, body=messages.Registration())
        write_private(path, regr.json_dumps())
        return regr

    def _forget_account(self) -> None:
        self._client = None
        (self._account_dir / "registration.json").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Every failure of an order as one OrderFailed, said the way the CA said it."""
        try:
            yield
        except OrderFailed:
            raise
        except acme_errors.ValidationError as exc:
            raise OrderFailed(
                _validation_problems(exc), reason="ChallengeFailed", reachable=True
            ) from exc
        except messages.Error as exc:
            if exc.code == "accountDoesNotExist":
                self._forget_account()  # the CA lost it (a test CA restarted): register again
            raise OrderFailed(
                f"the CA refused: {exc.detail or exc.typ}", reason="OrderRefused", reachable=True
            ) from exc
        except acme_errors.TimeoutError as exc:
            raise OrderFailed(
                f"the CA did not finish the order within {self._timeout.total_seconds():.0f}s",
                reason="OrderTimeout",
                reachable=True,
            ) from exc
        except requests.RequestException as exc:
            self._client = None
            raise OrderFailed(
                f"the ACME directory {self.directory} could not be reached: {exc}",
                reason="CAUnavailable",
                reachable=False,
            ) from exc
        except acme_errors.Error as exc:
            raise OrderFailed(f"ACME: {exc}", reason="OrderFailed", reachable=True) from exc
        except Unavailable as exc:
            raise OrderFailed(exc.message, reason="ChallengeNotSet", reachable=False) from exc


def _validation_problems(exc: acme_errors.ValidationError) -> str:
    said = []
    for authz in exc.failed_authzrs:
        for chall in authz.body.challenges:
            if chall.error is not None:
                detail = chall.error.detail or chall.error.typ
                said.append(f"{authz.body.identifier.value}: {detail}")
    return "the CA could not validate " + "; ".join(said)


def _local_now() -> datetime:
    return datetime.now()  # the library compares its deadlines with naive local time


def _utc(value: datetime) -> datetime:
    # The library mixes aware times (from the CA) with naive local ones (its own clock).
    return value.astimezone(UTC) if value.tzinfo is not None else value.astimezone().astimezone(UTC)
