"""The request lifecycle: pure transitions ``(request, policy, event, now) -> (request', effects)``.

    pending(stage i) -> approved -> provisioning -> active -> expired | revoked
    pending -> denied | cancelled | timed_out | revoked;  approved/provisioning -> failed

Every function either returns a ``Transition`` (the new request, the effects to carry out
and the audit records to append, all to be saved in one transaction) or raises ``Refused``
with a message a person can act on; a refusal changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.access_request import (
    AccessRequest,
    ApprovalMode,
    Decision,
    Outcome,
    Status,
)
from engine.approvers import resolve_stage
from engine.directory import DirectoryView
from engine.drafts import RequestDraft, validate_draft
from engine.durations import format_duration
from engine.effects import (
    Deprovision,
    Effect,
    ExpireAt,
    NotifyAdmins,
    NotifyApprovers,
    NotifyPerson,
    NudgeAt,
    Provision,
    RefreshCards,
    RemindAt,
    TimeoutAt,
)
from engine.eligibility import closed, may_decide, waiting_for
from engine.policy import Policy, Resource
from engine.refusals import Refusal, Refused

SYSTEM_ACTOR = "clearance"  # the actor of events nobody clicked: timers, auto-approval
DENY_REASON_MAX = 500


@dataclass(frozen=True)
class AuditRecord:
    """An audit event before storage seals it into the hash chain."""

    action: str
    actor: str
    request_id: str | None
    resource_id: str | None
    policy_version: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """The outcome of one event: new state, effects and audit records, saved together."""

    request: AccessRequest
    effects: tuple[Effect, ...] = ()
    audit: tuple[AuditRecord, ...] = ()
    decision: Decision | None = None


def _audit(
    request: AccessRequest, action: str, actor: str, policy_version: str, **details: Any
) -> AuditRecord:
    return AuditRecord(
        action=action,
        actor=actor,
        request_id=request.id,
        resource_id=request.resource_id,
        policy_version=policy_version,
        details=details,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- submitting ----------------------------------------------------------------------------


def submit(
    draft: RequestDraft,
    policy: Policy,
    directory: DirectoryView,
    now: datetime,
    request_id: str,
) -> Transition:
    """Create a request: validate it, then auto-approve, break glass, or start stage 1."""
    valid = validate_draft(draft, policy, directory)
    resource, duration, justification, ticket = (
        valid.resource,
        valid.duration,
        valid.justification,
        valid.ticket,
    )
    requester = draft.requester.lower()
    mode: ApprovalMode = (
        "break_glass" if draft.break_glass else "auto" if resource.auto_approve else "stages"
    )
    request = AccessRequest(
        id=request_id,
        requester=requester,
        principal=(draft.principal or requester).lower(),
        principal_kind=draft.principal_kind,
        resource_id=resource.id,
        duration=duration,
        justification=justification,
        ticket=ticket,
        status=Status.PENDING,
        policy_version=policy.version,
        created_at=now,
        stage_count=0 if mode != "stages" else len(resource.approval),
        approval_mode=mode,
        break_glass=draft.break_glass,
        connector=resource.grant.connector,
        target_group=resource.grant.group,
    )
    audit = [
        _audit(
            request,
            "requested",
            requester,
            policy.version,
            principal=request.principal,
            duration=format_duration(duration),
            justification=justification,
            ticket=ticket,
            break_glass=draft.break_glass,
        )
    ]
    if mode == "break_glass":
        request = request.evolve(status=Status.APPROVED)
        audit.append(
            _audit(request, "break_glass", requester, policy.version, review_required=True)
        )
        effects: list[Effect] = [
            NotifyAdmins(request.id, template="break_glass_alert"),
            NotifyPerson(request.id, email=requester, template="request_approved"),
            _provision(request),
        ]
        return Transition(request, tuple(effects), tuple(audit))
    if mode == "auto":
        request = request.evolve(status=Status.APPROVED)
        audit.append(
            _audit(request, "fully_approved", SYSTEM_ACTOR, policy.version, rule="approval: auto")
        )
        effects = [
            NotifyPerson(request.id, email=requester, template="request_approved"),
            _provision(request),
        ]
        return Transition(request, tuple(effects), tuple(audit))
    return _start_stage(
        request,
        resource,
        policy,
        directory,
        0,
        now,
        audit,
        [
            NotifyPerson(request.id, email=requester, template="request_submitted"),
        ],
    )


def _provision(request: AccessRequest) -> Provision:
    return Provision(
        request.id,
        connector=request.connector,
        group=request.target_group,
        principal=request.principal,
    )


def _deprovision(request: AccessRequest, reason: str) -> Deprovision:
    return Deprovision(
        request.id,
        connector=request.connector,
        group=request.target_group,
        principal=request.principal,
        reason=reason,
    )


def _start_stage(
    request: AccessRequest,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
    index: int,
    now: datetime,
    audit: list[AuditRecord],
    effects: list[Effect],
) -> Transition:
    prior = {d.approver for d in request.decisions if d.outcome == "approve"}
    state = resolve_stage(index, request.requester, resource, policy, directory, prior, now)
    if state is None:
        label = resource.approval[index].label(index)
        failure = f"nobody can approve {label}: its rules and the admins leave no eligible approver"
        request = request.evolve(
            status=Status.FAILED, failure=failure, ended_at=now, pending_deadline=None
        )
        audit.append(
            _audit(request, "failed", SYSTEM_ACTOR, policy.version, stage=index, reason=failure)
        )
        effects = [e for e in effects if not isinstance(e, NotifyPerson | RefreshCards)]
        effects += [
            NotifyPerson(request.id, email=request.requester, template="request_failed"),
            NotifyAdmins(request.id, template="request_failed"),
            RefreshCards(request.id),
        ]
        return Transition(request, tuple(effects), tuple(audit))
    deadline = now + resource.pending_timeout
    request = request.evolve(stages=(*request.stages, state), pending_deadline=deadline)
    audit.append(
        _audit(
            request,
            "stage_started",
            SYSTEM_ACTOR,
            policy.version,
            stage=index,
            label=state.label,
            approvers=list(state.approvers),
            required=state.required,
            excluded={e.email: e.reason for e in state.excluded},
            fallback_to_admins=state.fallback,
        )
    )
    effects.append(NotifyApprovers(request.id, stage=index))
    effects.append(NudgeAt(request.id, stage=index, due_at=now + resource.nudge_delay))
    effects.append(TimeoutAt(request.id, due_at=deadline))
    return Transition(request, tuple(effects), tuple(audit))


# --- deciding ------------------------------------------------------------------------------


def decide(
    request: AccessRequest,
    policy: Policy,
    directory: DirectoryView,
    actor: str,
    outcome: Outcome,
    now: datetime,
    reason: str = "",
    expected_stage: int | None = None,
) -> Transition:
    """Record one approver's decision on the current stage, and move the request on."""
    actor = actor.lower()
    reason = reason.strip()
    if (refusal := may_decide(request, actor, policy, directory, expected_stage)) is not None:
        raise Refused(refusal)
    stage = request.stage
    assert stage is not None  # may_decide refuses a request that is not pending
    resource = policy.resource(request.resource_id)
    if outcome == "deny" and not reason:
        raise Refused(Refusal("reason_required", "reason", action="deny"))
    if len(reason) > DENY_REASON_MAX:
        raise Refused(Refusal("reason_too_long", "reason", max=DENY_REASON_MAX))

    decision = Decision(stage=stage.index, approver=actor, outcome=outcome, at=now, reason=reason)
    request = request.evolve(decisions=(*request.decisions, decision))
    if outcome == "deny":
        request = request.evolve(
            status=Status.DENIED, ended_at=now, ended_by=actor, end_reason=reason
        )
        audit = [_audit(request, "denied", actor, policy.version, stage=stage.index, reason=reason)]
        effects: list[Effect] = [
            RefreshCards(request.id),
            NotifyPerson(request.id, email=request.requester, template="request_denied"),
            NotifyAdmins(request.id, template="request_denied"),
        ]
        return Transition(request, tuple(effects), tuple(audit), decision)

    approvals = len(request.approvals_in(stage.index))
    audit = [
        _audit(
            request,
            "approved",
            actor,
            policy.version,
            stage=stage.index,
            approvals=approvals,
            required=stage.required,
            reason=reason,
        )
    ]
    effects = [RefreshCards(request.id)]
    if approvals < stage.required:
        effects.append(
            NotifyPerson(request.id, email=request.requester, template="decision_recorded")
        )
        return Transition(request, tuple(effects), tuple(audit), decision)

    audit.append(
        _audit(request, "stage_completed", SYSTEM_ACTOR, policy.version, stage=stage.index)
    )
    next_index = stage.index + 1
    if next_index < request.stage_count:
        if resource is None or next_index >= len(resource.approval):
            raise Refused(Refusal("resource_changed", resource=request.resource_id))
        effects.append(
            NotifyPerson(request.id, email=request.requester, template="decision_recorded")
        )
        t = _start_stage(request, resource, policy, directory, next_index, now, audit, effects)
        return Transition(t.request, t.effects, t.audit, decision)

    request = request.evolve(status=Status.APPROVED, pending_deadline=None)
    audit.append(_audit(request, "fully_approved", SYSTEM_ACTOR, policy.version))
    effects += [
        NotifyPerson(request.id, email=request.requester, template="request_approved"),
        _provision(request),
    ]
    return Transition(request, tuple(effects), tuple(audit), decision)


