"""`spec.template.spec.containers[0]`: the one container of a revision, as Knative describes it.

Slipway runs what this says (image, command, env, port, limits, readiness) with the Knative
container contract on top: the platform sets PORT and K_* itself, so users may not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.core.pairs import is_env_name
from pipeline.spec.base import NOT_YET, SpecModel, SpecProblem, not_yet
from pipeline.spec.quantities import is_quantity, parse_quantity

DEFAULT_PORT = 8080
# Set by the platform on every instance (Knative rejects them too).
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
# Ports Knative's queue-proxy owns; refused so the same YAML also runs on Knative.
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091})
PORT_NAMES = ("h2c", "http1")
RESOURCE_NAMES = ("cpu", "memory")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The distribution reference grammar: [domain[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_HOST_PART}(?:\.{_HOST_PART})*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


class SecretKeyRef(SpecModel):
    """A key of a Slipway secret (`slipway secrets set NAME KEY=VALUE`)."""

    unsupported_fields = not_yet("optional")

    name: str
    key: str

    @field_validator("name")
    @classmethod
    def _check_secret_name(cls, name: str) -> str:
        if not _DNS1123_LABEL.fullmatch(name):
            raise SpecProblem(f"invalid secret name {name!r}: lowercase letters, digits and '-'")
        return name


class EnvVarSource(SpecModel):
    unsupported_fields = not_yet(
        "configMapKeyRef", "fieldRef", "resourceFieldRef",
        hint="only secretKeyRef is available",
    )  # fmt: skip

    secret_key_ref: SecretKeyRef = Field(alias="secretKeyRef")


class EnvVar(SpecModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = Field(default=None, alias="valueFrom")

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise SpecProblem("set either 'value' or 'valueFrom', not both")
        return self

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not is_env_name(name):
            raise SpecProblem(
                f"invalid variable name {name!r}: use letters, digits and _, not starting with a "
                "digit (no '=', spaces or newlines: the name must reach the process as written)"
            )
        if name in RESERVED_ENV:
            raise SpecProblem(
                f"{name} is set by the platform on every instance (Knative's container "
                "contract); choose another name"
            )
        return name


class ContainerPort(SpecModel):
    unsupported_fields = not_yet("hostIP", "hostPort")

    container_port: int = Field(alias="containerPort", ge=1, le=65535)
    name: str | None = None
    protocol: str | None = None

    @field_validator("container_port")
    @classmethod
    def _check_port(cls, port: int) -> int:
        if port in RESERVED_PORTS:
            raise SpecProblem(f"port {port} is reserved by Knative's queue-proxy; use e.g. 8080")
        return port

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and name not in PORT_NAMES:
            raise SpecProblem(
                f"expected 'h2c' (HTTP/2 without TLS) or 'http1', or no name; got {name!r}"
            )
        return name

    @field_validator("protocol")
    @classmethod
    def _check_protocol(cls, protocol: str | None) -> str | None:
        if protocol is not None and protocol != "TCP":
            raise SpecProblem(f"only 'TCP' is supported, got {protocol!r}")
        return protocol


class HTTPGetAction(SpecModel):
    unsupported_fields = not_yet("host", "httpHeaders")

    path: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    scheme: str | None = None

    @field_validator("scheme")
    @classmethod
    def _check_scheme(cls, scheme: str | None) -> str | None:
        if scheme is not None and scheme != "HTTP":
            raise SpecProblem(f"only 'HTTP' is supported, got {scheme!r}")
        return scheme


class TCPSocketAction(SpecModel):
    unsupported_fields = not_yet("host")

    port: int | None = Field(default=None, ge=0, le=65535)


class Probe(SpecModel):
    """A readiness probe; without one an instance is ready when it accepts TCP on its port."""

    unsupported_fields = not_yet("exec", "grpc", hint="use httpGet or tcpSocket")

    http_get: HTTPGetAction | None = Field(default=None, alias="httpGet")
    tcp_socket: TCPSocketAction | None = Field(default=None, alias="tcpSocket")
    initial_delay_seconds: int | None = Field(
        default=None, alias="initialDelaySeconds", ge=0, le=3600
    )
    # 0 is Knative's "probe aggressively until ready", its default for readiness.
    period_seconds: int | None = Field(default=None, alias="periodSeconds", ge=0, le=3600)
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds", ge=0, le=3600)
    failure_threshold: int | None = Field(default=None, alias="failureThreshold", ge=0, le=1000)
    success_threshold: int | None = Field(default=None, alias="successThreshold", ge=1, le=1000)

    @model_validator(mode="after")
    def _one_action(self) -> Probe:
        if self.http_get is not None and self.tcp_socket is not None:
            raise SpecProblem("set either httpGet or tcpSocket, not both")
        return self

    @property
    def port(self) -> int | None:
        action = self.http_get or self.tcp_socket
        return action.port if action is not None and action.port else None


class ResourceRequirements(SpecModel):
    unsupported_fields = not_yet("claims")

    limits: dict[str, str] = Field(default_factory=dict)
    requests: dict[str, str] = Field(default_factory=dict)

    @field_validator("limits", "requests", mode="before")
    @classmethod
    def _numbers_as_strings(cls, value: Any) -> Any:
        # `cpu: 1` is as valid as `cpu: "1"` (int-or-string); keep one spelling.
        if isinstance(value, dict):
            return {
                key: str(amount)
                if isinstance(amount, int | float) and not isinstance(amount, bool)
                else amount
                for key, amount in value.items()
            }
        return value

    @field_validator("limits", "requests")
    @classmethod
    def _check_quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for key, amount in value.items():
            if key not in RESOURCE_NAMES:
                raise SpecProblem(f"{NOT_YET}: Slipway limits only cpu and memory", path=key)
            if not is_quantity(amount):
                raise SpecProblem(
                    f"{amount!r} is not a quantity; write e.g. '500m' or '1' (cpu), "
                    "'256Mi' or '1Gi' (memory)",
                    path=key,
                )
        return value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for key, amount in self.requests.items():
            limit = self.limits.get(key)
            if limit is not None and parse_quantity(amount) > parse_quantity(limit):
                raise SpecProblem(
                    f"request {amount!r} is above the limit {limit!r}", path=f"requests.{key}"
                )
        return self


class Container(SpecModel):
    unsupported_fields: ClassVar[Mapping[str, str]] = {
        **not_yet(
            "envFrom",
            "imagePullPolicy",
            "livenessProbe",
            "startupProbe",
            "securityContext",
            "terminationMessagePath",
            "terminationMessagePolicy",
        ),
        **not_yet("volumeMounts", hint="revisions are stateless; keep state in a database"),
    }

    name: str | None = None
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str | None = Field(default=None, alias="workingDir")
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: ResourceRequirements | None = None
    readiness_probe: Probe | None = Field(default=None, alias="readinessProbe")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and (len(name) > 63 or not _DNS1123_LABEL.fullmatch(name)):
            raise SpecProblem(
                f"invalid container name {name!r}: use lowercase letters, digits and '-' "
                "(a DNS-1123 label), e.g. 'user-container'"
            )
        return name

    @field_validator("image")
    @classmethod
    def _check_image(cls, image: str | None) -> str | None:
        if image is not None and not IMAGE_REFERENCE.fullmatch(image):
            raise SpecProblem(
                f"{image!r} is not an image reference; write e.g. "
                "'registry.example.com/team/hello:1.0' or 'hello@sha256:<digest>'"
            )
        return image

    @field_validator("env")
    @classmethod
    def _unique_env(cls, env: list[EnvVar]) -> list[EnvVar]:
        seen: set[str] = set()
        for index, var in enumerate(env):
            if var.name in seen:
                raise SpecProblem(f"{var.name} is set twice", path=f"[{index}].name")
            seen.add(var.name)
        return env

    @field_validator("ports")
    @classmethod
    def _one_port(cls, ports: list[ContainerPort]) -> list[ContainerPort]:
        if len(ports) > 1:
            raise SpecProblem(
                f"at most one port: requests reach a revision on a single port, got {len(ports)}"
            )
        return ports

    @model_validator(mode="after")
    def _check_contract(self, info: ValidationInfo) -> Container:
        require_image = bool(info.context and info.context.get("require_image"))
        if require_image and self.image is None:
            raise SpecProblem(
                "required field is missing: 'slipway services replace' runs an existing image; "
                "give one, or build from source with 'slipway deploy --source'",
                path="image",
            )
        probe_port = self.readiness_probe.port if self.readiness_probe else None
        if probe_port is not None and probe_port != self.port:
            probe = self.readiness_probe
            action = "httpGet" if probe is not None and probe.http_get else "tcpSocket"
            raise SpecProblem(
                f"the probe must use the container's port {self.port} (or omit port), "
                f"got {probe_port}",
                path=f"readinessProbe.{action}.port",
            )
        return self

    @property
    def port(self) -> int:
        """The port requests arrive on ($PORT inside the instance)."""
        return self.ports[0].container_port if self.ports else DEFAULT_PORT

    @property
    def http2(self) -> bool:
        return bool(self.ports) and self.ports[0].name == "h2c"

    @property
    def env_map(self) -> dict[str, str]:
        return {var.name: var.value or "" for var in self.env if var.value_from is None}
