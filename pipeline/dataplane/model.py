"""The data plane's desired state, as plain values.

The reconciler builds a `DataPlane` from the database and the running instances; `render` turns
it into haproxy.cfg; the manager applies it (reload when the structure changed, runtime API when
only servers did). Nothing here knows about Docker or the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Server:
    """One instance container behind a revision backend."""

    name: str  # names.server_name(instance)
    address: str  # the container's IP on Slipway's bridge network
    port: int
    maxconn: int = 0  # containerConcurrency; 0 = unlimited
    draining: bool = False  # no new requests; in-flight ones finish


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One revision: its instances and its request timeout."""

    name: str  # names.backend_name(revision)
    servers: tuple[Server, ...] = ()
    timeout_s: int = 300  # the revision's timeoutSeconds: 504 past it
    queue_timeout_s: int = 30  # how long a request may wait for a free instance: then 503
    # The readiness probe's HTTP path, checked by HAProxy too ("" = a TCP check), and its timeout.
    check_path: str = ""
    check_timeout_s: int = 1


@dataclass(frozen=True, kw_only=True)
class Split:
    backend: str
    percent: int


@dataclass(frozen=True, kw_only=True)
class Route:
    """A hostname (without port) and how its requests split across revision backends."""

    host: str
    splits: tuple[Split, ...]  # percents sum to 100; a tag host has one split at 100
    internal_only: bool = False  # cluster-local: only on the internal listener
    service: str = ""  # the service the host belongs to (private services check tokens for it)
    private: bool = False  # requests need an identity token of an invoker (dataplane.jwt)


@dataclass(frozen=True, kw_only=True)
class Unready:
    """A service's host while none of its revisions can serve: answered 503 with `why`, so a
    caller learns the service exists and what it waits for (an unknown host gets 404)."""

    host: str
    service: str
    why: str  # "revision hello-00001 failed: ...", "revision hello-00002 is still starting"


@dataclass(frozen=True, kw_only=True)
class JwtPolicy:
    """How HAProxy checks identity tokens: who issues them and the keys that may sign them."""

    issuer: str  # Slipway's public URL, the tokens' `iss`
    keys: tuple[tuple[str, Path], ...] = ()  # (kid, public key PEM file) for every live key


@dataclass(frozen=True, kw_only=True)
class CertFile:
    """One certificate HAProxy serves: a host's, or a wildcard's (`*.<domain>`)."""

    name: str
    pem: str  # the chain, then its key (pipeline.tls.pems.bundle)
    serial: str  # lowercase hex: what a running HAProxy is compared by


@dataclass(frozen=True, kw_only=True)
class Tls:
    """The certificates of the HTTPS listener (dataplane.tlsrender)."""

    fallback: CertFile  # served when no certificate matches the client's SNI
    certificates: tuple[CertFile, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DataPlane:
    routes: tuple[Route, ...] = ()
    backends: tuple[Backend, ...] = ()
    unready: tuple[Unready, ...] = ()  # hosts of services with no revision that can serve
    jwt: JwtPolicy | None = None  # None: no private service can be reached (fail closed)
    # (service, member) pairs allowed to call private services, e.g. ("target", "service:caller").
    # Not part of the config text: HAProxy reads them from a map file changed at runtime.
    invokers: tuple[tuple[str, str], ...] = ()
    # Not part of the config text either: files, and the runtime API's ssl commands.
    tls: Tls | None = None


@dataclass(frozen=True, kw_only=True)
class Site:
    """What does not change with the services: listeners, the API, the files HAProxy uses."""

    bind: str  # "127.0.0.1:8080"
    # The listener instances reach (bridge gateway): every service, cluster-local ones too.
    internal_bind: str = ""
    # Who may connect to it (a CIDR: Slipway's bridge subnet): the gateway address is the host's,
    # so a container on another Docker network could otherwise reach it too.
    internal_sources: str = ""
    # The activator (host:port): every revision backend's backup server, so a revision at zero
    # instances still takes requests; "" renders no activator.
    activator: str = ""
    # HTTPS ("127.0.0.1:8443"); "" = none. With it, the plain listener answers ACME challenges
    # and redirects everything else there.
    https_bind: str = ""
    domain: str  # "localhost": the bare domain serves Slipway's API
    api_server: str  # "127.0.0.1:8081": the control plane behind the bare domain
    run_dir: Path = field(default=Path("/var/lib/slipway/haproxy"))

    @property
    def config_file(self) -> Path:
        return self.run_dir / "haproxy.cfg"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "haproxy.pid"

    @property
    def master_socket(self) -> Path:
        return self.run_dir / "master.sock"

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def invokers_map(self) -> Path:
        return self.run_dir / "invokers.map"

    @property
    def routes_map(self) -> Path:
        """Host -> backend of every single-revision route of the public listeners."""
        return self.run_dir / "routes.map"

    @property
    def internal_routes_map(self) -> Path:
        """The same for the internal listener, cluster-local services included."""
        return self.run_dir / "internal-routes.map"

    @property
    def https_port(self) -> int:
        return int(self.https_bind.rsplit(":", 1)[1]) if self.https_bind else 0

    @property
    def tls_dir(self) -> Path:
        return self.run_dir / "tls"

    @property
    def crt_list(self) -> Path:
        return self.tls_dir / "certificates.list"

    @property
    def fallback_cert(self) -> Path:
        return self.tls_dir / "fallback.pem"

    @property
    def challenges_map(self) -> Path:
        return self.run_dir / "acme-challenges.map"

    def cert_file(self, name: str) -> Path:
        """Where certificate `name` is kept for HAProxy (`*` is no character for a file name)."""
        return self.tls_dir / f"{name.replace('*', '_wildcard')}.pem"
