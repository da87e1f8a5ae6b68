"""The request form's content: which resources a person may ask for, duration choices, and
the emergency (break-glass) box where a resource offers it."""

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
FORM_FIELDS = ("resource", "duration", "justification", "ticket", "break_glass")
# What the emergency box sends when it is ticked (Slack's checkbox option, Teams' toggle).
BREAK_GLASS_ON = "true"
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


def break_glass_on(values: Mapping[str, object], key: str = "break_glass") -> bool:
    """Whether a submitted form's emergency box (or the mode it was drawn in) is ticked;
    anything but the box's own value (a missing key, a forged non-text value) is not."""
    return str(values.get(key, "")).strip().lower() == BREAK_GLASS_ON


def duration_limits(resource: Resource, break_glass: bool = False) -> tuple[timedelta, timedelta]:
    """The duration a form starts with and its cap: break-glass's cap is both, as the
    engine defaults a break-glass request to it (``engine.drafts``)."""
    if break_glass and resource.break_glass is not None:
        return resource.break_glass.max, resource.break_glass.max
    return resource.duration.default, resource.duration.max


def duration_options(resource: Resource, break_glass: bool = False) -> list[dict[str, str]]:
    """Presets up to the cap, always including the default and the cap."""
    default, cap = duration_limits(resource, break_glass)
    choices = {d for d in _PRESETS if d <= cap} | {default, cap}
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


def break_glass_view(resource: Resource) -> dict[str, Any] | None:
    """What the form says of a resource's break-glass access (None: it offers none)."""
    rule = resource.break_glass
    if rule is None:
        return None
    return {
        "max": format_duration(rule.max),
        "max_spoken": spoken_duration(rule.max),
        "limit_count": rule.limit.count if rule.limit else None,
        "limit_per": rule.limit.per if rule.limit else None,
    }


def resource_view(resource: Resource, break_glass: bool = False) -> dict[str, Any]:
    """A resource as the form shows it; with ``break_glass``, its durations are break-glass's."""
    default, cap = duration_limits(resource, break_glass)
    return {
        "id": resource.id,
        "name": resource.name,
        "risk": resource.risk,
        "description": resource.description,
        "duration_options": duration_options(resource, break_glass),
        "default_duration": format_duration(default),
        "max_duration": format_duration(cap),
        "ticket_pattern": resource.justification.ticket,
        "min_justification": resource.justification.min_length,
        "break_glass": break_glass_view(resource),
    }


def form_data(
    resources: list[Resource],
    selected_id: str | None,
    prefill: dict[str, str] | None = None,
    private_metadata: str = "",
    break_glass: bool = False,
) -> dict[str, Any]:
    """Data for the request form template: resources grouped by risk, the chosen one, and
    whether it is asked for as break-glass (only ever where the chosen one offers it)."""
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
    glass = break_glass and selected is not None and selected.break_glass is not None
    return {
        "resources": groups,
        "selected": resource_view(selected, glass) if selected else None,
        "break_glass": glass,
        "prefill": {"justification": "", "ticket": "", "duration": "", **(prefill or {})},
        "private_metadata": private_metadata,
    }


async def request_form(
    clearance: Clearance,
    requester: str,
    selected_id: str | None,
    prefill: dict[str, str],
    break_glass: bool = False,
) -> dict[str, Any]:
    """Form data for what ``requester`` may request, with ``selected_id`` chosen if they may
    (asked for as break-glass when ``break_glass`` and the resource offers it)."""
    resources = await requestable(clearance, requester)
    return form_data(resources, selected_id, prefill, break_glass=break_glass)


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
        break_glass=break_glass_on(values),
    )
