"""`/v1/deliveries`: webhook deliveries and what came of them (built, ignored and why, failed).

The webhooks themselves are served by `webhooks.routes`, authenticated by signature.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pipeline.api.dependencies import ADMIN, PlatformDep

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"], dependencies=ADMIN)


@router.get("")
def list_deliveries(platform: PlatformDep) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "provider": d.provider,
            "event": d.event,
            "received": d.received_at.isoformat(),
            "service": d.service,
            "action": d.action,
            "outcome": d.outcome,
            "build": d.build_id,
        }
        for d in platform.deliveries.recent()
    ]
