"""What a schema cannot check in a policy: ids, groups, people, reachable approvers, caps.

Each check yields ``(line, message)``. A resource that failed its schema is still checked
on the keys that validated; a check that reads a failed key (or a failed top-level
section) is skipped, since its answer would only be noise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from engine.durations import format_duration
from engine.policy import (
    AUTO_APPROVAL_MAX_RISK,
    ConnectorConfig,
    DirectoryConfig,
    PolicyDocument,
    Resource,
    Stage,
    expand_members,
)
from engine.policy_fields import RISK_ORDER, Risk
from engine.rules import Admins, Group, Manager, ResourceOwner, User
from engine.workload_checks import workload_problems

Path_ = tuple[str | int, ...]
Found = Iterator[tuple[int, str]]
ConnectorCheck = Callable[[str, ConnectorConfig], str | None]
DirectoryCheck = Callable[[DirectoryConfig], str | None]


class Lines(Protocol):
    """Where a key of the YAML document sits."""

    def line_of(self, path: Iterable[str | int]) -> int: ...


@dataclass(frozen=True)
class Checks:
    """Checks of adapter settings the engine cannot judge, reported at their lines."""

    connector_types: Collection[str] | None = None
    connector: ConnectorCheck | None = None
    directory: DirectoryCheck | None = None


@dataclass(frozen=True)
class CheckedResource:
    """A resource at ``index`` of the file; ``failed`` names its keys that failed the schema
    (they hold stand-ins, and checks that read them are skipped)."""

    index: int
    resource: Resource
    failed: frozenset[str] = field(default_factory=frozenset)

    def valid(self, *keys: str) -> bool:
        return not self.failed.intersection(keys)


def _above(risk: Risk, limit: Risk) -> bool:
    return RISK_ORDER.index(risk) > RISK_ORDER.index(limit)


@dataclass(frozen=True)
class _Context:
    doc: PolicyDocument
    lines: Lines
    failed: frozenset[str]

    @property
    def static(self) -> bool:
        # A section that failed its schema is unknown, not empty: skip checks that rely on it.
        return self.doc.directory.type == "static" and "directory" not in self.failed

    def group_exists(self, name: str, path: Path_) -> Found:
        if self.static and name not in self.doc.directory.groups:
            yield self.lines.line_of(path), f"unknown group '{name}' (not in directory.groups)"

    def person_exists(self, email: str, path: Path_, role: str) -> Found:
        if self.static and email not in {p.email for p in self.doc.directory.people}:
            yield self.lines.line_of(path), f"{role} {email} is not in directory.people"

    def named_exists(self, entry: Group | User, path: Path_, role: str) -> Found:
        if isinstance(entry, Group):
            yield from self.group_exists(entry.name, path)
        else:
            yield from self.person_exists(entry.email, path, role)


def semantic_problems(
    doc: PolicyDocument,
    resources: list[CheckedResource],
    lines: Lines,
    checks: Checks,
    failed: frozenset[str] = frozenset(),
) -> Found:
    """Cross-references a schema cannot check, over the whole document."""
    ctx = _Context(doc, lines, failed)
    if checks.directory is not None and (problem := checks.directory(doc.directory)):
        yield lines.line_of(("directory",)), problem
    yield from _directory_problems(ctx)
    yield from _connector_problems(ctx, checks)
    seen_ids: set[str] = set()
    for checked in resources:
        res, base = checked.resource, ("resources", checked.index)
        if checked.valid("id"):
            if res.id in seen_ids:
                yield lines.line_of((*base, "id")), f"duplicate resource id '{res.id}'"
            seen_ids.add(res.id)
        yield from _resource_problems(ctx, checked, base)
        yield from _extension_problems(checked, base, lines)
        yield from _who_problems(ctx, checked, base)
    if "reviews" not in failed:
        yield from _review_problems(ctx, {c.resource.id for c in resources})
    if not {"workloads", "api", "admins", "connectors"} & failed:
        people = {p.email for p in doc.directory.people} if ctx.static else None
        yield from workload_problems(doc, resources, lines, people)


def _directory_problems(ctx: _Context) -> Found:
    doc, lines = ctx.doc, ctx.lines
    people = {p.email for p in doc.directory.people}
    seen_people: set[str] = set()
    seen_chat_ids: dict[str, str] = {}
    for i, person in enumerate(doc.directory.people):
        at = lines.line_of(("directory", "people", i))
        if person.email in seen_people:
            yield at, f"person {person.email} is listed twice in directory.people"
        seen_people.add(person.email)
        if person.manager is not None and person.manager == person.email:
            yield at, f"{person.email} cannot be their own manager"
        elif ctx.static and person.manager is not None and person.manager not in people:
            yield (
                lines.line_of(("directory", "people", i, "manager")),
                f"manager {person.manager} of {person.email} is not in directory.people",
            )
        for attr in ("slack_id", "teams_id"):
            chat_id = getattr(person, attr)
            if chat_id is None:
                continue
            key = f"{attr}:{chat_id}"
            if key in seen_chat_ids:
                yield (
                    at,
                    f"{attr} {chat_id} is used by both {seen_chat_ids[key]} and {person.email}",
                )
            seen_chat_ids[key] = person.email
    if ctx.static:
        for name, members in doc.directory.groups.items():
            for j, member in enumerate(members):
                if member not in people:
                    yield (
                        lines.line_of(("directory", "groups", name, j)),
                        f"member {member} of group '{name}' is not in directory.people",
                    )
        for j, admin in enumerate(doc.admins.users):
            if admin not in people:
                yield (
                    lines.line_of(("admins", "users", j)),
                    f"admin {admin} is not in directory.people",
                )


def _connector_problems(ctx: _Context, checks: Checks) -> Found:
    doc, lines = ctx.doc, ctx.lines
    known = checks.connector_types
    for name, conn in doc.connectors.items():
        if known is not None and conn.type not in known:
            yield (
                lines.line_of(("connectors", name)),
                f"connector '{name}' has unknown type '{conn.type}'; "
                f"known types: {', '.join(sorted(known))}",
            )
    for admin in doc.admins.users:
        if admin in doc.executor_identities:
            yield (
                lines.line_of(("admins", "users")),
                f"{admin} executes grants for a connector and so cannot be an admin who approves",
            )


def _resource_problems(ctx: _Context, checked: CheckedResource, base: Path_) -> Found:
    """Caps and limits of one resource that must agree with each other."""
    res, lines, valid = checked.resource, ctx.lines, checked.valid
    known_connectors = "connectors" not in ctx.failed
    if valid("grant") and known_connectors and res.grant.connector not in ctx.doc.connectors:
        defined = sorted(ctx.doc.connectors)
        yield (
            lines.line_of((*base, "grant", "connector")),
            f"resource '{res.id}' uses unknown connector '{res.grant.connector}'"
            + (f"; defined: {', '.join(defined)}" if defined else ""),
        )
    if valid("duration") and res.duration.default > res.duration.max:
        yield (
            lines.line_of((*base, "duration", "default")),
            f"duration default {format_duration(res.duration.default)} is above "
            f"max {format_duration(res.duration.max)}",
        )
    glass = res.break_glass
    if valid("duration", "break_glass") and glass is not None and glass.max > res.duration.max:
        yield (
            lines.line_of((*base, "break_glass", "max")),
            f"break_glass max {format_duration(glass.max)} is above the "
            f"resource's duration max {format_duration(res.duration.max)}",
        )
    just = res.justification
    if valid("justification") and just.min_length > just.max_length:
        yield (
            lines.line_of((*base, "justification", "min_length")),
            f"justification min_length {just.min_length} is above max_length {just.max_length}",
        )
    if valid("justification") and just.ticket is not None:
        try:
            re.compile(just.ticket)
        except re.error as exc:
            yield (
                lines.line_of((*base, "justification", "ticket")),
                f"ticket pattern is not a valid regular expression: {exc}",
            )
    if valid("approval", "risk") and res.auto_approve and _above(res.risk, AUTO_APPROVAL_MAX_RISK):
        yield (
            lines.line_of((*base, "approval")),
            f"resource '{res.id}' is {res.risk} risk; auto-approval is allowed up to "
            f"{AUTO_APPROVAL_MAX_RISK} risk only, list approval stages instead",
        )
    nudge = res.nudge_after
    late = nudge is not None and nudge >= res.pending_timeout
    if valid("nudge_after", "pending_timeout") and nudge is not None and late:
        yield (
            lines.line_of((*base, "nudge_after")),
            f"nudge_after {format_duration(nudge)} is not before the "
            f"pending_timeout {format_duration(res.pending_timeout)}; the stage would "
            "time out first",
        )


def _extension_problems(checked: CheckedResource, base: Path_, lines: Lines) -> Found:
    """Self-service extension grants time without an approver: bounded like auto-approval."""
    res, rule = checked.resource, checked.resource.extend
    if rule is None or not checked.valid("extend"):
        return
    at = lines.line_of((*base, "extend", "self_service"))
    if checked.valid("risk") and _above(res.risk, AUTO_APPROVAL_MAX_RISK):
        yield (
            at,
            f"resource '{res.id}' is {res.risk} risk; self-service extension is allowed up "
            f"to {AUTO_APPROVAL_MAX_RISK} risk only (it adds time without an approver)",
        )
    if checked.valid("duration") and rule.self_service > res.duration.max:
        yield (
            at,
            f"extend self_service {format_duration(rule.self_service)} is above the "
            f"resource's duration max {format_duration(res.duration.max)}",
        )
    if rule.step is not None and rule.step > rule.self_service:
        yield (
            lines.line_of((*base, "extend", "step")),
            f"extend step {format_duration(rule.step)} is above its self_service cap "
            f"{format_duration(rule.self_service)}",
        )


def _who_problems(ctx: _Context, checked: CheckedResource, base: Path_) -> Found:
    """Owners, requesters and approvers a resource names must exist and be enough."""
    res = checked.resource
    if checked.valid("owners"):
        for j, owner in enumerate(res.owners):
            yield from ctx.named_exists(owner, (*base, "owners", j), "owner")
    if checked.valid("requesters"):
        for j, who in enumerate(res.requesters or ()):
            if isinstance(who, Group | User):
                yield from ctx.named_exists(who, (*base, "requesters", j), "requester")
    if not checked.valid("approval"):
        return
    for k, stage in enumerate(res.approval):
        spath: Path_ = (*base, "approval", k)
        for j, rule in enumerate(stage.approvers):
            rpath: Path_ = (*spath, "approvers", j) if len(stage.approvers) > 1 else spath
            if isinstance(rule, Group | User):
                yield from ctx.named_exists(rule, rpath, "approver")
        bound = None
        if not ctx.failed and checked.valid("owners"):
            bound = _static_approver_bound(stage, res, ctx.doc)
        rules = ", ".join(str(r) for r in stage.approvers)
        if bound == 0:
            yield (
                ctx.lines.line_of(spath),
                f"{stage.label(k)} of resource '{res.id}' has no possible approver "
                f"(nobody is named by {rules})",
            )
        elif bound is not None and isinstance(stage.quorum, int) and stage.quorum > bound:
            yield (
                ctx.lines.line_of(spath),
                f"{stage.label(k)} of resource '{res.id}' needs {stage.quorum} approvals "
                f"but only {bound} {'person' if bound == 1 else 'people'} can approve it",
            )


def _static_approver_bound(stage: Stage, res: Resource, doc: PolicyDocument) -> int | None:
    """How many people could approve a stage at most, or None when it depends on the requester."""
    if doc.directory.type != "static":
        return None
    if any(isinstance(rule, Manager) for rule in stage.approvers):
        return None  # a manager rule depends on who asks
    people: set[str] = set()
    for rule in stage.approvers:
        if isinstance(rule, ResourceOwner):
            people |= set(expand_members(res.owners, doc.directory.groups.get))
        elif isinstance(rule, Admins):
            people |= set(doc.admins.users)
        elif isinstance(rule, Group):
            people |= set(doc.directory.groups.get(rule.name, ()))
        elif isinstance(rule, User):
            people.add(rule.email)
    return len(people - doc.executor_identities)


def _review_problems(ctx: _Context, resource_ids: set[str]) -> Found:
    """Campaigns must name resources that exist, reviewers that exist, a cadence past due."""
    seen: set[str] = set()
    for i, review in enumerate(ctx.doc.reviews):
        base: Path_ = ("reviews", i)
        if review.id in seen:
            yield ctx.lines.line_of((*base, "id")), f"duplicate review id '{review.id}'"
        seen.add(review.id)
        for j, rid in enumerate(review.resources):
            if rid != "all" and rid not in resource_ids:
                yield (
                    ctx.lines.line_of((*base, "resources", j)),
                    f"review '{review.id}' names unknown resource '{rid}'",
                )
        if review.every is not None and review.every <= review.due:
            yield (
                ctx.lines.line_of((*base, "every")),
                f"review '{review.id}' runs every {format_duration(review.every)} but is due "
                f"after {format_duration(review.due)}; campaigns would overlap",
            )
        for key in ("reviewer", "fallback"):
            rule = getattr(review, key)
            if isinstance(rule, Group | User):
                yield from ctx.named_exists(rule, (*base, key), key)
