"""A request as the API shows it (``GET /api/v1/requests/{id}``, callbacks, the CLI):
plain JSON values, times in ISO 8601 UTC. Its schema is ``Request`` in the OpenAPI
document (``adapters/api/openapi.json``), which a test checks against these values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.access_request import AccessRequest
from engine.durations import format_duration
from engine.eligibility import waiting_for
from engine.policy import Policy


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def api_view(request: AccessRequest, policy: Policy) -> dict[str, Any]:
    stage = request.stage
    resource = policy.resource(request.resource_id)
    return {
        "id": request.id,
        "status": request.status.value,
        "resource": request.resource_id,
        "resource_name": resource.name if resource else request.resource_id,
        "requester": request.requester,
        "principal": request.principal,
        "duration": format_duration(request.duration),
        "justification": request.justification,
        "ticket": request.ticket,
        "created_at": _iso(request.created_at),
        "stage": (
            {"index": stage.index + 1, "of": request.stage_count, "label": stage.label}
            if stage
            else None
        ),
        "approvers_of_current_stage": list(waiting_for(request)),
        "decisions": [
            {
                "stage": d.stage + 1,
                "approver": d.approver,
                "outcome": d.outcome,
                "at": _iso(d.at),
                "reason": d.reason or None,
            }
            for d in request.decisions
        ],
        "granted_at": _iso(request.granted_at),
        "expires_at": _iso(request.expires_at),
        "ended_at": _iso(request.ended_at),
        "end_reason": request.end_reason,
        "links": {
            "self": f"/api/v1/requests/{request.id}",
            "wait": f"/api/v1/requests/{request.id}/wait",
            "cancel": f"/api/v1/requests/{request.id}/cancel",
        },
    }
