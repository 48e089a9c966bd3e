"""`slipway domains`: custom hosts for services (Knative DomainMappings) and their certificates.

`map` sends the same DomainMapping document `replace` reads from a file; the API decides
whether the host may be taken. `print_tls` is the part of `services describe` that shows a
service's custom domains and, with HTTPS on, each host's certificate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.formats import Format, Output, print_rows
from pipeline.cli.output import call, fail, out
from pipeline.core.errors import SlipwayError
from pipeline.spec.domainmappings import manifest, parse_domain_mapping


def map_domain(
    host: str,
    service: Annotated[str, typer.Option("--service", "-s", help="The service to route to.")],
) -> None:
    """Route HOST to a service's traffic (and, with HTTPS on, give it a certificate)."""
    done = call("PUT", f"/v1/domainmappings/{host}", json=manifest(host=host, service=service))
    _print_mapped(done)


def replace(
    file: Annotated[
        Path, typer.Argument(help="A serving.knative.dev/v1beta1 DomainMapping (YAML/JSON).")
    ],
) -> None:
    """Create a mapping from a Knative DomainMapping document."""
    try:
        text = file.read_text()
        host = parse_domain_mapping(text).host
    except OSError as e:
        raise fail(f"cannot read {file}: {e.strerror}") from e
    except SlipwayError as e:
        raise fail(f"{file}: {e.message}") from e
    done = call(
        "PUT",
        f"/v1/domainmappings/{host}",
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    _print_mapped(done)


def unmap(host: str) -> None:
    """Stop routing HOST."""
    done = call("DELETE", f"/v1/domainmappings/{host}")
    out.print(f"Unmapped {done['deleted']} (was {done['service']})", highlight=False)


def list_domains(output: Output = Format.table) -> None:
    rows = call("GET", "/v1/domainmappings")
    table = Table("HOST", "SERVICE", "URL", "CERTIFICATE", box=None)
    for m in rows:
        table.add_row(m["host"], m["service"], m["url"], _cert_state(m["certificate"]))
    print_rows(rows, output=output, table=table)


def certificates(output: Output = Format.table) -> None:
    """The certificates HAProxy serves, and what became of each one's last order."""
    rows = call("GET", "/v1/certificates")
    table = Table("NAME", "ISSUER", "STATUS", "VALID UNTIL", "REASON", box=None)
    for c in rows:
        table.add_row(c["name"], c["issuer"], c["status"], _day(c["not_after"]), c["reason"])
    print_rows(rows, output=output, table=table)


def renew(name: str) -> None:
    """Order a new certificate for NAME now (a host, or `*.<domain>`); no reload."""
    done = call("POST", f"/v1/certificates/{name}/renew")
    out.print(f"Renewing {done['name']}: the new certificate replaces it once issued")


def print_tls(view: dict[str, Any]) -> None:
    """A service's custom domains and its hosts' certificates (in `services describe`)."""
    if view.get("domains"):
        out.print(f"Domains: {', '.join(view['domains'])}", highlight=False)
    if not view.get("tls"):
        return
    out.print("TLS:")
    for entry in view["tls"]:
        cert = entry["certificate"]
        out.print(f"  {entry['url']}  {_cert_state(cert)}", highlight=False)
        if cert and cert["status"] == "Failed":
            out.print(f"    [red]{cert['reason']}[/]: {cert['message']}", highlight=False)


def _print_mapped(done: dict[str, Any]) -> None:
    state = "mapped" if done.get("created") else "already mapped"
    out.print(f"{done['host']} {state} to {done['service']}  {done['url']}", highlight=False)


def _cert_state(cert: dict[str, Any] | None) -> str:
    if cert is None:
        return "-"
    if not cert["not_after"]:
        return f"{cert['status']} ({cert['reason'] or 'ordering'})"
    return f"{cert['status']} {cert['issuer']} until {_day(cert['not_after'])}"


def _day(stamp: str | None) -> str:
    return stamp[:10] if stamp else "-"
