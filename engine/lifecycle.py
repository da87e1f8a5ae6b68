"""The request lifecycle: pure transitions ``(request, policy, event, now) -> (request', effects)``.

    pending(stage i) -> approved -> provisioning -> active -> expired | revoked
    pending -> denied | cancelled | timed_out | revoked;  approved/provisioning -> failed

Every function either returns a ``Transition`` (the new request, the effects to carry out
and the audit records to append, all to be saved in one transaction) or raises ``Refused``
with a message a person can act on; a refusal changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.access_request import (
    AccessRequest,
    ApprovalMode,
    Decision,
    Outcome,
    PrincipalKind,
    Status,
)
from engine.approvers import exclusion_reason, resolve_stage
from engine.directory import DirectoryView
from engine.durations import DurationError, format_duration, parse_duration
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
from engine.policy import JUSTIFICATION_HARD_LIMIT, Policy, Resource
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


# --- who may ask -------------------------------------------------------------------------


def requester_problem(
    requester: str, resource: Resource, policy: Policy, directory: DirectoryView
) -> str | None:
    """Why this person may not request this resource, or None when they may."""
    person = directory.person(requester)
    if person is None:
        return (
            f"{requester} is not in the directory, so Clearance cannot tell who should "
            "approve; ask an admin to add you"
        )
    if not person.active:
        return f"{requester} is marked inactive in the directory"
    if resource.requesters is None:
        return None
    for entry in resource.requesters:
        if entry == "everyone":
            return None
        if entry.startswith("group:"):
            if requester in (directory.members(entry.removeprefix("group:")) or ()):
                return None
        elif entry.removeprefix("user:").lower() == requester:
            return None
    allowed = ", ".join(resource.requesters)
    return f"only {allowed} may request {resource.name}"


# --- submitting ----------------------------------------------------------------------------


def validate_draft(
    draft: RequestDraft, policy: Policy, directory: DirectoryView
) -> tuple[Resource, timedelta, str, str | None]:
    """Check a draft against the policy; raise Refused with every problem, field by field."""
    requester = draft.requester.lower()
    resource = policy.resource(draft.resource_id)
    if resource is None:
        known = ", ".join(r.id for r in policy.resources)
        raise Refused(
            Refusal(
                "unknown_resource",
                f"There is no resource '{draft.resource_id}'. Known resources: {known}",
                "resource",
            )
        )
    refusals: list[Refusal] = []
    problem = requester_problem(requester, resource, policy, directory)
    if problem is not None:
        refusals.append(Refusal("not_allowed", f"You may not request this: {problem}.", "resource"))
    principal = (draft.principal or requester).lower()
    if principal != requester:
        refusals.append(
            Refusal(
                "principal_not_allowed",
                "Requests on behalf of another principal are not enabled for this resource.",
                "principal",
            )
        )

    cap = resource.duration.max
    if draft.break_glass:
        if resource.break_glass is None:
            refusals.append(
                Refusal(
                    "break_glass_not_allowed",
                    f"{resource.name} has no break-glass access; request it the normal way.",
                    "resource",
                )
            )
        else:
            cap = resource.break_glass.max
    duration = resource.duration.default if not draft.break_glass else cap
    if isinstance(draft.duration, timedelta):
        duration = draft.duration
    elif draft.duration is not None and draft.duration.strip():
        try:
            duration = parse_duration(draft.duration)
        except DurationError as exc:
            refusals.append(
                Refusal("bad_duration", str(exc)[0].upper() + str(exc)[1:] + ".", "duration")
            )
    if duration <= timedelta(0):
        refusals.append(
            Refusal("bad_duration", "The duration must be longer than zero.", "duration")
        )
    elif duration > cap:
        kind = "break-glass access to " if draft.break_glass else ""
        refusals.append(
            Refusal(
                "duration_over_max",
                f"{format_duration(cap)} is the longest {kind}{resource.name} allows; "
                f"you asked for {format_duration(duration)}.",
                "duration",
            )
        )

    rule = resource.justification
    justification = draft.justification.strip()
    if len(justification) < rule.min_length:
        refusals.append(
            Refusal(
                "justification_too_short",
                f"Please explain why you need this access in at least {rule.min_length} "
                f"characters (you wrote {len(justification)}).",
                "justification",
            )
        )
    elif len(justification) > (limit := min(rule.max_length, JUSTIFICATION_HARD_LIMIT)):
        refusals.append(
            Refusal(
                "justification_too_long",
                f"The justification can be at most {limit} characters"
                f" (you wrote {len(justification)}).",
                "justification",
            )
        )
    ticket = (draft.ticket or "").strip() or None
    if rule.ticket is not None:
        if ticket is None:
            refusals.append(
                Refusal(
                    "ticket_required",
                    f"{resource.name} needs a ticket id matching {rule.ticket}.",
                    "ticket",
                )
            )
        elif not re.fullmatch(rule.ticket, ticket):
            refusals.append(
                Refusal(
                    "ticket_mismatch",
                    f"'{ticket[:80]}' is not a valid ticket id here (expected {rule.ticket}).",
                    "ticket",
                )
            )
    if ticket is not None and len(ticket) > 100:
        refusals.append(
            Refusal("ticket_too_long", "A ticket id is at most 100 characters.", "ticket")
        )
    if refusals:
        raise Refused(*refusals)
    return resource, duration, justification, ticket


def submit(
    draft: RequestDraft,
    policy: Policy,
    directory: DirectoryView,
    now: datetime,
    request_id: str,
) -> Transition:
    """Create a request: validate it, then auto-approve, break glass, or start stage 1."""
    resource, duration, justification, ticket = validate_draft(draft, policy, directory)
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


def _closed_message(request: AccessRequest) -> str:
    denial = request.denial
    if request.status is Status.DENIED and denial is not None:
        return f"This request was already denied by {denial.approver}."
    if request.status is Status.PENDING:
        return "This request is still waiting for approval."
    return f"This request is already {request.status.value.replace('_', ' ')}; nothing to decide."


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
    stage = request.stage
    if stage is None:
        raise Refused(Refusal("not_pending", _closed_message(request)))
    if expected_stage is not None and expected_stage != stage.index:
        raise Refused(
            Refusal(
                "stale",
                f"This card is out of date: the request is now at {stage.label}.",
            )
        )
    if actor == request.requester:
        raise Refused(Refusal("self_approval", "You cannot decide on your own request."))
    if actor in policy.executor_identities:
        raise Refused(
            Refusal("executor", "The identity that executes grants cannot decide on requests.")
        )
    if any(d.approver == actor and d.stage == stage.index for d in request.decisions):
        raise Refused(Refusal("already_decided", f"You already decided {stage.label}."))
    resource = policy.resource(request.resource_id)
    if actor in request.approvers_of_other_stages(stage.index) and not (
        resource and resource.allow_same_approver_across_stages
    ):
        raise Refused(
            Refusal(
                "second_stage",
                "You approved an earlier stage of this request; one person approves one stage.",
            )
        )
    if actor not in stage.approvers:
        raise Refused(
            Refusal(
                "not_an_approver",
                f"Only {', '.join(stage.approvers)} can decide {stage.label} of this request.",
            )
        )
    # The person may have left or been deactivated since the stage started.
    late_reason = exclusion_reason(actor, request.requester, policy, directory, (), resource)
    if late_reason is not None:
        raise Refused(
            # Reasons read after a name ("x inactive in the directory"), not after "you".
            Refusal("not_eligible", f"You cannot decide this request ({late_reason}).")
        )
    if outcome == "deny" and not reason:
        raise Refused(Refusal("reason_required", "Please give a reason for the denial.", "reason"))
    if len(reason) > DENY_REASON_MAX:
        raise Refused(
            Refusal(
                "reason_too_long", f"Keep the reason under {DENY_REASON_MAX} characters.", "reason"
            )
        )

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
            raise Refused(
                Refusal(
                    "resource_changed",
                    f"The policy for '{request.resource_id}' changed while this request was "
                    "pending; an admin must revoke it and the requester ask again.",
                )
            )
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
        raise Refused(Refusal("not_requester", "Only the requester can cancel this request."))
    if request.status not in (Status.PENDING, Status.APPROVED):
        raise Refused(Refusal("not_cancellable", _closed_message(request)))
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
        raise Refused(Refusal("not_pending", _closed_message(request)))
    if now < request.pending_deadline:
        raise Refused(Refusal("not_due", "This request has not reached its deadline yet."))
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
        raise Refused(Refusal("not_approved", _closed_message(request)))
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
        raise Refused(Refusal("not_provisioning", _closed_message(request)))
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
        raise Refused(Refusal("not_provisioning", _closed_message(request)))
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
        raise Refused(Refusal("not_active", _closed_message(request)))
    if now < request.expires_at:
        raise Refused(Refusal("not_due", "This access has not reached its end yet."))
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
        raise Refused(Refusal("not_allowed", "Only the requester can extend this access."))
    if request.status is not Status.ACTIVE or request.expires_at is None:
        raise Refused(Refusal("not_active", _closed_message(request)))
    if now >= request.expires_at:
        raise Refused(Refusal("not_active", "This access has already reached its end."))
    resource = policy.resource(request.resource_id)
    rule = resource.extend if resource else None
    if resource is None or rule is None:
        raise Refused(
            Refusal(
                "needs_approval",
                "More time for this resource is a new request that goes through approval.",
            )
        )
    left = rule.self_service - request.self_extended
    if left <= timedelta(0):
        raise Refused(
            Refusal(
                "extension_cap",
                (
                    f"You have already extended this access by {format_duration(rule.self_service)}"
                    ", the most allowed without approval; more time is a new request."
                ),
            )
        )
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
        raise Refused(
            Refusal("not_allowed", "Only the requester or a Clearance admin can revoke this.")
        )
    if request.status.is_final:
        raise Refused(Refusal("already_ended", _closed_message(request)))
    if not is_requester and not reason:
        raise Refused(
            Refusal("reason_required", "Please give a reason for the revocation.", "reason")
        )
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
        raise Refused(Refusal("not_ended", "This access has not been ended."))
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
    current = request.stage
    if current is None or current.index != stage:
        return ()
    if request.pending_deadline is not None and now >= request.pending_deadline:
        return ()
    decided = {d.approver for d in request.decisions if d.stage == stage}
    return tuple(a for a in current.approvers if a not in decided)


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
