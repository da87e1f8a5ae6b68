"""Who approves a stage: dynamic rules resolved against the directory when the stage starts.

Separation of duties lives here first (and is checked again when a decision arrives):
the requester, the people who executed grants (connector identities), people who approved
an earlier stage and people the directory marks inactive are never asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine.access_request import Exclusion, StageState
from engine.directory import DirectoryView
from engine.policy import Policy, Resource, Stage


@dataclass(frozen=True)
class Candidate:
    """Someone a rule names, before exclusions."""

    email: str
    rule: str


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
    found: list[Candidate] = []
    notes: list[str] = []

    def add(emails: Iterable[str], rule: str) -> None:
        emails = list(emails)
        if not emails:
            notes.append(f"{rule} names nobody")
        for email in emails:
            if all(c.email != email.lower() for c in found):
                found.append(Candidate(email.lower(), rule))

    for rule in stage.approvers:
        if rule.startswith("manager"):
            _, _, level = rule.partition(":")
            manager = manager_of(requester, directory, int(level or 1))
            if manager is None:
                notes.append(f"{rule}: {requester} has no manager that far up in the directory")
            add([manager] if manager else [], rule)
        elif rule == "resource_owner":
            add(_expand(resource.owners, directory), rule)
        elif rule == "admins":
            add(policy.admins.users, rule)
        elif rule.startswith("group:"):
            members = directory.members(rule.removeprefix("group:"))
            if members is None:
                notes.append(f"{rule}: no such group in the directory")
            add(members or (), rule)
        elif rule.startswith("user:"):
            add([rule.removeprefix("user:")], rule)
    return found, notes


def _expand(entries: Iterable[str], directory: DirectoryView) -> list[str]:
    out: list[str] = []
    for entry in entries:
        if entry.startswith("group:"):
            out.extend(directory.members(entry.removeprefix("group:")) or ())
        else:
            out.append(entry)
    return out


def exclusion_reason(
    email: str,
    requester: str,
    policy: Policy,
    directory: DirectoryView,
    approved_elsewhere: Iterable[str] = (),
    resource: Resource | None = None,
) -> str | None:
    """Why this person may not approve, or None when they may."""
    if email == requester.lower():
        return "is the requester"
    if email in policy.executor_identities:
        return "executes grants for a connector"
    if email in approved_elsewhere and not (
        resource and resource.allow_same_approver_across_stages
    ):
        return "already approved an earlier stage"
    person = directory.person(email)
    if person is None:
        return "not found in the directory"
    if not person.active:
        return "inactive in the directory"
    return None


def resolve_stage(
    index: int,
    requester: str,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
    approved_elsewhere: Iterable[str],
    now: datetime,
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
        reason = exclusion_reason(cand.email, requester, policy, directory, prior, resource)
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
            reason = exclusion_reason(admin, requester, policy, directory, prior, resource)
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
    rules: tuple[str, ...]
    quorum: str
    approvers: tuple[str, ...]
    excluded: tuple[Exclusion, ...]
    notes: tuple[str, ...]
    fallback: bool
    blocked: bool


@dataclass(frozen=True)
class Explanation:
    """Who would be asked, stage by stage, if ``requester`` asked for ``resource`` now."""

    requester: str
    resource: Resource
    auto_approve: bool
    may_request: bool
    request_problem: str | None
    stages: tuple[StageExplanation, ...]


def explain(
    requester: str, resource: Resource, policy: Policy, directory: DirectoryView, now: datetime
) -> Explanation:
    """Simulate approver resolution for every stage without creating a request.

    Someone who is the only possible approver of an earlier stage must approve it, so they
    are shown as excluded from later stages; others are noted as able to approve only one.
    """
    from engine.lifecycle import requester_problem  # one rule, one place

    requester = requester.lower()
    problem = requester_problem(requester, resource, policy, directory)
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
                rules=stage.approvers,
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
    )
