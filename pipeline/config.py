"""Platform settings, read once from the environment (SLIPWAY_*) with one-machine defaults.

Everything a process needs to find the others lives here: the data dir (state, git repos, build
logs, HAProxy files, the admin token), the ingress and API ports, the registry, the Docker network
and the platform id that scopes which containers this Slipway owns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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
    # Every tagged revision keeps an instance until scale-to-zero lands: bound commit tag URLs.
    commit_tags_kept: int = 5
    # Non-serving, untagged revisions kept for rollbacks; older ones are garbage-collected.
    revisions_kept: int = 10
    # The metadata server listens on the bridge gateway at this port (GCE's own is 80).
    metadata_port: int = 80

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
            revisions_kept=int(e.get("SLIPWAY_REVISIONS_KEPT", base.revisions_kept)),
            metadata_port=int(e.get("SLIPWAY_METADATA_PORT", base.metadata_port)),
        )

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
