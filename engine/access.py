"""Granted access over its life: provisioning, confirmation, expiry, extension, early
revocation and the confirmed removal. Pure transitions like ``engine.lifecycle``.

    approved -> provisioning -> active -> expired | revoked;  approved/provisioning -> failed
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.access_request import AccessRequest, Status
from engine.durations import format_duration
from engine.effects import (
    Effect,
    ExpireAt,
    NotifyAdmins,
    NotifyPerson,
    RefreshCards,
    RemindAt,
    StartBreakGlassReview,
)
from engine.eligibility import closed
from engine.policy import Policy
from engine.refusals import Refusal, Refused
from engine.transitions import (
    SYSTEM_ACTOR,
    Transition,
    audit_record,
    deprovision_effect,
    iso,
)


def provisioning_started(request: AccessRequest, now: datetime, policy_version: str) -> Transition:
    """The dispatcher is about to ask the connector for the grant."""
    if request.status is Status.PROVISIONING:
        return Transition(request)  # a retry after a crash: nothing new to record
    if request.status is not Status.APPROVED:
        raise Refused(Refusal("not_approved", **closed(request)))
    request = request.evolve(status=Status.PROVISIONING)
    return Transition(
        request,
        (),
        (
            audit_record(
                request,
                "provisioning_started",
                SYSTEM_ACTOR,
                policy_version,
                connector=request.connector,
                group=request.target_group,
            ),
        ),
    )


def grant_confirmed(
    request: AccessRequest, now: datetime, policy_version: str, reminders: tuple[timedelta, ...]
) -> Transition:
    """The connector confirmed the membership: access is active and its clock starts now."""
    if request.status not in (Status.APPROVED, Status.PROVISIONING):
        raise Refused(Refusal("not_provisioning", **closed(request)))
    expires_at = now + request.duration
    request = request.evolve(status=Status.ACTIVE, granted_at=now, expires_at=expires_at)
    trail = [
        {"stage": d.stage, "approver": d.approver, "at": d.at.isoformat()}
        for d in request.decisions
        if d.outcome == "approve"
    ]
    audit = audit_record(
        request,
        "granted",
        SYSTEM_ACTOR,
        policy_version,
        connector=request.connector,
        group=request.target_group,
        principal=request.principal,
        expires_at=expires_at.isoformat(),
        approval_mode=request.approval_mode,
        approvals=trail,
    )
    effects: list[Effect] = [
        NotifyPerson(request.id, email=request.requester, template="access_granted"),
        NotifyAdmins(request.id, template="access_granted"),
        ExpireAt(request.id, due_at=expires_at),
        *_reminders_for(request, expires_at, reminders, request.duration),
    ]
    if request.approval_mode == "break_glass":
        # Emergency access is reviewed afterwards, always: the review opens as it starts.
        effects.append(StartBreakGlassReview(request.id))
    return Transition(request, tuple(effects), (audit,))


def grant_failed(
    request: AccessRequest, error: str, now: datetime, policy_version: str, uncertain: bool = True
) -> Transition:
    """The connector gave up: the request fails and the requester and admins are told.

    ``uncertain`` (the default, the safe side) means the target may have applied the change
    before the error reached us, as after a timeout; False when the target refused it.
    """
    if request.status not in (Status.APPROVED, Status.PROVISIONING):
        raise Refused(Refusal("not_provisioning", **closed(request)))
    was = request.status
    request = request.evolve(status=Status.FAILED, failure=error, ended_at=now)
    effects: list[Effect] = [
        NotifyPerson(request.id, email=request.requester, template="request_failed"),
        NotifyAdmins(request.id, template="request_failed"),
    ]
    if was is Status.PROVISIONING and uncertain:
        # The change may have landed before the error reached us: take back whatever did.
        # Removing an absent member succeeds, so this is safe either way.
        effects.append(deprovision_effect(request, "grant_failed"))
    else:
        request = request.evolve(deprovisioned_at=now)  # nothing can have landed
    return Transition(
        request,
        tuple(effects),
        (
            audit_record(
                request,
                "grant_failed",
                SYSTEM_ACTOR,
                policy_version,
                error=error,
                cleanup=was is Status.PROVISIONING and uncertain,
            ),
        ),
    )


def expire(request: AccessRequest, now: datetime, policy_version: str) -> Transition:
    """Access reached its end: remove it (an overdue grant found at start-up ends at once)."""
    if request.status is not Status.ACTIVE or request.expires_at is None:
        raise Refused(Refusal("not_active", **closed(request)))
    if now < request.expires_at:
        raise Refused(Refusal("not_due", what="access"))
    request = request.evolve(
        status=Status.EXPIRED, ended_at=now, ended_by=SYSTEM_ACTOR, end_reason="expired"
    )
    return Transition(
        request,
        (deprovision_effect(request, "expired"),),
        (
            audit_record(
                request,
                "expired",
                SYSTEM_ACTOR,
                policy_version,
                expires_at=iso(request.expires_at),
            ),
        ),
    )


def _reminders_for(
    request: AccessRequest,
    expires_at: datetime,
    reminders: tuple[timedelta, ...],
    length: timedelta,
) -> list[Effect]:
    """Reminders before ``expires_at``; none that would come before the access even starts."""
    return [
        RemindAt(request.id, before=format_duration(before), due_at=expires_at - before)
        for before in sorted(set(reminders), reverse=True)
        if before < length
    ]


def extend(request: AccessRequest, policy: Policy, actor: str, now: datetime) -> Transition:
    """The requester's Extend: more time without approvers, within the resource's cap.

    Refused with ``needs_approval`` when the resource allows no self-service extension and
    ``extension_cap`` when it is used up: the surface then offers a new request instead.
    """
    actor = actor.lower()
    if actor != request.requester:
        raise Refused(Refusal("not_allowed", action="extend"))
    if request.status is not Status.ACTIVE or request.expires_at is None:
        raise Refused(Refusal("not_active", **closed(request)))
    if now >= request.expires_at:
        raise Refused(Refusal("not_active", ended=True))
    resource = policy.resource(request.resource_id)
    rule = resource.extend if resource else None
    if resource is None or rule is None:
        raise Refused(Refusal("needs_approval"))
    left = rule.self_service - request.self_extended
    if left <= timedelta(0):
        raise Refused(Refusal("extension_cap", cap=format_duration(rule.self_service)))
    added = min(rule.step or resource.duration.default, left)
    expires_at = request.expires_at + added
    request = request.evolve(expires_at=expires_at, self_extended=request.self_extended + added)
    effects: list[Effect] = [
        ExpireAt(request.id, due_at=expires_at),
        *_reminders_for(request, expires_at, resource.reminders, expires_at - now),
        NotifyPerson(request.id, email=request.requester, template="access_extended"),
        NotifyAdmins(request.id, template="access_extended"),
    ]
    return Transition(
        request,
        tuple(effects),
        (
            audit_record(
                request,
                "extended",
                actor,
                policy.version,
                added=format_duration(added),
                expires_at=expires_at.isoformat(),
                self_extended=format_duration(request.self_extended),
                cap=format_duration(rule.self_service),
            ),
        ),
    )


def revoke(
    request: AccessRequest, policy: Policy, actor: str, reason: str, now: datetime
) -> Transition:
    """End access (or a pending request) early: the requester's "I'm done", or an admin."""
    actor = actor.lower()
    reason = reason.strip()
    is_requester = actor == request.requester
    if not (is_requester or policy.is_admin(actor)):
        raise Refused(Refusal("not_allowed", action="revoke"))
    if request.status.is_final:
        raise Refused(Refusal("already_ended", **closed(request)))
    if not is_requester and not reason:
        raise Refused(Refusal("reason_required", "reason", action="revoke"))
    return _end_early(
        request, actor, reason or "returned by the requester", now, policy.version, not is_requester
    )


