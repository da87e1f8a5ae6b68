"""Who approves a stage: dynamic rules resolved against the directory when the stage starts.

Separation of duties (``engine.eligibility``) applies first: the requester, the people
who execute grants (connector identities), people who approved an earlier stage and people
the directory marks inactive are never asked; it is checked again when a decision arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine.access_request import Exclusion, StageState
from engine.directory import DirectoryView
from engine.durations import format_duration
from engine.eligibility import exclusion_reason, may_request
from engine.policy import Policy, Resource, Stage, expand_members
from engine.refusals import Refusal
from engine.rules import Admins, ApproverRule, Group, Manager, ResourceOwner, User


@dataclass(frozen=True)
class Candidate:
    """Someone a rule names, before exclusions."""

    email: str
    rule: ApproverRule


def manager_of(email: str, directory: DirectoryView, levels: int = 1) -> str | None:
    """The manager ``levels`` steps up the chain, or None where the chain stops."""
    current: str | None = email
    for _ in range(levels):
        person = directory.person(current) if current else None
        current = person.manager if person else None
    return current.lower() if current else None


def candidates(
    stage: Stage, requester: str, resource: Resource, policy: Policy, directory: DirectoryView
) -> tuple[list[Candidate], list[str]]:
    """People a stage's rules name, in rule order, plus notes on rules that named nobody."""
    return named_by(stage.approvers, requester, resource, policy, directory)


def named_by(
    rules: Iterable[ApproverRule],
    person: str,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
) -> tuple[list[Candidate], list[str]]:
    """People approver rules name about ``person`` (whose manager ``manager`` means) and
    ``resource``, in rule order without repeats, plus notes on rules that named nobody."""
    requester = person
    found: list[Candidate] = []
    notes: list[str] = []

    def add(emails: Iterable[str], rule: ApproverRule) -> None:
        emails = list(emails)
        if not emails:
            notes.append(f"{rule} names nobody")
        for email in emails:
            if all(c.email != email.lower() for c in found):
                found.append(Candidate(email.lower(), rule))

    for rule in rules:
        if isinstance(rule, Manager):
            manager = manager_of(requester, directory, rule.levels)
            if manager is None:
                notes.append(f"{rule}: {requester} has no manager that far up in the directory")
            add([manager] if manager else [], rule)
        elif isinstance(rule, ResourceOwner):
            add(expand_members(resource.owners, directory.members), rule)
        elif isinstance(rule, Admins):
            add(policy.admins.users, rule)
        elif isinstance(rule, Group):
            members = directory.members(rule.name)
            if members is None:
                notes.append(f"{rule}: no such group in the directory")
            add(members or (), rule)
        elif isinstance(rule, User):
            add([rule.email], rule)
    return found, notes


@dataclass(frozen=True)
class BreakGlassReviewers:
    """Who is told of a break-glass access and reviews it afterwards."""

    people: tuple[str, ...]
    owners: bool  # False when no owner may, so the admins stand in


def break_glass_reviewers(
    requester: str, resource: Resource, policy: Policy, directory: DirectoryView
) -> BreakGlassReviewers:
    """The resource's owners (groups expanded) who may judge ``requester``'s emergency
    access, or the admins when no owner is left: never the requester, a connector
    identity, or anyone the directory does not know or marks inactive."""
    people, rule = first_eligible(
        (ResourceOwner(), Admins()), requester, resource, policy, directory
    )
    return BreakGlassReviewers(people, owners=isinstance(rule, ResourceOwner))


def first_eligible(
    rules: Iterable[ApproverRule],
    person: str,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
) -> tuple[tuple[str, ...], ApproverRule | None]:
    """The eligible people the first rule that names any names about ``person``'s access,
    and that rule: never ``person``, a connector identity, or anyone the directory does not
    know or marks inactive. Nobody (and None) when no rule names an eligible person."""
    for rule in rules:
        found, _ = named_by((rule,), person, resource, policy, directory)
        eligible = tuple(
            c.email for c in found if exclusion_reason(c.email, person, policy, directory) is None
        )
        if eligible:
            return eligible, rule
    return (), None


