"""Bring HAProxy's certificates to a plane: the files a start or reload reads, and the runtime
API for the running worker (the commands decided in `tlschanges`).

The manager (`process`) calls `write` before every start, reload or runtime change, so a later
reload or restart loads exactly what the runtime API was given; `loaded` after a start or a
reload (the files were read); `sync` when only runtime changes are due. `sync` asks HAProxy only
when the wanted certificates differ from what it last brought HAProxy to, so a pass with nothing
new costs no command.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.dataplane import tlsrender
from pipeline.dataplane.model import DataPlane, Site
from pipeline.dataplane.runtime import Runtime
from pipeline.dataplane.tlschanges import CertChange, cert_changes
from pipeline.store.certificates import write_private


class TlsSync:
    def __init__(self, *, site: Site, runtime: Runtime) -> None:
        self.site = site
        self.runtime = runtime
        self._synced: dict[str, str] | None = None  # file -> serial the running worker has
        self._written: dict[Path, str] = {}

    def write(self, plane: DataPlane) -> None:
        """Certificate files (0600: they hold keys), the crt-list and the challenges map."""
        if not self.site.https_bind or plane.tls is None:
            return
        self.site.tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = {self.site.fallback_cert: plane.tls.fallback.pem}
        files |= {self.site.cert_file(c.name): c.pem for c in plane.tls.certificates}
        files[self.site.crt_list] = tlsrender.crt_list_text(self.site, plane.tls.certificates)
        for path, text in files.items():
            self._write(path, text)
        for stale in set(self.site.tls_dir.glob("*.pem")) - set(files):
            stale.unlink(missing_ok=True)  # a running worker keeps what it loaded
            self._written.pop(stale, None)
        if not self.site.challenges_map.exists():
            self._write(self.site.challenges_map, "")

    def loaded(self, plane: DataPlane) -> None:
        """HAProxy (re)started from the files `write` left: it has what the plane has."""
        self._synced = self._serials(plane)

    def sync(self, plane: DataPlane) -> int:
        """Runtime commands sent to bring the running worker to the plane's certificates."""
        wanted = self._serials(plane)
        if plane.tls is None or not self.site.https_bind or wanted == self._synced:
            return 0
        names, pending = self.runtime.ssl_certs()
        loaded = {path: self.runtime.ssl_cert_serial(path) for path in names & wanted.keys()}
        listed = self.runtime.crt_list(str(self.site.crt_list))
        fallback = plane.tls.fallback
        changes = cert_changes(
            wanted={
                str(self.site.cert_file(c.name)): (c.serial, c.pem)
                for c in plane.tls.certificates
            },
            fallback=(str(self.site.fallback_cert), fallback.serial, fallback.pem),
            loaded=loaded,
            listed=listed,
            pending=pending,
        )
        for change in changes:
            self._send(change)
        self._synced = wanted
        return len(changes)

    def _serials(self, plane: DataPlane) -> dict[str, str]:
        if plane.tls is None:
            return {}
        out = {str(self.site.cert_file(c.name)): c.serial for c in plane.tls.certificates}
        out[str(self.site.fallback_cert)] = plane.tls.fallback.serial
        return out

    def _send(self, change: CertChange) -> None:
        crt_list, path = str(self.site.crt_list), change.path
        match change.op:
            case "abort":
                self.runtime.abort_ssl_cert(path)
            case "new":
                self.runtime.new_ssl_cert(path)
            case "set":
                self.runtime.set_ssl_cert(path, change.pem)
            case "commit":
                self.runtime.commit_ssl_cert(path)
            case "add":
                self.runtime.add_crt_list(crt_list, path)
            case "remove":
                self.runtime.del_crt_list(crt_list, path)
            case "delete":
                self.runtime.del_ssl_cert(path)

    def _write(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        try:
            same = path.read_text() == text
        except FileNotFoundError:
            same = False
        if not same:
            write_private(path, text)
        self._written[path] = text
