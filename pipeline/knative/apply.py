"""The Kubernetes API, the few calls Slipway makes, with errors translated where they enter.

Uses the official `kubernetes` client. Objects are written with server-side apply (PATCH with
`application/apply-patch+yaml`, field manager `slipway`): Slipway says what it wants and the API
server merges, so applying the same manifest twice changes nothing. `force=True` (take over
fields another manager set) is only ever sent for objects Slipway owns; an object of the same name
that Slipway did not create is refused, never overwritten.

Every failure leaves as a Slipway error that names what to do: no cluster reachable, a 403 that
names the missing verb and resource (`Forbidden`: permanent until someone changes the Role, so a
deploy can fail at once rather than wait), a 404 on the resource type that means the CRD (Knative
Serving, Istio) is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from pipeline.core.annotations import (
    MANAGED_BY_LABEL,
    MANAGER,
    PLATFORM_LABEL,
    SERVING_GROUP,
)
from pipeline.core.errors import Conflict, InvalidSpec, NotFound, SlipwayError, Unavailable
from pipeline.knative.forbidden import Forbidden, forbidden_message, refused_verb

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = MANAGER
T = TypeVar("T")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    installed_by: str  # what to install when the API server does not know the resource type

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KSERVICES = Resource(SERVING_GROUP, "v1", "services", "Knative Serving")
KREVISIONS = Resource(SERVING_GROUP, "v1", "revisions", "Knative Serving")
DOMAIN_MAPPINGS = Resource(SERVING_GROUP, "v1beta1", "domainmappings", "Knative Serving")
REQUEST_AUTHENTICATIONS = Resource("security.istio.io", "v1", "requestauthentications", "Istio")
AUTHORIZATION_POLICIES = Resource("security.istio.io", "v1", "authorizationpolicies", "Istio")
JOBS = Resource("batch", "v1", "jobs", "Kubernetes")  # same URL shape as custom objects
PODS = Resource("", "v1", "pods", "Kubernetes")
POD_LOGS = Resource("", "v1", "pods/log", "Kubernetes")
SECRETS = Resource("", "v1", "secrets", "Kubernetes")


def connect(*, kubeconfig: str = "") -> k8s.ApiClient:
    """An API client from a kubeconfig file, or the pod's service account when none is given."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
    except (ConfigException, OSError) as e:
        where = f"the kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        raise Unavailable(
            f"no Kubernetes configuration from {where}: {e}; set SLIPWAY_KUBECONFIG to a "
            "kubeconfig file, or run Slipway in a pod with a service account (the Helm chart does)"
        ) from e
    return k8s.ApiClient(configuration)


def owned(obj: dict[str, Any], *, platform: str) -> bool:
    """Slipway's label with this platform id, or (label lost) Slipway as a field manager."""
    metadata: dict[str, Any] = obj.get("metadata") or {}
    labels: dict[str, str] = metadata.get("labels") or {}
    if labels.get(PLATFORM_LABEL, platform) != platform:
        return False  # another Slipway's
    if labels.get(MANAGED_BY_LABEL) == MANAGER:
        return True
    return any(m.get("manager") == FIELD_MANAGER for m in metadata.get("managedFields") or ())


