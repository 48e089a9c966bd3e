"""What one deploy asks for beyond its source: the shape the CLI sends and the API reads.

One model for both ends, so a flag cannot exist on one side only: the CLI turns its options into
`DeployParams` and sends `to_query()`; the API declares the same model as its query parameters
(FastAPI documents every field in the OpenAPI document from it). A JSON body (`DeployBody`)
deploys a git repository or an image instead of an uploaded archive. Build secrets are never
query parameters: they travel in headers or the JSON body, because URLs get logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.build.builders import BuildSettings
from pipeline.core.errors import InvalidInput
from pipeline.core.pairs import parse_pairs, parse_secret_ref
from pipeline.deploy.manifests import Flags, Placement
from pipeline.spec.containers import RESERVED_PORTS
from pipeline.spec.quantities import is_quantity, parse_quantity


class DeployParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(None, description="Deploy this image; no build.")
    env: list[str] = Field(default_factory=list, description="NAME=value, repeatable.")
    remove_env: list[str] = Field(default_factory=list, description="Variable to drop.")
    secret: list[str] = Field(
        default_factory=list, description="ENV=SECRET:KEY: an env var from a Slipway secret."
    )
    tag: str = Field("", description="Tag URL (<tag>--<service>) for the new revision.")
    no_traffic: bool = Field(False, description="Deploy at 0%: what serves now keeps serving.")
    concurrency: int | None = Field(None, ge=0, description="Max requests per instance (0: any).")
    timeout: int | None = Field(None, ge=1, le=3600, description="Request timeout, seconds.")
    min_instances: int | None = Field(None, ge=0, description="autoscaling min-scale.")
    max_instances: int | None = Field(None, ge=0, description="autoscaling max-scale (0: no cap).")
    allow_unauthenticated: bool | None = Field(
        None, description="true: public; false: private (invokers with a token only)."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Port requests arrive on ($PORT); default 8080."
    )
    command: list[str] | None = Field(
        None,
        description="Entrypoint, one value per word; a single empty value clears it (the "
        "image's own then applies).",
    )
    args: list[str] | None = Field(
        None, description="Arguments to the entrypoint; a single empty value clears them."
    )
    cpu: str | None = Field(None, description="CPU limit, a Kubernetes quantity: 1, 0.5, 500m.")
    memory: str | None = Field(None, description="Memory limit, a Kubernetes quantity: 128Mi, 1Gi.")
    builder: str = Field("", description="dockerfile, pack or template:<name> (default: detect).")
    dockerfile: str = Field("", description="Dockerfile path in the source.")
    base_image: str = Field("", description="Base image for a build template.")
    build_arg: list[str] = Field(default_factory=list, description="NAME=value for the build.")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """`?timeout=` means no timeout given, as it always did, not a bad number."""
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @field_validator("command", "args", mode="before")
    @classmethod
    def _one_blank_clears(cls, value: Any) -> Any:
        """`?command=` (one empty value) is "no command": the image's entrypoint runs."""
        return [] if value == [""] else value

    @field_validator("port")
    @classmethod
    def _not_reserved(cls, port: int | None) -> int | None:
        if port in RESERVED_PORTS:
            raise ValueError(f"port {port} is reserved by Knative's queue-proxy; use e.g. 8080")
        return port

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None, info: ValidationInfo) -> str | None:
        example = "'1', '0.5' or '500m'" if info.field_name == "cpu" else "'128Mi' or '1Gi'"
        if value is not None and (not is_quantity(value) or parse_quantity(value) <= 0):
            raise ValueError(
                f"{value!r} is not a positive Kubernetes quantity; write e.g. {example}"
            )
        return value

    def to_query(self) -> list[tuple[str, str]]:
        """Query pairs, repeatable fields repeated, unset fields left out."""
        query: list[tuple[str, str]] = []
        for key, value in self.model_dump(exclude_defaults=True).items():
            if value == []:  # an emptied --command/--args: one blank value says so
                query.append((key, ""))
            values = value if isinstance(value, list) else [value]
            for item in values:
                text = ("1" if item else "0") if isinstance(item, bool) else str(item)
                query.append((key, text))
        return query

    def env_vars(self) -> dict[str, str]:
        return dict(parse_pairs(self.env, what="env"))

    def placement(self) -> Placement:
        return Placement.of(None, tag=self.tag, no_traffic=self.no_traffic)

    def flags(self) -> Flags:
        public = self.allow_unauthenticated
        return Flags(
            remove_env=tuple(self.remove_env),
            secret_env=tuple(parse_secret_ref(v) for v in self.secret),
            concurrency=self.concurrency,
            timeout_s=self.timeout,
            min_scale=self.min_instances,
            max_scale=self.max_instances,
            private=None if public is None else not public,
            port=self.port,
            command=None if self.command is None else tuple(self.command),
            args=None if self.args is None else tuple(self.args),
            cpu=self.cpu,
            memory=self.memory,
        )

    def build_settings(self, body: DeployBody, *, secrets: Sequence[str]) -> BuildSettings:
        """Builder, Dockerfile and build args from the JSON body, else the query; `secrets` are
        `NAME=value` headers, added to the body's."""
        args = parse_pairs(self.build_arg, what="build arg")
        args += parse_pairs(_pairs(body.build_args), what="build_args")
        found = parse_pairs(secrets, what="build secret")
        found += parse_pairs(_pairs(body.build_secrets), what="build_secrets")
        return BuildSettings(
            builder=body.builder or self.builder,
            dockerfile=body.dockerfile or self.dockerfile,
            base_image=body.base_image or self.base_image,
            build_args=args,
            secrets=found,
        )


class GitSource(BaseModel):
    url: str = Field("", description="Repository URL to clone.")
    ref: str = Field("", description="Branch, tag or sha (default: HEAD).")


class DeployBody(BaseModel):
    """The JSON body of a deploy: a git repository or an image, and build settings.

    Fields the query also has win here; unknown fields are ignored, as they always were.
    """

    model_config = ConfigDict(coerce_numbers_to_str=True)

    git: GitSource | None = Field(None, description="Clone and build this repository.")
    image: str | None = Field(None, description="Deploy this image; no build.")
    builder: str = Field("", description="dockerfile, pack or template:<name>.")
    dockerfile: str = Field("", description="Dockerfile path in the source.")
    base_image: str = Field("", description="Base image for a build template.")
    build_args: dict[str, str] = Field(default_factory=dict, description="NAME: value.")
    build_secrets: dict[str, str] = Field(
        default_factory=dict, description="NAME: value; kept out of logs and the image."
    )


def parse_body(raw: bytes) -> DeployBody:
    """A JSON deploy body; a body that is not an object counts as `{}`."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError as e:
        raise InvalidInput(f"the JSON body does not parse: {e}") from e
    try:
        return DeployBody.model_validate(data if isinstance(data, dict) else {})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["loc"][0] in ("build_args", "build_secrets"):
            raise InvalidInput(f'"{first["loc"][0]}" must be an object of NAME: value') from None
        raise InvalidInput(f"the JSON body's {where}: {first['msg']}") from None


def _pairs(values: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]