def cancel(request: AccessRequest, actor: str, now: datetime, policy_version: str) -> Transition:
    """The requester withdraws a request nobody has acted on fully yet."""
    actor = actor.lower()
    if actor != request.requester:
        raise Refused(Refusal("not_requester"))
    if request.status not in (Status.PENDING, Status.APPROVED):
        raise Refused(Refusal("not_cancellable", **closed(request)))
    request = request.evolve(
        status=Status.CANCELLED, ended_at=now, ended_by=actor, pending_deadline=None
    )
    return Transition(
        request,
        (RefreshCards(request.id),),
        (_audit(request, "cancelled", actor, policy_version),),
    )


def time_out(request: AccessRequest, now: datetime, policy_version: str) -> Transition:
    """Nobody decided in time: the request ends, and everyone's card says so."""
    if request.status is not Status.PENDING or request.pending_deadline is None:
        raise Refused(Refusal("not_pending", **closed(request)))
    if now < request.pending_deadline:
        raise Refused(Refusal("not_due", what="request"))
    request = request.evolve(
        status=Status.TIMED_OUT,
        ended_at=now,
        ended_by=SYSTEM_ACTOR,
        end_reason="no decision in time",
    )
    return Transition(
        request,
        (
            RefreshCards(request.id),
            NotifyPerson(request.id, email=request.requester, template="request_timed_out"),
        ),
        (_audit(request, "timed_out", SYSTEM_ACTOR, policy_version),),
    )


