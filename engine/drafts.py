"""A request as someone filled it in, and its validation against the policy, field by field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from engine.access_request import PrincipalKind
from engine.directory import DirectoryView
from engine.durations import DurationError, format_duration, parse_duration
from engine.eligibility import may_act_for, may_request
from engine.policy import JUSTIFICATION_HARD_LIMIT, Policy, Resource
from engine.refusals import Refusal, Refused

TICKET_MAX = 100


@dataclass(frozen=True)
class RequestDraft:
    """What someone filled in on the request form (or sent through the API)."""

    requester: str
    resource_id: str
    justification: str
    duration: str | timedelta | None = None
    ticket: str | None = None
    principal: str | None = None
    principal_kind: PrincipalKind = "human"
    break_glass: bool = False
    origin: dict[str, str] = field(default_factory=dict)  # see AccessRequest.origin


@dataclass(frozen=True)
class ValidDraft:
    """A draft the policy accepts, with its values normalised."""

    resource: Resource
    duration: timedelta
    justification: str
    ticket: str | None


def validate_draft(draft: RequestDraft, policy: Policy, directory: DirectoryView) -> ValidDraft:
    """Check a draft against the policy; raise Refused with every problem, field by field."""
    requester = draft.requester.lower()
    resource = policy.resource(draft.resource_id)
    if resource is None:
        known = ", ".join(r.id for r in policy.resources)
        raise Refused(
            Refusal("unknown_resource", "resource", resource=draft.resource_id, known=known)
        )
    refusals: list[Refusal] = []
    if (why := may_request(requester, resource, directory)) is not None:
        refusals.append(Refusal("not_allowed", "resource", why=why))
    principal = (draft.principal or requester).lower()
    if (why_not := may_act_for(requester, principal, resource, policy)) is not None:
        refusals.append(why_not)
    duration = _duration(draft, resource, refusals)
    justification = draft.justification.strip()
    ticket = (draft.ticket or "").strip() or None
    refusals += _justification_problems(resource, justification, ticket)
    if refusals:
        raise Refused(*refusals)
    return ValidDraft(resource, duration, justification, ticket)


def _duration(draft: RequestDraft, resource: Resource, refusals: list[Refusal]) -> timedelta:
    """The duration asked for (the default when blank), refusals appended for a bad one."""
    cap = resource.duration.max
    if draft.break_glass:
        if resource.break_glass is None:
            refusals.append(Refusal("break_glass_not_allowed", "resource", resource=resource.name))
        else:
            cap = resource.break_glass.max
    duration = resource.duration.default if not draft.break_glass else cap
    if isinstance(draft.duration, timedelta):
        duration = draft.duration
    elif draft.duration is not None and draft.duration.strip():
        try:
            duration = parse_duration(draft.duration)
        except DurationError as exc:
            refusals.append(Refusal("bad_duration", "duration", error=str(exc)))
    if duration <= timedelta(0):
        refusals.append(Refusal("bad_duration", "duration", error=None))
    elif duration > cap:
        refusals.append(
            Refusal(
                "duration_over_max",
                "duration",
                cap=format_duration(cap),
                asked=format_duration(duration),
                resource=resource.name,
                break_glass=draft.break_glass,
            )
        )
    return duration


def _justification_problems(
    resource: Resource, justification: str, ticket: str | None
) -> list[Refusal]:
    rule = resource.justification
    found: list[Refusal] = []
    length = len(justification)
    if length < rule.min_length:
        found.append(
            Refusal("justification_too_short", "justification", min=rule.min_length, length=length)
        )
    elif length > (limit := min(rule.max_length, JUSTIFICATION_HARD_LIMIT)):
        found.append(Refusal("justification_too_long", "justification", max=limit, length=length))
    if rule.ticket is not None:
        if ticket is None:
            found.append(
                Refusal("ticket_required", "ticket", resource=resource.name, pattern=rule.ticket)
            )
        elif not re.fullmatch(rule.ticket, ticket):
            found.append(
                Refusal("ticket_mismatch", "ticket", ticket=ticket[:80], pattern=rule.ticket)
            )
    if ticket is not None and len(ticket) > TICKET_MAX:
        found.append(Refusal("ticket_too_long", "ticket", max=TICKET_MAX))
    return found
