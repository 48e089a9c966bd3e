"""HTTP client for the Slipway API, used by the CLI (and by tests, as a user would).

Once HTTPS is on, the plain listener redirects to it: the client then moves to the HTTPS origin
(same host) and repeats the request, trusting the system's CAs and Slipway's local CA.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from pipeline.core.settings import Settings
from pipeline.tls import trust


class ClientError(Exception):
    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def default_url(settings: Settings) -> str:
    return os.environ.get("SLIPWAY_URL", settings.https_url or settings.ingress_url)


def default_token(settings: Settings) -> str:
    token = os.environ.get("SLIPWAY_TOKEN", "")
    if token:
        return token
    try:
        return settings.token_file.read_text().strip()
    except OSError:
        return ""


class Client:
    def __init__(
        self,
        *,
        url: str,
        token: str,
        timeout_s: float = 30.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(timeout_s, read=None),
            verify=verify,
        )

    @classmethod
    def from_env(cls) -> Client:
        settings = Settings.from_env()
        return cls(
            url=default_url(settings),
            token=default_token(settings),
            verify=trust.client_context(settings.local_ca_file),
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with self._open(method, path, **kwargs) as resp:
                resp.read()
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        self._raise_for(resp)
        return resp.json()

    @contextlib.contextmanager
    def _open(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """The response, after following the plain listener's redirect to HTTPS (once)."""
        with self._http.stream(method, path, **kwargs) as resp:
            location = resp.headers.get("location", "") if resp.is_redirect else ""
            origin = trust.upgraded(self.url, location) if location else ""
            if not origin:
                yield resp
                return
        self.url = origin
        self._http.base_url = httpx.URL(origin)
        with self._http.stream(method, path, **kwargs) as resp:
            yield resp

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """NDJSON events from a streaming endpoint, as they arrive."""
        try:
            with self._open(method, path, **kwargs) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._raise_for(resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e

    def stream_text(self, path: str, **kwargs: Any) -> Iterator[str]:
        """Text from a streaming endpoint, chunk by chunk as it arrives."""
        try:
            with self._open("GET", path, **kwargs) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._raise_for(resp)
                yield from resp.iter_text()
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e

    def _unreachable(self, e: httpx.HTTPError) -> ClientError:
        return ClientError(
            f"cannot reach Slipway at {self.url} ({e.__class__.__name__}): is it running? "
            "Start it with ./scripts/up, or set SLIPWAY_URL"
        )

    @staticmethod
    def _raise_for(resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text.strip()
        if resp.status_code == 401:
            detail = f"{detail} (set SLIPWAY_TOKEN, or run where the data dir's admin-token is)"
        raise ClientError(str(detail), status=resp.status_code)
