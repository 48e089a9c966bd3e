"""HTTP client for the Slipway API, used by the CLI (and by tests, as a user would)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from pipeline.core.settings import Settings


class ClientError(Exception):
    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def default_url(settings: Settings) -> str:
    return os.environ.get("SLIPWAY_URL", settings.ingress_url)


def default_token(settings: Settings) -> str:
    token = os.environ.get("SLIPWAY_TOKEN", "")
    if token:
        return token
    try:
        return settings.token_file.read_text().strip()
    except OSError:
        return ""


class Client:
    def __init__(self, *, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(timeout_s, read=None),
        )

    @classmethod
    def from_env(cls) -> Client:
        settings = Settings.from_env()
        return cls(url=default_url(settings), token=default_token(settings))

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        self._raise_for(resp)
        return resp.json()

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """NDJSON events from a streaming endpoint, as they arrive."""
        try:
            with self._http.stream(method, path, **kwargs) as resp:
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
            with self._http.stream("GET", path, **kwargs) as resp:
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
