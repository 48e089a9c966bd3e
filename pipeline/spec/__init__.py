"""The Knative Service spec Slipway accepts: a strict subset of `serving.knative.dev/v1`.

`slipway services replace hello.yaml` takes the same YAML Knative does; anything Slipway cannot
honour is refused by name (`...containers[0].volumeMounts: not supported by Slipway yet`), never
silently dropped. Modules, in the order a document flows through them:

    base          SpecModel (strict, known fields only) and the pydantic -> InvalidSpec mapping
    metadata      names, labels, annotations; server-written fields dropped
    autoscaling   autoscaling.knative.dev/* annotations, typed with Knative's defaults
    containers    the one container: image, env, port, resources, readiness probe
    traffic       spec.traffic rules (validate_traffic, reused by the traffic CLI)
    quantities    resource quantities and Go durations as numbers
    services      KService, parse_service, to_manifest, template_hash, default_service
    domainmappings  Knative's DomainMapping (serving.knative.dev/v1beta1): a custom host
"""

from pipeline.spec.autoscaling import AutoscalingAnnotations
from pipeline.spec.containers import (
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    Probe,
    ResourceRequirements,
    TCPSocketAction,
)
from pipeline.spec.metadata import ServiceMeta, TemplateMeta
from pipeline.spec.quantities import cpu_millicores, memory_bytes, parse_duration
from pipeline.spec.services import (
    API_VERSION,
    KService,
    RevisionSpec,
    RevisionTemplate,
    ServiceSpec,
    default_service,
    parse_service,
    template_hash,
)
from pipeline.spec.traffic import TrafficTarget, validate_traffic

__all__ = [
    "API_VERSION",
    "AutoscalingAnnotations",
    "Container",
    "ContainerPort",
    "EnvVar",
    "HTTPGetAction",
    "KService",
    "Probe",
    "ResourceRequirements",
    "RevisionSpec",
    "RevisionTemplate",
    "ServiceMeta",
    "ServiceSpec",
    "TCPSocketAction",
    "TemplateMeta",
    "TrafficTarget",
    "cpu_millicores",
    "default_service",
    "memory_bytes",
    "parse_duration",
    "parse_service",
    "template_hash",
    "validate_traffic",
]
