"""Readiness probes run by the reconciler: TCP connect on $PORT, or an HTTP GET (200-399)."""

from __future__ import annotations

import socket

import httpx

from pipeline.core.revisions import Readiness


def ready(address: str, port: int, probe: Readiness) -> bool:
    if not address:
        return False
    if probe.kind == "http":
        try:
            r = httpx.get(f"http://{address}:{port}{probe.path}", timeout=probe.timeout_s)
        except httpx.HTTPError:
            return False
        return 200 <= r.status_code < 400
    try:
        with socket.create_connection((address, port), timeout=probe.timeout_s):
            return True
    except OSError:
        return False
