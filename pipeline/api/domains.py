"""`/v1/domainmappings` (Knative DomainMapping YAML in, mappings out) and `/v1/certificates`.

A mapping is refused when the host is taken: the bare domain, a name under the platform domain
(services and tags own those), or a host mapped to another service (`tls.hosts.mapping_refusal`).
`tls_view` is what `services describe` shows of a service's hosts and their certificates.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from pipeline.api.dependencies import ADMIN, PlatformDep
from pipeline.app.platform import Platform
from pipeline.core import names
from pipeline.core.errors import Conflict, InvalidInput, NotFound
from pipeline.core.logs import get as get_log
from pipeline.deploy.urls import public_url
from pipeline.spec.domainmappings import manifest, parse_domain_mapping, validate_host
from pipeline.store.certificates import Certificate
from pipeline.store.domains import DomainMapping
from pipeline.tls.hosts import mapping_refusal

Host = Annotated[str, Path(description="The custom host name, e.g. app.example.com.")]
CertificateName = Annotated[
    str, Path(description="The certificate's name, as `slipway domains certificates` lists it.")
]

router = APIRouter(prefix="/v1/domainmappings", tags=["domains"], dependencies=ADMIN)
certificates_router = APIRouter(prefix="/v1/certificates", tags=["domains"], dependencies=ADMIN)

MAPPING_DOCUMENT = {
    "requestBody": {
        "required": True,
        "description": "A Knative serving.knative.dev/v1beta1 DomainMapping, as YAML or JSON.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def certificate_view(cert: Certificate | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    return {
        "name": cert.name,
        "hosts": list(cert.hosts),
        "issuer": cert.issuer,
        "status": cert.status,
        "reason": cert.reason,
        "message": cert.message,
        "serial": cert.serial,
        "not_after": cert.not_after.isoformat() if cert.not_after else None,
        "renew_at": cert.renew_at.isoformat() if cert.renew_at else None,
        "retry_at": cert.retry_at.isoformat() if cert.retry_at else None,
    }


def host_url(platform: Platform, host: str) -> str:
    return public_url(host, platform.settings)


def mapping_view(platform: Platform, mapping: DomainMapping) -> dict[str, Any]:
    certs = platform.certificates
    return {
        "host": mapping.host,
        "service": mapping.service,
        "url": host_url(platform, mapping.host),
        "created": mapping.created_at.isoformat(),
        "certificate": certificate_view(certs.covering(mapping.host)) if certs else None,
        "manifest": manifest(host=mapping.host, service=mapping.service),
    }


def tls_view(platform: Platform, view: dict[str, Any]) -> dict[str, Any]:
    """A service's custom domains and, with HTTPS on, the certificate of each of its hosts."""
    service, domain = view["name"], platform.settings.domain
    mapped = [m.host for m in platform.domains.list() if m.service == service]
    hosts = [names.service_host(service, domain)]
    hosts += [names.tag_host(t["tag"], service, domain) for t in view["traffic"] if t.get("tag")]
    certs = platform.certificates
    return {
        "domains": mapped,
        "tls": [
            {
                "host": h,
                "url": host_url(platform, h),
                "certificate": certificate_view(certs.covering(h)),
            }
            for h in [*hosts, *mapped]
        ]
        if certs is not None
        else [],
    }


@router.get("")
def list_mappings(platform: PlatformDep) -> list[dict[str, Any]]:
    return [mapping_view(platform, m) for m in platform.domains.list()]


@router.get("/{host}")
def get_mapping(host: Host, platform: PlatformDep) -> dict[str, Any]:
    mapping = platform.domains.find(host)
    if mapping is None:
        raise NotFound(f"host {host!r} is not mapped: `slipway domains list` shows the mappings")
    return mapping_view(platform, mapping)


@router.put("/{host}", openapi_extra=MAPPING_DOCUMENT)
async def put_mapping(host: Host, request: Request, platform: PlatformDep) -> dict[str, Any]:
    """Map `host` to a service (`slipway domains map`): the DomainMapping document as body."""
    document = parse_domain_mapping(await request.body())
    if document.host != validate_host(host):
        raise InvalidInput(
            f"the document maps {document.host!r} but was sent to /v1/domainmappings/{host}"
        )
    platform.store.get_service(document.service)  # NotFound names the missing service
    refusal = mapping_refusal(
        document.host,
        service=document.service,
        domain=platform.settings.domain,
        services=[s.name for s in platform.store.list_services()],
        mapped={m.host: m.service for m in platform.domains.list()},
    )
    if refusal:
        raise Conflict(f"{refusal}; not mapped")
    mapping, created = platform.domains.put(host=document.host, service=document.service)
    platform.reconciler.wake()
    if created:
        get_log(component="api").info("domain_mapped", host=mapping.host, service=mapping.service)
    return {**mapping_view(platform, mapping), "created": created}


@router.delete("/{host}")
def delete_mapping(host: Host, platform: PlatformDep) -> dict[str, str]:
    mapping = platform.domains.delete(host)
    platform.reconciler.wake()
    get_log(component="api").info("domain_unmapped", host=mapping.host, service=mapping.service)
    return {"deleted": mapping.host, "service": mapping.service}


@certificates_router.get("")
def list_certificates(platform: PlatformDep) -> list[dict[str, Any]]:
    certs = platform.certificates
    known = certs.known() if certs is not None else []
    return [v for v in (certificate_view(c) for c in known) if v is not None]


@certificates_router.post("/{name}/renew")
def renew_certificate(name: CertificateName, platform: PlatformDep) -> dict[str, Any]:
    """Order a new certificate now (`slipway domains renew`); it replaces the old one without a
    reload once issued."""
    if platform.certificates is None:
        raise Conflict("HTTPS is off: set SLIPWAY_HTTPS_PORT to serve certificates")
    return certificate_view(platform.certificates.renew(name)) or {}