def resolve_stage(
    index: int,
    requester: str,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
    approved_elsewhere: Iterable[str],
    now: datetime,
    principal: str | None = None,
) -> StageState | None:
    """The live approvers of stage ``index``; admins stand in when the rules leave nobody.

    Returns None when not even the admins can approve: the request cannot proceed.
    """
    stage = resource.approval[index]
    prior = frozenset(approved_elsewhere)
    found, _notes = candidates(stage, requester, resource, policy, directory)
    eligible: list[str] = []
    excluded: list[Exclusion] = []
    for cand in found:
        reason = exclusion_reason(
            cand.email, requester, policy, directory, prior, resource, principal
        )
        if reason is None:
            eligible.append(cand.email)
        else:
            excluded.append(Exclusion(cand.email, reason))

    # "all" means everyone the rules name; when they name nobody, any one admin stands in.
    required = (len(eligible) or 1) if stage.quorum == "all" else stage.quorum
    fallback = len(eligible) < required
    if fallback:
        # Never let a stage pass silently for want of people: the admins stand in.
        for admin in policy.admins.users:
            if admin in eligible or any(e.email == admin for e in excluded):
                continue
            reason = exclusion_reason(
                admin, requester, policy, directory, prior, resource, principal
            )
            if reason is None:
                eligible.append(admin)
            else:
                excluded.append(Exclusion(admin, reason))
        if len(eligible) < required:
            return None
    return StageState(
        index=index,
        label=stage.label(index),
        approvers=tuple(eligible),
        required=required,
        excluded=tuple(excluded),
        fallback=fallback,
        started_at=now,
    )


@dataclass(frozen=True)
class StageExplanation:
    """What ``policy explain`` says about one stage."""

    index: int
    label: str
    rules: tuple[str, ...]  # as written in the policy
    quorum: str
    approvers: tuple[str, ...]
    excluded: tuple[Exclusion, ...]
    notes: tuple[str, ...]
    fallback: bool
    blocked: bool


@dataclass(frozen=True)
class BreakGlassExplanation:
    """What ``policy explain`` says about a resource's break-glass access (durations as a
    policy writes them)."""

    max: str
    review_within: str
    limit: str | None  # "2/30d", or None when there is no limit
    limit_count: int | None
    limit_per: str | None
    reviewers: BreakGlassReviewers


@dataclass(frozen=True)
class Explanation:
    """Who would be asked, stage by stage, if ``requester`` asked for ``resource`` now, and
    who would review their break-glass access (None: the resource offers none)."""

    requester: str
    resource: Resource
    auto_approve: bool
    may_request: bool
    request_problem: Refusal | None
    stages: tuple[StageExplanation, ...]
    break_glass: BreakGlassExplanation | None = None


def explain_break_glass(
    requester: str, resource: Resource, policy: Policy, directory: DirectoryView
) -> BreakGlassExplanation | None:
    """Whether ``requester`` could break glass on ``resource``: its cap and limit, and who
    would be told of it and review it (the owners, else the admins)."""
    rule = resource.break_glass
    if rule is None:
        return None
    return BreakGlassExplanation(
        max=format_duration(rule.max),
        review_within=format_duration(rule.review_within),
        limit=str(rule.limit) if rule.limit else None,
        limit_count=rule.limit.count if rule.limit else None,
        limit_per=rule.limit.per if rule.limit else None,
        reviewers=break_glass_reviewers(requester, resource, policy, directory),
    )


def explain(
    requester: str, resource: Resource, policy: Policy, directory: DirectoryView, now: datetime
) -> Explanation:
    """Simulate approver resolution for every stage without creating a request.

    Someone who is the only possible approver of an earlier stage must approve it, so they
    are shown as excluded from later stages; others are noted as able to approve only one.
    """
    requester = requester.lower()
    problem = may_request(requester, resource, directory)
    stages: list[StageExplanation] = []
    forced: set[str] = set()
    earlier: dict[str, int] = {}
    for index, stage in enumerate(resource.approval):
        _, notes = candidates(stage, requester, resource, policy, directory)
        state = resolve_stage(index, requester, resource, policy, directory, forced, now)
        for email in state.approvers if state else ():
            if email in earlier and not resource.allow_same_approver_across_stages:
                notes.append(
                    f"{email} can also approve stage {earlier[email] + 1}; "
                    "one person approves at most one stage"
                )
        quorum = "all" if stage.quorum == "all" else str(stage.quorum)
        stages.append(
            StageExplanation(
                index=index,
                label=stage.label(index),
                rules=tuple(str(r) for r in stage.approvers),
                quorum=quorum,
                approvers=state.approvers if state else (),
                excluded=state.excluded if state else (),
                notes=tuple(notes),
                fallback=state.fallback if state else False,
                blocked=state is None,
            )
        )
        if state is not None:
            for email in state.approvers:
                earlier.setdefault(email, index)
            if len(state.approvers) == state.required:
                forced |= set(state.approvers)
    return Explanation(
        requester=requester,
        resource=resource,
        auto_approve=resource.auto_approve,
        may_request=problem is None,
        request_problem=problem,
        stages=tuple(stages),
        break_glass=explain_break_glass(requester, resource, policy, directory),
    )
