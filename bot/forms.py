"""The request form's content: which resources a person may ask for, and duration choices."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.usecases import Clearance, snapshot_for
from engine.access_request import AccessRequest
from engine.drafts import RequestDraft
from engine.durations import format_duration
from engine.eligibility import may_request
from engine.policy import Resource
from engine.policy_fields import RISK_ORDER

# The inputs of the request form on every chat, by the names their templates give them.
FORM_FIELDS = ("resource", "duration", "justification", "ticket")
_PRESETS = [
    timedelta(minutes=m) for m in (15, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080, 20160)
]
_RISK_LABELS = {
    "low": "Low risk",
    "medium": "Medium risk",
    "high": "High risk",
    "critical": "Critical",
}


def spoken_duration(value: timedelta) -> str:
    """``1 hour``, ``30 minutes``, ``2 days`` for option labels (the value stays ``1h``)."""
    seconds = int(value.total_seconds())
    for size, unit in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return format_duration(value)


def duration_options(resource: Resource) -> list[dict[str, str]]:
    """Presets up to the resource's cap, always including its default and its max."""
    choices = {d for d in _PRESETS if d <= resource.duration.max}
    choices |= {resource.duration.default, resource.duration.max}
    return [{"value": format_duration(d), "label": spoken_duration(d)} for d in sorted(choices)]


async def requestable(clearance: Clearance, requester: str) -> list[Resource]:
    """Resources this person may request under the current policy, in policy order."""
    policy = clearance.policy
    out = []
    for resource in policy.resources:
        directory = await snapshot_for(clearance.directory, policy, resource, requester)
        if may_request(requester.lower(), resource, directory) is None:
            out.append(resource)
    return out


def resource_view(resource: Resource) -> dict[str, Any]:
    return {
        "id": resource.id,
        "name": resource.name,
        "risk": resource.risk,
        "description": resource.description,
        "duration_options": duration_options(resource),
        "default_duration": format_duration(resource.duration.default),
        "max_duration": format_duration(resource.duration.max),
        "ticket_pattern": resource.justification.ticket,
        "min_justification": resource.justification.min_length,
    }


def form_data(
    resources: list[Resource],
    selected_id: str | None,
    prefill: dict[str, str] | None = None,
    private_metadata: str = "",
) -> dict[str, Any]:
    """Data for the request form template: resources grouped by risk, the chosen one."""
    groups = [
        {
            "risk": tier,
            "label": _RISK_LABELS[tier],
            "resources": [resource_view(r) for r in resources if r.risk == tier],
        }
        for tier in RISK_ORDER
        if any(r.risk == tier for r in resources)
    ]
    selected = next((r for r in resources if r.id == selected_id), None)
    return {
        "resources": groups,
        "selected": resource_view(selected) if selected else None,
        "prefill": {"justification": "", "ticket": "", "duration": "", **(prefill or {})},
        "private_metadata": private_metadata,
    }


async def request_form(
    clearance: Clearance, requester: str, selected_id: str | None, prefill: dict[str, str]
) -> dict[str, Any]:
    """Form data for what ``requester`` may request, with ``selected_id`` chosen if they may."""
    return form_data(await requestable(clearance, requester), selected_id, prefill)


def extension_prefill(request: AccessRequest) -> dict[str, str]:
    """What the form starts with when Extend asks for more time as a new request."""
    return {"justification": f"Extension of {request.id}: {request.justification}"[:2000]}


def request_draft(requester: str, values: Mapping[str, str]) -> RequestDraft:
    """The draft a submitted request form stands for; an empty optional input is absent."""
    return RequestDraft(
        requester=requester,
        resource_id=values.get("resource", ""),
        duration=values.get("duration") or None,
        justification=values.get("justification", ""),
        ticket=values.get("ticket") or None,
    )
