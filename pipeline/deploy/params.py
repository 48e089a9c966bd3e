"""What one deploy asks for beyond its source: the shape the CLI sends and the API reads.

One model for both ends, so a flag cannot exist on one side only: the CLI turns its options into
`DeployParams` and sends `to_query()`; the API declares the same model as its query parameters
(FastAPI documents every field in the OpenAPI document from it). Build secrets are not here:
they travel in headers or the JSON body, never in a URL, because URLs get logged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    builder: str = Field("", description="dockerfile, pack or template:<name> (default: detect).")
    dockerfile: str = Field("", description="Dockerfile path in the source.")
    base_image: str = Field("", description="Base image for a build template.")
    build_arg: list[str] = Field(default_factory=list, description="NAME=value for the build.")

    def to_query(self) -> list[tuple[str, str]]:
        """Query pairs, repeatable fields repeated, unset fields left out."""
        query: list[tuple[str, str]] = []
        for key, value in self.model_dump(exclude_defaults=True).items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                text = ("1" if item else "0") if isinstance(item, bool) else str(item)
                query.append((key, text))
        return query
