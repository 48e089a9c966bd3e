"""Platform settings, read once from the environment (SLIPWAY_*) with one-machine defaults.

Everything a process needs to find the others lives here: the data dir (state, git repos, build
logs, HAProxy files, the admin token, the local CA), the ingress, HTTPS and API ports, the
registry, the Docker network, the ACME directory and the platform id that scopes which
containers this Slipway owns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import InvalidInput
from pipeline.core.packagedata import buildtemplates_dir

_BASE_PREFIX = "SLIPWAY_TEMPLATE_BASE_"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# Slipway's own Cloud Native Buildpacks builder, made on this machine by scripts/builder.
DEFAULT_PACK_BUILDER = "slipway/builder:bookworm"
# Where scripts/tools builds pinned Go tools: <cache>/<group>-<version>/bin (SLIPWAY_TOOLS_CACHE).
TOOLS_CACHE = Path("/var/cache/slipway/tools")


def default_pack_bin(tools_cache: Path = TOOLS_CACHE) -> str:
    """The newest pack scripts/tools built (`pack-v<version>/bin/pack`), else `pack` on PATH."""
    built = [p for p in tools_cache.glob("pack-v*/bin/pack") if os.access(p, os.X_OK)]
    if not built:
        return "pack"
    return str(max(built, key=lambda p: _version_key(p.parent.parent.name.removeprefix("pack-v"))))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/slipway")
    return Path.home() / ".local" / "share" / "slipway"


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    domain: str = "localhost"
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    api_host: str = "127.0.0.1"
    api_port: int = 8081
    registry: str = "127.0.0.1:5000"
    network: str = "slipway"
    # Scopes ownership: the reconciler only ever touches containers labelled with this id, so two
    # Slipways (or the test suite next to a running platform) never adopt each other's instances.
    platform_id: str = "default"
    database_url: str = ""
    haproxy_bin: str = "haproxy"
    readiness_timeout_s: float = 60.0
    grace_period_s: float = 10.0
    reconcile_interval_s: float = 1.0
    # Newest commit-<sha7> tags kept per service: a tagged revision is never garbage-collected
    # (its URL keeps serving), so this bounds the revisions and images old commits pin.
    commit_tags_kept: int = 5
    # Scale to zero: the activator (HAProxy's backup server for every revision) holds requests
    # for a revision at zero; a revision idle for the stable window plus this grace goes to zero.
    activator_port: int = 8082
    scale_to_zero_grace_s: float = 30.0
    # Idle instances are frozen (paused, memory kept) before they stop, for their revision's
    # slipway.dev/frozen-retention-period; all frozen ones stop when MemAvailable is below this.
    freeze_idle: bool = True
    freeze_min_available_mb: int = 512
    # Network sandboxes kept ready (pipeline.engines.sandboxes): an instance starts into one
    # instead of setting up its network (~0.3 s less per start); 0 turns them off.
    spare_sandboxes: int = 1
    # Non-serving, untagged revisions kept for rollbacks; older ones are garbage-collected.
    revisions_kept: int = 10
    # Runtime engine: "docker" (embedded, one machine) or "knative" (Knative Serving on
    # Kubernetes; see pipeline/knative). The settings below are read only by the Knative engine.
    engine: str = "docker"
    kubeconfig: str = ""  # "" = in-cluster service account, else a kubeconfig path
    namespace: str = "default"
    # The URL pods reach Slipway at (source downloads for builds, JWT issuer and JWKS for Istio).
    public_url: str = ""
    # The URL build pods fetch sources from (the in-cluster Service); "" = public_url.
    source_url: str = ""
    registry_insecure: bool = False  # the registry speaks plain HTTP (Slipway and build Jobs)
    metadata_host: str = ""  # host[:port] of the metadata service as a Kubernetes Service
    # An operator's RSA key (PEM), imported as the signing key (the Helm chart's Secret).
    signing_key_file: str = ""
    registry_secret: str = "slipway-registry"  # kubernetes.io/dockerconfigjson Secret for builds
    # The registry as build pods reach it, when that differs from SLIPWAY_REGISTRY (the nodes'
    # name for it): on one machine the node pulls from 127.0.0.1:5000, a pod cannot.
    build_registry: str = ""
    # In-cluster build images; "" = Slipway's own under SLIPWAY_REGISTRY (pipeline.knative.builds,
    # pushed there by scripts/cluster.d/build-images.sh).
    buildkit_image: str = ""
    fetch_image: str = ""
    cnb_builder: str = ""
    cnb_run_image: str = ""
    # buildkitd in build Jobs under rootlesskit, unprivileged (a kernel that lets newuidmap map
    # a user namespace); false = privileged root (docs/kubernetes.md, "In-cluster builds").
    buildkit_rootless: bool = False
    # Builds: at most this many at once (the rest queue in order), each killed after the timeout.
    build_concurrency: int = 2
    build_timeout_s: float = 900.0
    buildtemplates_dir: Path = field(default_factory=buildtemplates_dir)
    # Per-template base image overrides: SLIPWAY_TEMPLATE_BASE_<NAME>=image (e.g. _PYTHON).
    template_bases: dict[str, str] = field(default_factory=dict)
    pack_bin: str = field(default_factory=default_pack_bin)
    pack_builder: str = DEFAULT_PACK_BUILDER  # "": pack's own (`pack config default-builder`)
    # Builders pack may run as one trusted container (`--trust-builder`): Slipway's own and
    # SLIPWAY_PACK_BUILDER always; a builder a user names only when listed here.
    pack_trusted_builders: frozenset[str] = frozenset()
    # The metadata server listens on the bridge gateway at this port (GCE's own is 80).
    metadata_port: int = 80
    # What `deploy --git` and webhooks may clone from: https only unless the operator says.
    git_schemes: frozenset[str] = frozenset({"https"})
    # Where webhook-tracked repositories are cloned from (self-hosted GitHub/GitLab: their URL).
    github_url: str = "https://github.com"
    gitlab_url: str = "https://gitlab.com"
    # HTTPS on the ingress (docs/https.md): 0 = off. Certificates come from the ACME directory
    # ("" = none: the local CA signs every name), or the local CA for names no public CA signs.
    https_port: int = 0
    acme_directory: str = LETS_ENCRYPT
    acme_email: str = ""
    acme_ca_bundle: str = ""  # CA file the ACME directory's own HTTPS is checked against
    acme_dns_hook: str = ""  # a command that sets DNS-01 TXT records: one wildcard certificate
    # Longest wait between two ACME renewal-info (ARI) checks of one certificate.
    tls_check_interval_s: float = 6 * 3600.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        base = cls()
        data_dir = Path(e["SLIPWAY_DATA_DIR"]) if "SLIPWAY_DATA_DIR" in e else base.data_dir
        return cls(
            data_dir=data_dir,
            domain=e.get("SLIPWAY_DOMAIN", base.domain),
            ingress_host=e.get("SLIPWAY_INGRESS_HOST", base.ingress_host),
            ingress_port=int(e.get("SLIPWAY_PORT", base.ingress_port)),
            api_host=e.get("SLIPWAY_API_HOST", base.api_host),
            api_port=int(e.get("SLIPWAY_API_PORT", base.api_port)),
            registry=e.get("SLIPWAY_REGISTRY", base.registry),
            network=e.get("SLIPWAY_NETWORK", base.network),
            platform_id=e.get("SLIPWAY_PLATFORM_ID", base.platform_id),
            database_url=e.get("SLIPWAY_DATABASE_URL", ""),
            haproxy_bin=e.get("SLIPWAY_HAPROXY", base.haproxy_bin),
            readiness_timeout_s=float(e.get("SLIPWAY_READINESS_TIMEOUT", base.readiness_timeout_s)),
            grace_period_s=float(e.get("SLIPWAY_GRACE_PERIOD", base.grace_period_s)),
            commit_tags_kept=int(e.get("SLIPWAY_COMMIT_TAGS_KEPT", base.commit_tags_kept)),
            activator_port=int(e.get("SLIPWAY_ACTIVATOR_PORT", base.activator_port)),
            scale_to_zero_grace_s=float(
                e.get("SLIPWAY_SCALE_TO_ZERO_GRACE", base.scale_to_zero_grace_s)
            ),
            freeze_idle=e.get("SLIPWAY_FREEZE_IDLE", "true").lower() != "false",
            freeze_min_available_mb=int(
                e.get("SLIPWAY_FREEZE_MIN_AVAILABLE_MB", base.freeze_min_available_mb)
            ),
            spare_sandboxes=int(e.get("SLIPWAY_SPARE_SANDBOXES", base.spare_sandboxes)),
            revisions_kept=int(e.get("SLIPWAY_REVISIONS_KEPT", base.revisions_kept)),
            engine=_engine(e.get("SLIPWAY_ENGINE", base.engine)),
            kubeconfig=e.get("SLIPWAY_KUBECONFIG", base.kubeconfig),
            namespace=e.get("SLIPWAY_NAMESPACE", base.namespace),
            public_url=e.get("SLIPWAY_PUBLIC_URL", base.public_url).rstrip("/"),
            source_url=e.get("SLIPWAY_SOURCE_URL", base.source_url).rstrip("/"),
            registry_insecure=e.get("SLIPWAY_REGISTRY_INSECURE", "false").lower() == "true",
            metadata_host=e.get("SLIPWAY_METADATA_HOST", base.metadata_host),
            signing_key_file=e.get("SLIPWAY_SIGNING_KEY_FILE", base.signing_key_file),
            registry_secret=e.get("SLIPWAY_REGISTRY_SECRET", base.registry_secret),
            build_registry=e.get("SLIPWAY_BUILD_REGISTRY", base.build_registry).strip(),
            buildkit_image=e.get("SLIPWAY_BUILDKIT_IMAGE", base.buildkit_image).strip(),
            fetch_image=e.get("SLIPWAY_FETCH_IMAGE", base.fetch_image).strip(),
            cnb_builder=e.get("SLIPWAY_CNB_BUILDER", base.cnb_builder).strip(),
            cnb_run_image=e.get("SLIPWAY_CNB_RUN_IMAGE", base.cnb_run_image).strip(),
            buildkit_rootless=e.get("SLIPWAY_BUILDKIT_ROOTLESS", "false").lower() == "true",
            build_concurrency=int(e.get("SLIPWAY_BUILD_CONCURRENCY", base.build_concurrency)),
            build_timeout_s=float(e.get("SLIPWAY_BUILD_TIMEOUT", base.build_timeout_s)),
            buildtemplates_dir=Path(e.get("SLIPWAY_BUILDTEMPLATES", str(base.buildtemplates_dir))),
            template_bases={
                key.removeprefix(_BASE_PREFIX).lower(): value
                for key, value in e.items()
                if key.startswith(_BASE_PREFIX) and value
            },
            pack_bin=e.get("SLIPWAY_PACK")
            or default_pack_bin(Path(e.get("SLIPWAY_TOOLS_CACHE", str(TOOLS_CACHE)))),
            pack_builder=e.get("SLIPWAY_PACK_BUILDER", base.pack_builder).strip(),
            pack_trusted_builders=_names(e.get("SLIPWAY_PACK_TRUSTED_BUILDERS", "")),
            metadata_port=int(e.get("SLIPWAY_METADATA_PORT", base.metadata_port)),
            git_schemes=_git_schemes(e.get("SLIPWAY_GIT_SCHEMES", "")) or base.git_schemes,
            github_url=e.get("SLIPWAY_GITHUB_URL", base.github_url).rstrip("/"),
            gitlab_url=e.get("SLIPWAY_GITLAB_URL", base.gitlab_url).rstrip("/"),
            https_port=int(e.get("SLIPWAY_HTTPS_PORT", base.https_port)),
            acme_directory=e.get("SLIPWAY_ACME_DIRECTORY", base.acme_directory).strip(),
            acme_email=e.get("SLIPWAY_ACME_EMAIL", base.acme_email),
            acme_ca_bundle=e.get("SLIPWAY_ACME_CA_BUNDLE", base.acme_ca_bundle),
            acme_dns_hook=e.get("SLIPWAY_ACME_DNS_HOOK", base.acme_dns_hook),
            tls_check_interval_s=float(
                e.get("SLIPWAY_TLS_CHECK_INTERVAL", base.tls_check_interval_s)
            ),
        )

    @property
    def insecure_registries(self) -> frozenset[str]:
        """Registries Slipway's own client speaks plain HTTP to (besides loopback): the
        registry's host[:port] when SLIPWAY_REGISTRY_INSECURE is true."""
        host = self.registry.split("/", 1)[0]
        return frozenset({host}) if self.registry_insecure and host else frozenset()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'slipway.db'}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin-token"

    @property
    def haproxy_dir(self) -> Path:
        return self.data_dir / "haproxy"

    @property
    def tls_dir(self) -> Path:
        """The local CA, certificate keys and the ACME account (0700)."""
        return self.data_dir / "tls"

    @property
    def local_ca_file(self) -> Path:
        """The local CA's root certificate: `curl --cacert` it, or trust it in a browser."""
        return self.tls_dir / "ca.pem"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def sources_dir(self) -> Path:
        return self.data_dir / "sources"

    def webhook_secret(self, provider: str) -> bytes | None:
        """SLIPWAY_<PROVIDER>_WEBHOOK_SECRET, else <data dir>/<provider>-webhook-secret."""
        value = os.environ.get(f"SLIPWAY_{provider.upper()}_WEBHOOK_SECRET", "")
        if value:
            return value.encode()
        try:
            return (self.data_dir / f"{provider}-webhook-secret").read_bytes().strip() or None
        except OSError:
            return None

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def ingress_url(self) -> str:
        port = "" if self.ingress_port == 80 else f":{self.ingress_port}"
        return f"http://{self.domain}{port}"

    @property
    def https_url(self) -> str:
        """The bare domain over HTTPS; "" while HTTPS is off."""
        if not self.https_port:
            return ""
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.domain}{port}"


ENGINES = ("docker", "knative")


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise InvalidInput(
            f"SLIPWAY_ENGINE={value!r}: expected one of {', '.join(ENGINES)} "
            "(docker: one machine; knative: Knative Serving on Kubernetes)"
        )
    return value


def _names(text: str) -> frozenset[str]:
    """A comma-separated list, blanks dropped."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _git_schemes(text: str) -> frozenset[str]:
    schemes = _names(text.lower())
    unknown = schemes - {"https", "http", "ssh"}
    if unknown:
        raise InvalidInput(
            f"SLIPWAY_GIT_SCHEMES: {', '.join(sorted(unknown))} is not a git transport Slipway "
            "clones with: use a comma-separated subset of https, ssh, http"
        )
    return schemes
