"""Who may do what to a request: request a resource, approve a stage, still be waited for.

Separation of duties lives here, once: the requester, the identities that execute grants,
people who approved another stage and people the directory marks inactive never decide.
The same rules pick the approvers when a stage starts (``engine.approvers``), guard every
decision (``engine.lifecycle.decide``), choose whom a card offers buttons and whom a
reminder goes to, and list what waits for a person.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.access_request import AccessRequest, Status
from engine.directory import DirectoryView
from engine.policy import Policy, Resource
from engine.refusals import Refusal
from engine.rules import Everyone, Group, User, WorkloadRef
from engine.workload_policy import is_workload, workload_id

# Why someone a rule names is not asked: short phrases recorded in the audit trail.
IS_REQUESTER = "is the requester"
IS_PRINCIPAL = "is who the access is for"
EXECUTES_GRANTS = "executes grants for a connector"
APPROVED_EARLIER = "already approved an earlier stage"
NOT_IN_DIRECTORY = "not found in the directory"
INACTIVE = "inactive in the directory"


def may_request(requester: str, resource: Resource, directory: DirectoryView) -> Refusal | None:
    """Why this person (or workload) may not request this resource, or None when they may.

    A workload must be listed by name (``workload:<id>``): ``everyone`` and an absent
    requesters list mean the people of the directory, never a machine."""
    if is_workload(requester):
        entries = resource.requesters or ()
        if any(isinstance(e, WorkloadRef) and requester == f"workload:{e.id}" for e in entries):
            return None
        allowed = ", ".join(str(e) for e in entries) or "people of the directory"
        return Refusal("requester_not_listed", allowed=allowed, resource=resource.name)
    person = directory.person(requester)
    if person is None:
        return Refusal("requester_unknown", requester=requester)
    if not person.active:
        return Refusal("requester_inactive", requester=requester)
    if resource.requesters is None:
        return None
    for entry in resource.requesters:
        if isinstance(entry, Everyone):
            return None
        if isinstance(entry, Group):
            if requester in (directory.members(entry.name) or ()):
                return None
        elif isinstance(entry, User) and entry.email == requester:
            return None
    allowed = ", ".join(str(e) for e in resource.requesters)
    return Refusal("requester_not_listed", allowed=allowed, resource=resource.name)


def may_act_for(
    requester: str, principal: str, resource: Resource, policy: Policy
) -> Refusal | None:
    """Why ``requester`` may not ask for ``resource`` on behalf of ``principal``, or None.

    A workload asks only for the resources its entry lists, and always for its own
    principal; a person asks for themselves, for a service account the resource lists under
    ``on_behalf``, or for the principal of a workload they own that may ask for it too.
    """
    if is_workload(requester):
        workload = policy.workload(workload_id(requester))
        if workload is None:
            return Refusal("workload_unknown", "resource", workload=workload_id(requester))
        if resource.id not in workload.resources:
            return Refusal(
                "workload_resource",
                "resource",
                workload=workload.id,
                resource=resource.id,
                allowed=", ".join(workload.resources),
            )
        if principal != workload.principal:
            return Refusal("principal_not_allowed", "principal", principal=principal)
        return None
    if principal == requester or principal in resource.on_behalf:
        return None
    if any(
        w.owner == requester and w.principal == principal and resource.id in w.resources
        for w in policy.document.workloads
    ):
        return None
    return Refusal("principal_not_allowed", "principal", principal=principal)


def exclusion_reason(
    email: str,
    requester: str,
    policy: Policy,
    directory: DirectoryView,
    approved_elsewhere: Iterable[str] = (),
    resource: Resource | None = None,
    principal: str | None = None,
) -> str | None:
    """Why this person may not approve a request of ``requester`` (for ``principal``, when
    that is someone else), or None when they may."""
    if email == requester.lower():
        return IS_REQUESTER
    if principal is not None and email == principal.lower():
        return IS_PRINCIPAL
    if email in policy.executor_identities:
        return EXECUTES_GRANTS
    if email in approved_elsewhere and not (
        resource and resource.allow_same_approver_across_stages
    ):
        return APPROVED_EARLIER
    person = directory.person(email)
    if person is None:
        return NOT_IN_DIRECTORY
    if not person.active:
        return INACTIVE
    return None


def waiting_for(request: AccessRequest, stage: int | None = None) -> tuple[str, ...]:
    """The current stage's approvers who have not decided it yet (empty when the request
    is not pending, or when ``stage`` is given and is no longer the current one)."""
    current = request.stage
    if current is None or (stage is not None and current.index != stage):
        return ()
    decided = {d.approver for d in request.decisions if d.stage == current.index}
    return tuple(a for a in current.approvers if a not in decided)


def closed(request: AccessRequest) -> dict[str, str | None]:
    """The parameters of a refusal that says what became of a request that is not open."""
    denial = request.denial
    return {
        "status": request.status.value,
        "denied_by": denial.approver if request.status is Status.DENIED and denial else None,
    }


def may_decide(
    request: AccessRequest,
    actor: str,
    policy: Policy,
    directory: DirectoryView | None = None,
    expected_stage: int | None = None,
) -> Refusal | None:
    """Why ``actor`` may not decide the current stage now, or None when they may.

    Without a directory the answer rests on the stage as it started (what a card shows);
    with one, a person who left or was deactivated since is refused too.
    """
    actor = actor.lower()
    stage = request.stage
    if stage is None:
        return Refusal("not_pending", **closed(request))
    if expected_stage is not None and expected_stage != stage.index:
        return Refusal("stale", stage=stage.label)
    if actor in (request.requester, request.principal):
        return Refusal("self_approval")
    if actor in policy.executor_identities:
        return Refusal("executor")
    if any(d.approver == actor and d.stage == stage.index for d in request.decisions):
        return Refusal("already_decided", stage=stage.label)
    resource = policy.resource(request.resource_id)
    if actor in request.approvers_of_other_stages(stage.index) and not (
        resource and resource.allow_same_approver_across_stages
    ):
        return Refusal("second_stage")
    if actor not in stage.approvers:
        return Refusal("not_an_approver", approvers=", ".join(stage.approvers), stage=stage.label)
    if directory is not None:
        reason = exclusion_reason(
            actor, request.requester, policy, directory, (), resource, request.principal
        )
        if reason is not None:
            return Refusal("not_eligible", reason=reason)
    return None
