"""What a message shows about a request, as plain data for the templates (no wording here).

The same data feeds Slack Block Kit and Teams Adaptive Card templates. Names come from
the directory; times are given as Unix timestamps so each surface formats them its way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.access_request import AccessRequest, Status
from engine.directory import Person, workload_person
from engine.durations import format_duration
from engine.eligibility import may_decide
from engine.policy import Policy
from engine.workload_policy import is_workload, workload_id
from message_templates import wording

RISK_EMOJI = {
    "low": ":large_green_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}


# How far back an approval card counts the requester's earlier requests for the resource.
HISTORY_WINDOW = timedelta(days=90)


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


@dataclass(frozen=True)
class History:
    """How often the requester asked for the resource before, as approvers are shown it."""

    previous: int = 0  # earlier requests for the resource within HISTORY_WINDOW
    last_ended: datetime | None = None  # when the most recent earlier one that ended, ended


def history_of(request: AccessRequest, theirs: Iterable[AccessRequest], now: datetime) -> History:
    """The requester's history for ``request``'s resource, from their requests newest first
    (``Store.find(requester=...)``): those made before it, counted over the last 90 days."""
    earlier = [
        r
        for r in theirs
        if r.resource_id == request.resource_id
        and r.id != request.id
        and r.created_at <= request.created_at
    ]
    since = now - HISTORY_WINDOW
    return History(
        previous=sum(1 for r in earlier if r.created_at >= since),
        last_ended=next((r.ended_at for r in earlier if r.ended_at is not None), None),
    )


def _ends_at(request: AccessRequest) -> datetime | None:
    """When the access ends: its expiry once granted. Access granted at once (break-glass,
    auto) that the connector has not confirmed yet ends no earlier than its request plus its
    duration, which an alert sent before the grant landed shows as "about"."""
    if request.expires_at is not None:
        return request.expires_at
    if request.status.is_open and request.approval_mode in ("break_glass", "auto"):
        return request.created_at + request.duration
    return None


def _break_glass_refused(request: AccessRequest, policy: Policy) -> dict[str, Any] | None:
    """Why a break-glass ask went to the approvers, with the limit it reached (as the policy
    sets it now; None when the policy no longer has one)."""
    if request.break_glass_refused is None:
        return None
    resource = policy.resource(request.resource_id)
    limit = resource.break_glass.limit if resource and resource.break_glass else None
    return {
        "reason": request.break_glass_refused,
        "count": limit.count if limit else None,
        "per": limit.per if limit else None,
    }


def person_view(email: str | None, people: Mapping[str, Person]) -> dict[str, Any]:
    """A person as templates show them: name, email, chat ids (None-safe)."""
    if not email:
        return {"email": "", "name": "", "slack_id": None, "teams_id": None}
    person = people.get(email.lower())
    return {
        "email": email,
        "name": person.name if person else email,
        "slack_id": person.slack_id if person else None,
        "teams_id": person.teams_id if person else None,
    }


def request_view(
    request: AccessRequest,
    policy: Policy,
    people: Mapping[str, Person],
    now: datetime,
    viewer: str | None = None,
    history: History = History(),
) -> dict[str, Any]:
    """Everything a card, DM or home tab may show about one request, for one viewer."""
    resource = policy.resource(request.resource_id)
    workload = (
        policy.workload(workload_id(request.requester)) if is_workload(request.requester) else None
    )
    requester = workload_person(workload) if workload else people.get(request.requester)
    stage = request.stage
    viewer = viewer.lower() if viewer else None
    decided_here = bool(
        stage
        and viewer
        and any(d.approver == viewer and d.stage == stage.index for d in request.decisions)
    )
    can_decide = bool(viewer) and may_decide(request, viewer or "", policy) is None
    remaining = (request.expires_at - now).total_seconds() if request.expires_at else None
    return {
        "id": request.id,
        "status": request.status.value,
        "status_label": wording("labels", "status", value=request.status.value),
        "is_pending": request.status is Status.PENDING,
        "is_open": request.status.is_open,
        "is_active": request.status is Status.ACTIVE,
        "is_final": request.status.is_final,
        "resource": {
            "id": request.resource_id,
            "name": resource.name if resource else request.resource_id,
            "risk": resource.risk if resource else "unknown",
            "risk_emoji": RISK_EMOJI.get(resource.risk, ":white_circle:")
            if resource
            else ":white_circle:",
            "description": resource.description if resource else "",
        },
        "requester": (
            {**person_view(request.requester, people), "name": requester.name}
            if workload and requester
            else person_view(request.requester, people)
        ),
        # A workload asks: which one, proven by which token subject, and who answers for it.
        "workload": (
            {
                "id": workload.id,
                "subject": request.origin.get("subject", ""),
                "issuer": request.origin.get("issuer", workload.issuer),
                "owner": person_view(workload.owner, people),
            }
            if workload
            else None
        ),
        "requester_manager": person_view(requester.manager if requester else None, people),
        "principal": request.principal,
        "duration": format_duration(request.duration),
        "justification": request.justification,
        "ticket": request.ticket or "",
        "break_glass": request.break_glass,
        "break_glass_refused": _break_glass_refused(request, policy),
        "approval_mode": request.approval_mode,
        "created_ts": _ts(request.created_at),
        "granted_ts": _ts(request.granted_at),
        "expires_ts": _ts(request.expires_at),
        "ended_ts": _ts(request.ended_at),
        "ends_ts": _ts(_ends_at(request)),
        "time_left": format_duration_left(remaining),
        "self_extended": format_duration(request.self_extended) if request.self_extended else "",
        "ended_by": person_view(request.ended_by, people)
        if request.ended_by != "clearance"
        else None,
        "end_reason": request.end_reason or "",
        "failure": request.failure or "",
        "stage_count": request.stage_count,
        "stage": (
            {
                "index": stage.index,
                "number": stage.index + 1,
                "label": stage.label,
                "required": stage.required,
                "approvals": len(request.approvals_in(stage.index)),
                "approvers": [person_view(a, people) for a in stage.approvers],
                "fallback": stage.fallback,
                "started_ts": _ts(stage.started_at),
                "deadline_ts": _ts(request.pending_deadline),
            }
            if stage
            else None
        ),
        "decisions": [
            {
                "stage_number": d.stage + 1,
                "approver": person_view(d.approver, people),
                "outcome": d.outcome,
                "reason": d.reason,
                "ts": _ts(d.at),
            }
            for d in request.decisions
        ],
        "can_decide": can_decide,
        "viewer_decided": decided_here,
        "previous_requests": history.previous,
        "history_days": HISTORY_WINDOW.days,
        "previous_ended_ts": _ts(history.last_ended),
        "policy_version": request.policy_version[:12],
    }


def format_duration_left(seconds: float | None) -> str:
    """Time left as a policy-style duration, to the minute ('' when not granted)."""
    if seconds is None:
        return ""
    if seconds <= 0:
        return "ended"
    return format_duration(timedelta(seconds=max(60, int(seconds) // 60 * 60)))
