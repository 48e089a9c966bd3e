"""A STAND-IN for the Kubernetes API server: a tiny http.server on 127.0.0.1.

LEFT ONLY for tests/unit/test_knative_builds.py (whose owner is moving it to the real cluster):
every other test that used it now runs against the real API server (tests/knative/test_kubeapi.py,
test_chart_install.py) or tests a pure part. Delete this file with its last use.

It is not Kubernetes. It speaks just enough of the API for the calls Slipway makes: GET, LIST
(with labelSelector and equality fieldSelector), POST (create), server-side-apply PATCH and
DELETE of namespaced objects under `/apis/<group>/<version>/...` (custom objects and batch
Jobs), pod LIST and pod log under `/api/v1/...`, and it answers errors the way the API server
does (`kind: Status` bodies; 404 with `details.name` for a missing object, without for an unknown
resource type; 403 naming the verb).
Every request is recorded so tests can assert the wire: method, path, query, headers, body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # collection path/name -> obj
    requests: list[Request] = field(default_factory=list)
    missing_groups: set[str] = field(default_factory=set)  # e.g. CRDs not installed
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural)
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (pod, container)
    on_apply: Any = None  # callable(obj) run after an apply, e.g. to fill in status

    def put(self, collection: str, obj: dict[str, Any]) -> None:
        self.objects[f"{collection}/{obj['metadata']['name']}"] = obj

    def get(self, collection: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(f"{collection}/{name}")


def status_body(code: int, reason: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _split(path: str) -> tuple[str, str, str, str, str]:
    """(group, plural, collection path, name, subresource) of a namespaced object path."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/namespaces/<ns>/<plural>[/<name>[/<sub>]]
        group, rest = "", parts[2:]
        prefix = "/".join(parts[:2])
    else:  # /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]
        group, rest = parts[1], parts[3:]
        prefix = "/".join(parts[:3])
    plural = rest[2]
    collection = "/" + "/".join([prefix, *rest[:3]])
    name = rest[3] if len(rest) > 3 else ""
    sub = rest[4] if len(rest) > 4 else ""
    return group, plural, collection, name, sub


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str) -> bool:
    """`a.b=v,c.d=w`: the equality field selectors the API server supports (e.g. status.podIP)."""
    for term in filter(None, selector.split(",")):
        path, _, value = term.partition("=")
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node if node is not None else "") != value:
            return False
    return True


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(
                Request(self.command, url.path, query, dict(self.headers.items()), body)
            )
            group, plural, collection, name, sub = _split(url.path)
            if self.command == "POST":
                name = body["metadata"]["name"]
            verb = {
                "GET": "get" if name else "list",
                "POST": "create",
                "PATCH": "patch",
                "DELETE": "delete",
            }[self.command]
            if group in state.missing_groups:
                self._send(404, status_body(404, "NotFound",
                                            "the server could not find the requested resource",
                                            {}))  # fmt: skip
                return
            if (verb, plural) in state.forbidden:
                message = (
                    f'{plural}.{group} "{name}" is forbidden: User '
                    '"system:serviceaccount:slipway:slipway" cannot '
                    f'{verb} resource "{plural}" in API group "{group}" in the namespace "apps"'
                )
                self._send(403, status_body(403, "Forbidden", message,
                                            {"name": name, "kind": plural}))  # fmt: skip
                return
            if sub == "log":
                lines = state.logs.get((name, query.get("container", "")), [])
                self._send(200, "".join(line + "\n" for line in lines).encode(), "text/plain")
                return
            key = f"{collection}/{name}"
            if self.command == "GET" and not name:
                items = [
                    obj
                    for path, obj in sorted(state.objects.items())
                    if path.rsplit("/", 1)[0] == collection
                    and _matches(obj, query.get("labelSelector", ""))
                    and _fields_match(obj, query.get("fieldSelector", ""))
                ]
                self._send(200, {"kind": "List", "items": items})
                return
            if self.command == "PATCH":
                self._apply(key, query, body)
                return
            if self.command == "POST":
                if key in state.objects:
                    message = f'{plural}.{group} "{name}" already exists'
                    self._send(409, status_body(409, "AlreadyExists", message, {"name": name}))
                    return
                self._apply(key, query, body)
                return
            if key not in state.objects:
                message = f'{plural}.{group} "{name}" not found'
                details = {"name": name, "group": group, "kind": plural}
                self._send(404, status_body(404, "NotFound", message, details))
                return
            if self.command == "DELETE":
                del state.objects[key]
                self._send(200, status_body(200, "", "", {"name": name}) | {"status": "Success"})
                return
            self._send(200, state.objects[key])

        def _apply(self, key: str, query: dict[str, str], body: dict[str, Any]) -> None:
            existing = state.objects.get(key)
            obj = json.loads(json.dumps(body))
            meta = obj["metadata"]
            manager = {"manager": query.get("fieldManager", ""), "operation": "Apply"}
            if existing is None:
                meta["generation"] = 1
                meta["managedFields"] = [manager]
                code = 201
            else:
                old = existing["metadata"]
                meta["generation"] = old.get("generation", 1) + (
                    existing.get("spec") != obj.get("spec")
                )
                meta["managedFields"] = [*old.get("managedFields", []), manager]
                if "status" in existing:
                    obj["status"] = existing["status"]
                code = 200
            state.objects[key] = obj
            if state.on_apply is not None:
                state.on_apply(obj)
            self._send(code, obj)

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    return Handler


def serve() -> Iterator[tuple[StandIn, k8s.ApiClient]]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = k8s.ApiClient(configuration)
    try:
        yield state, api
    finally:
        api.close()
        server.shutdown()
        server.server_close()