class KubeApi:
    """The calls the Knative engine and the in-cluster builder make, in one namespace."""

    def __init__(self, api: k8s.ApiClient, *, namespace: str, platform: str) -> None:
        self.namespace = namespace
        self.platform = platform
        self._api = api
        self._custom = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    # custom objects (Knative, Istio) ----------------------------------------------------------
    def get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist (the resource type must exist)."""
        try:
            obj: Any = self._call(
                "get",
                resource,
                name,
                lambda: self._custom.get_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    self.namespace,
                    resource.plural,
                    name,
                    _preload_content=False,
                ),
            )
        except NotFound:
            return None
        return _json(obj)

    def list_objects(self, resource: Resource, *, selector: str) -> list[dict[str, Any]]:
        found: Any = self._call(
            "list",
            resource,
            "",
            lambda: self._custom.list_namespaced_custom_object(
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                label_selector=selector,
                _preload_content=False,
            ),
        )
        return list(_json(found).get("items") or [])

    def apply(self, resource: Resource, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `manifest`; refuse (Conflict) if an object of its name is not ours."""
        name = str(manifest["metadata"]["name"])
        existing = self.get(resource, name)
        if existing is not None and not owned(existing, platform=self.platform):
            raise Conflict(
                f"{resource.qualified} {name!r} already exists in namespace {self.namespace} "
                "and was not created by this Slipway (no app.kubernetes.io/managed-by=slipway "
                f"label for platform {self.platform!r}); Slipway does not overwrite it: delete "
                "it, or deploy under another service name"
            )
        verb = "patch" if existing is not None else "patch (and create)"
        manifest = with_annotations_map(manifest)
        result: Any = self._call(
            verb,
            resource,
            name,
            lambda: self._custom.patch_namespaced_custom_object(
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                name,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True if existing is not None else None,
                _content_type=APPLY_PATCH,
                # The client maps no type to 201 (apply that created the object): read it raw.
                _preload_content=False,
            ),
        )
        return _json(result)

    def create(self, resource: Resource, manifest: dict[str, Any]) -> bool:
        """Create the object (POST); False if Slipway's object of that name already exists.

        For objects that are written once and never updated (build Jobs): RBAC needs only
        `create`, and a retried build of the same id does not make a second Job.
        """
        name = str(manifest["metadata"]["name"])
        try:
            self._call(
                "create",
                resource,
                name,
                lambda: self._custom.create_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    self.namespace,
                    resource.plural,
                    manifest,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                ),
            )
        except Conflict:
            existing = self.get(resource, name)
            if existing is not None and owned(existing, platform=self.platform):
                return False
            raise Conflict(
                f"{resource.qualified} {name!r} already exists in namespace {self.namespace} "
                "and was not created by this Slipway; delete it to retry"
            ) from None
        return True

    def delete(self, resource: Resource, name: str) -> bool:
        """Delete the object if it is ours; False if there was nothing (of ours) to delete."""
        existing = self.get(resource, name)
        if existing is None or not owned(existing, platform=self.platform):
            return False
        try:
            self._call(
                "delete",
                resource,
                name,
                lambda: self._custom.delete_namespaced_custom_object(
                    resource.group, resource.version, self.namespace, resource.plural, name
                ),
            )
        except NotFound:
            return False
        return True

    def create_secret(self, manifest: dict[str, Any]) -> bool:
        """Create a Secret (a build's secrets, owned by its Job); False if it exists already."""
        name = str(manifest["metadata"]["name"])
        body: Any = manifest  # the client serialises a dict as it is
        try:
            self._call(
                "create",
                SECRETS,
                name,
                lambda: self._core.create_namespaced_secret(
                    self.namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
                ),
            )
        except Conflict:
            return False
        return True

    # pods (build Jobs' pods and logs; metadata callers) ---------------------------------------
    def list_pods(self, *, selector: str, field_selector: str = "") -> list[dict[str, Any]]:
        pods: Any = self._call(
            "list",
            PODS,
            "",
            lambda: self._core.list_namespaced_pod(
                self.namespace,
                label_selector=selector,
                field_selector=field_selector or None,
                _preload_content=False,
            ),
        )
        return list(_json(pods).get("items") or [])

    def follow_log(self, pod: str, *, container: str) -> Iterator[str]:
        """Lines of a container's log as it writes them, until it exits."""
        response: Any = self._call(
            "get",
            POD_LOGS,
            pod,
            lambda: self._core.read_namespaced_pod_log(
                pod, self.namespace, container=container, follow=True, _preload_content=False
            ),
        )
        pending = b""
        try:
            for chunk in response.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
        except urllib3.exceptions.HTTPError as e:
            raise Unavailable(f"the log stream of pod {pod} broke off: {e}") from e
        finally:
            response.release_conn()
        if pending:
            yield pending.decode("utf-8", errors="replace")

    def open_log(
        self,
        pod: str,
        *,
        container: str,
        follow: bool,
        since_seconds: int | None = None,
        tail_lines: int | None = None,
    ) -> Any:
        """A container's log with timestamps, as an unread urllib3 response: the caller streams
        it and closes it (`knative.logs`)."""
        return self._call(
            "get",
            POD_LOGS,
            pod,
            lambda: self._core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=container,
                follow=follow,
                timestamps=True,
                since_seconds=since_seconds,
                tail_lines=tail_lines,
                _preload_content=False,
            ),
        )

    # error translation ------------------------------------------------------------------------
    def _call(self, verb: str, resource: Resource, name: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ApiException as e:
            raise self._translate(e, verb=verb, resource=resource, name=name) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Unavailable(
                f"the Kubernetes API server at {self.host} is not reachable ({e}): is the "
                "cluster up, and do SLIPWAY_KUBECONFIG or the in-cluster config point at it?"
            ) from e

    def _translate(
        self, e: ApiException, *, verb: str, resource: Resource, name: str
    ) -> SlipwayError:
        status = _status_body(e.body)
        message = str(status.get("message") or e.reason or "")
        what = f"{resource.qualified} {name!r}" if name else resource.qualified
        if e.status == 404:
            details: dict[str, Any] = status.get("details") or {}
            if name and details.get("name") == name:
                return NotFound(f"{what} not found in namespace {self.namespace}")
            return Unavailable(
                f"{resource.installed_by} is not installed in the cluster: the API server does "
                f"not serve {resource.qualified} ({resource.group or 'core'}/{resource.version}). "
                f"Install {resource.installed_by} (see the README, 'Kubernetes and Knative')"
            )
        if e.status == 403:
            return Forbidden(
                forbidden_message(
                    verb=verb, resource=resource, namespace=self.namespace, api_message=message
                ),
                verb=refused_verb(attempted=verb, api_message=message),
                resource=resource.qualified,
            )
        if e.status == 401:
            return Unavailable(
                f"the Kubernetes API server rejected Slipway's credentials (401: {message}); "
                "check the kubeconfig or the service account token"
            )
        if e.status == 409:
            return Conflict(f"{what}: {message}")
        if e.status in (400, 422):
            return InvalidSpec(f"the cluster refused {what}: {message}")
        return Unavailable(f"Kubernetes answered {e.status} to {verb} {what}: {message}")


def with_annotations_map(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` with `metadata.annotations` present, `{}` when it has none.

    Admission webhooks add annotations that no field manager owns (Knative's
    `serving.knative.dev/creator` and `lastModifier`). When an apply drops the last annotation
    Slipway owned (a private service made public) and sends no `annotations` map at all, server-side
    apply removes the whole map, theirs too, and Knative's webhook refuses the Service ("annotation
    value is immutable"). An empty map keeps it: only Slipway's own keys go."""
    metadata: dict[str, Any] = manifest.get("metadata") or {}
    if "annotations" in metadata:
        return manifest
    return {**manifest, "metadata": {**metadata, "annotations": {}}}


def _status_body(body: object) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _json(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (`_preload_content=False`) urllib3 response."""
    data = json.loads(response.data or b"{}")
    return data if isinstance(data, dict) else {}