# --- fulfilment ----------------------------------------------------------------------------


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
            _audit(
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
    audit = _audit(
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
        effects.append(_deprovision(request, "grant_failed"))
    else:
        request = request.evolve(deprovisioned_at=now)  # nothing can have landed
    return Transition(
        request,
        tuple(effects),
        (
            _audit(
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
        (_deprovision(request, "expired"),),
        (
            _audit(
                request,
                "expired",
                SYSTEM_ACTOR,
                policy_version,
                expires_at=_iso(request.expires_at),
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
            _audit(
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
    was = request.status
    request = request.evolve(
        status=Status.REVOKED,
        ended_at=now,
        ended_by=actor,
        end_reason=reason or "returned by the requester",
        pending_deadline=None,
    )
    effects: list[Effect] = [RefreshCards(request.id)]
    if was in (Status.PROVISIONING, Status.ACTIVE):
        effects.append(_deprovision(request, "revoked"))
    else:
        # Nothing was granted yet; the provision job (if queued) sees the state and stops.
        request = request.evolve(deprovisioned_at=now)
    if not is_requester:
        effects.append(NotifyPerson(request.id, email=request.requester, template="access_revoked"))
    return Transition(
        request,
        tuple(effects),
        (
            _audit(
                request, "revoked", actor, policy.version, reason=request.end_reason, was=was.value
            ),
        ),
    )


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
            _audit(
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


def nudge_due(request: AccessRequest, stage: int, now: datetime) -> tuple[str, ...]:
    """Who should be reminded of ``stage`` now: its approvers who have not decided yet, if
    the stage is still the one waiting (empty once it was decided or moved on)."""
    if request.pending_deadline is not None and now >= request.pending_deadline:
        return ()
    return waiting_for(request, stage)


def reminder_due(request: AccessRequest, now: datetime, before: timedelta) -> bool:
    """Whether a reminder scheduled ``before`` expiry should still go out now."""
    return (
        request.status is Status.ACTIVE
        and request.expires_at is not None
        and now < request.expires_at
        and request.expires_at - now <= before + timedelta(minutes=1)
    )


def decision_trail_allows(request: AccessRequest) -> bool:
    """Whether the recorded decisions justify a grant (the invariant behind every grant)."""
    if request.approval_mode in ("auto", "break_glass"):
        return not request.decisions
    if len(request.stages) != request.stage_count or request.stage_count == 0:
        return False
    for stage in request.stages:
        approvals = request.approvals_in(stage.index)
        if len(approvals) < stage.required:
            return False
        if any(
            a.approver not in stage.approvers or a.approver == request.requester for a in approvals
        ):
            return False
    return request.denial is None
