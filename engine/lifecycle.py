"""The approval lifecycle of a request: submitting, deciding stage by stage, cancelling,
timing out. Pure transitions ``(request, policy, event, now) -> Transition``.

    pending(stage 1..n) -> approved   (then ``engine.access`` carries it to a grant)
    pending -> denied | cancelled | timed_out | revoked

Every function either returns a ``Transition`` or raises ``Refused`` with the refusals a
person can act on; a refusal changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from engine.access_request import AccessRequest, ApprovalMode, Decision, Outcome, Status
from engine.approvers import break_glass_reviewers, resolve_stage
from engine.directory import DirectoryView
from engine.drafts import RequestDraft, validate_draft
from engine.durations import format_duration
from engine.effects import (
    Effect,
    NotifyAdmins,
    NotifyApprovers,
    NotifyPerson,
    NudgeAt,
    RefreshCards,
    TimeoutAt,
)
from engine.eligibility import closed, may_decide, waiting_for
from engine.policy import Policy, Resource
from engine.refusals import Refusal, Refused
from engine.transitions import SYSTEM_ACTOR, AuditRecord, Transition, audit_record, provision_effect

DENY_REASON_MAX = 500


# --- submitting ----------------------------------------------------------------------------


# Why a break-glass ask goes to the approvers: the requester reached the resource's limit.
BREAK_GLASS_LIMIT = "limit"


def break_glass_refusal(resource: Resource, recent: int) -> str | None:
    """Why a break-glass ask takes the approval path instead of being granted at once, or
    None when it is granted. ``recent`` is how many break-glass requests the requester made
    for ``resource`` within its limit's window, a fact the application looked up."""
    rule = resource.break_glass
    if rule is not None and rule.limit is not None and recent >= rule.limit.count:
        return BREAK_GLASS_LIMIT
    return None


def submit(
    draft: RequestDraft,
    policy: Policy,
    directory: DirectoryView,
    now: datetime,
    request_id: str,
    recent_break_glass: int = 0,
) -> Transition:
    """Create a request: validate it, then auto-approve, break glass, or start stage 1.

    A break-glass ask beyond the resource's limit (``recent_break_glass`` of them already in
    its window) is validated as break-glass, then follows the approval path and says why.
    """
    valid = validate_draft(draft, policy, directory)
    resource, duration, justification, ticket = (
        valid.resource,
        valid.duration,
        valid.justification,
        valid.ticket,
    )
    requester = draft.requester.lower()
    refused = break_glass_refusal(resource, recent_break_glass) if draft.break_glass else None
    glass = draft.break_glass and refused is None
    mode: ApprovalMode = "break_glass" if glass else "auto" if resource.auto_approve else "stages"
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
        break_glass=glass,
        break_glass_refused=refused,
        connector=resource.grant.connector,
        target_group=resource.grant.group,
        origin=dict(draft.origin),
    )
    audit = [
        audit_record(
            request,
            "requested",
            requester,
            policy.version,
            principal=request.principal,
            duration=format_duration(duration),
            justification=justification,
            ticket=ticket,
            break_glass=draft.break_glass,
            **({"origin": dict(draft.origin)} if draft.origin else {}),
            **_refusal_evidence(resource, refused, recent_break_glass),
        )
    ]
    if mode == "break_glass":
        request = request.evolve(status=Status.APPROVED)
        reviewers = break_glass_reviewers(requester, resource, policy, directory)
        owners = reviewers.people if reviewers.owners else ()
        audit.append(
            audit_record(
                request,
                "break_glass",
                requester,
                policy.version,
                review_required=True,
                owners_alerted=list(owners),
            )
        )
        effects: list[Effect] = [
            NotifyAdmins(request.id, template="break_glass_alert"),
            # The owners hear it from Clearance, not later from the audit trail; without
            # an owner left to tell, the admin channel's alert is the one that goes out.
            *(
                NotifyPerson(request.id, email=o, template="break_glass_owner_alert")
                for o in owners
            ),
            NotifyPerson(request.id, email=requester, template="request_approved"),
            provision_effect(request),
        ]
        return Transition(request, tuple(effects), tuple(audit))
    if mode == "auto":
        request = request.evolve(status=Status.APPROVED)
        audit.append(
            audit_record(
                request, "fully_approved", SYSTEM_ACTOR, policy.version, rule="approval: auto"
            )
        )
        effects = [
            NotifyPerson(request.id, email=requester, template="request_approved"),
            provision_effect(request),
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


def _refusal_evidence(resource: Resource, refused: str | None, recent: int) -> dict[str, object]:
    """What the audit trail keeps of a break-glass ask that went to the approvers."""
    limit = resource.break_glass.limit if resource.break_glass else None
    if refused is None or limit is None:
        return {}
    return {"break_glass_refused": refused, "break_glass_limit": str(limit), "recent": recent}


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
    state = resolve_stage(
        index, request.requester, resource, policy, directory, prior, now, request.principal
    )
    if state is None:
        label = resource.approval[index].label(index)
        failure = f"nobody can approve {label}: its rules and the admins leave no eligible approver"
        request = request.evolve(
            status=Status.FAILED, failure=failure, ended_at=now, pending_deadline=None
        )
        audit.append(
            audit_record(
                request, "failed", SYSTEM_ACTOR, policy.version, stage=index, reason=failure
            )
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
        audit_record(
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
        audit = [
            audit_record(request, "denied", actor, policy.version, stage=stage.index, reason=reason)
        ]
        effects: list[Effect] = [
            RefreshCards(request.id),
            NotifyPerson(request.id, email=request.requester, template="request_denied"),
            NotifyAdmins(request.id, template="request_denied"),
        ]
        return Transition(request, tuple(effects), tuple(audit), decision)

    approvals = len(request.approvals_in(stage.index))
    audit = [
        audit_record(
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
        audit_record(request, "stage_completed", SYSTEM_ACTOR, policy.version, stage=stage.index)
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
    audit.append(audit_record(request, "fully_approved", SYSTEM_ACTOR, policy.version))
    effects += [
        NotifyPerson(request.id, email=request.requester, template="request_approved"),
        provision_effect(request),
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
        (audit_record(request, "cancelled", actor, policy_version),),
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
        (audit_record(request, "timed_out", SYSTEM_ACTOR, policy_version),),
    )


def nudge_due(request: AccessRequest, stage: int, now: datetime) -> tuple[str, ...]:
    """Who should be reminded of ``stage`` now: its approvers who have not decided yet, if
    the stage is still the one waiting (empty once it was decided or moved on)."""
    if request.pending_deadline is not None and now >= request.pending_deadline:
        return ()
    return waiting_for(request, stage)


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