def revoke_for_review(
    request: AccessRequest,
    campaign_id: str,
    reviewer: str,
    reason: str,
    now: datetime,
    version: str,
) -> Transition:
    """An access review decided to revoke: the access ends with the review as its reason and
    the requester is told why (already ended: nothing to do, the review is satisfied)."""
    if request.status.is_final:
        return Transition(request)
    why = f"access review {campaign_id}" + (f": {reason.strip()}" if reason.strip() else "")
    return _end_early(request, reviewer.lower(), why, now, version, True, review=campaign_id)


def _end_early(
    request: AccessRequest,
    actor: str,
    reason: str,
    now: datetime,
    policy_version: str,
    tell_requester: bool,
    **details: str,
) -> Transition:
    was = request.status
    request = request.evolve(
        status=Status.REVOKED,
        ended_at=now,
        ended_by=actor,
        end_reason=reason,
        pending_deadline=None,
    )
    effects: list[Effect] = [RefreshCards(request.id)]
    if was in (Status.PROVISIONING, Status.ACTIVE):
        effects.append(deprovision_effect(request, "revoked"))
    else:
        # Nothing was granted yet; the provision job (if queued) sees the state and stops.
        request = request.evolve(deprovisioned_at=now)
    if tell_requester:
        effects.append(NotifyPerson(request.id, email=request.requester, template="access_revoked"))
    record = audit_record(
        request, "revoked", actor, policy_version, reason=reason, was=was.value, **details
    )
    return Transition(request, tuple(effects), (record,))


def deprovision_confirmed(request: AccessRequest, now: datetime, policy_version: str) -> Transition:
    """The connector confirmed the removal: the access has really ended."""
    if request.status not in (Status.EXPIRED, Status.REVOKED, Status.FAILED):
        raise Refused(Refusal("not_ended"))
    if request.deprovisioned_at is not None:
        return Transition(request)
    request = request.evolve(deprovisioned_at=now)
    # After a failed grant the requester was already told; the removal is a clean-up.
    notices: tuple[Effect, ...] = (
        ()
        if request.status is Status.FAILED
        else (NotifyPerson(request.id, email=request.requester, template="access_ended"),)
    )
    return Transition(
        request,
        notices,
        (
            audit_record(
                request,
                "access_removed",
                SYSTEM_ACTOR,
                policy_version,
                connector=request.connector,
                group=request.target_group,
                principal=request.principal,
            ),
        ),
    )


def reminder_due(request: AccessRequest, now: datetime, before: timedelta) -> bool:
    """Whether a reminder scheduled ``before`` expiry should still go out now."""
    return (
        request.status is Status.ACTIVE
        and request.expires_at is not None
        and now < request.expires_at
        and request.expires_at - now <= before + timedelta(minutes=1)
    )
