"""Policy as code: the YAML file that says who may get what, for how long, approved by whom.

A policy is loaded whole or not at all. Every problem found is reported with the line it
sits on (``FILE:LINE: message``) so a CI check or an admin's ``reload`` can point at it.
The version of a policy is the SHA-256 of its bytes; requests and audit events record it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.durations import DurationError, format_duration, parse_duration

Risk = Literal["low", "medium", "high", "critical"]
RISK_ORDER: tuple[Risk, ...] = ("low", "medium", "high", "critical")
# Auto-approval is a convenience for low-stakes access; above this it must be a human call.
AUTO_APPROVAL_MAX_RISK: Risk = "medium"
JUSTIFICATION_HARD_LIMIT = 2000

_STAGE_RULE = re.compile(
    r"^(manager(:[1-9])?|resource_owner|admins|group:[^\s]+|user:[^\s@]+@[^\s@]+)$"
)
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+$")


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError("a duration is written as text such as 30m, 4h or 2d")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonEntry(_Strict):
    """One person in the static directory."""

    email: str
    name: str
    manager: str | None = None
    slack_id: str | None = None
    teams_id: str | None = None
    active: bool = True

    @field_validator("email", "manager")
    @classmethod
    def _lower_email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _EMAIL.match(v):
            raise ValueError(f"'{v}' is not an email address")
        return v.lower()


class DirectoryConfig(_Strict):
    """Where people and groups come from; ``static`` keeps them in this file."""

    type: Literal["static", "ldap", "scim"] = "static"
    people: tuple[PersonEntry, ...] = ()
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Settings of non-static directories (LDAP, SCIM) live beside ``type``.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("groups")
    @classmethod
    def _lower_members(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {name: tuple(m.lower() for m in members) for name, members in v.items()}


class AdminsConfig(_Strict):
    """Who administers Clearance and where admin commands are accepted."""

    channel: str | None = None
    teams_channel: str | None = None
    users: tuple[str, ...] = ()

    @field_validator("users")
    @classmethod
    def _lower_users(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(u.lower() for u in v)


class ConnectorConfig(BaseModel):
    """A system that grants access (LDAP, SCIM, Slack user groups, ...).

    Type-specific keys are kept as given; the adapter for ``type`` validates them.
    ``identity`` is the account the connector acts as: it may never approve.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    identity: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class GrantTarget(_Strict):
    """The group a grant adds the principal to, in one connector."""

    connector: str
    group: str


class DurationRule(_Strict):
    """How long access may last: what the form offers and the hard cap."""

    default: timedelta
    max: timedelta

    _parse = field_validator("default", "max", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


class JustificationRule(_Strict):
    """What a justification must contain before a request is accepted."""

    min_length: int = Field(default=10, ge=0, le=JUSTIFICATION_HARD_LIMIT)
    max_length: int = Field(default=JUSTIFICATION_HARD_LIMIT, ge=1, le=JUSTIFICATION_HARD_LIMIT)
    ticket: str | None = None  # a regex; when set, a matching ticket id is required

    @property
    def ticket_required(self) -> bool:
        return self.ticket is not None


class Stage(_Strict):
    """One approval stage: who may approve (rules) and how many must."""

    approvers: tuple[str, ...]
    quorum: int | Literal["all"] = 1
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, data: object) -> object:
        if isinstance(data, str):
            return {"approvers": [data]}
        return data

    @field_validator("approvers")
    @classmethod
    def _check_rules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("a stage needs at least one approver rule")
        for rule in v:
            if not _STAGE_RULE.match(rule):
                raise ValueError(
                    f"unknown approver rule '{rule}'; use manager, manager:2, resource_owner, "
                    "admins, group:<name> or user:<email>"
                )
        return tuple(r if not r.startswith("user:") else r.lower() for r in v)

    @field_validator("quorum")
    @classmethod
    def _check_quorum(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("quorum must be 1 or more, or 'all'")
        return v

    def label(self, index: int) -> str:
        return self.name or f"stage {index + 1}"


class BreakGlassRule(_Strict):
    """Self-service emergency access: no approvers, a loud alert, a short cap, a review after."""

    max: timedelta

    _parse = field_validator("max", mode="before")(classmethod(lambda cls, v: _duration(v)))


class ExtensionRule(_Strict):
    """What the requester's Extend button may add without asking the approvers again.

    ``self_service`` caps the total added that way to one grant; ``step`` is what one click
    adds (the resource's default duration when unset). Beyond the cap, Extend opens a new
    request that follows the approval chain.
    """

    self_service: timedelta
    step: timedelta | None = None

    _parse = field_validator("self_service", "step", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )


class Resource(_Strict):
    """Something access is requested to, and every rule that governs it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    name: str
    description: str = ""
    risk: Risk
    owners: tuple[str, ...] = ()
    grant: GrantTarget
    duration: DurationRule
    justification: JustificationRule = JustificationRule()
    requesters: tuple[str, ...] | None = None
    approval: tuple[Stage, ...]
    auto_approve: bool = False
    # By default one person approves at most one stage of a request (four eyes per stage).
    allow_same_approver_across_stages: bool = False
    reminders: tuple[timedelta, ...] = (timedelta(days=1), timedelta(hours=1))
    pending_timeout: timedelta = timedelta(hours=24)
    # When a stage still waits this long, its approvers are reminded and the admins told;
    # by default halfway to the timeout.
    nudge_after: timedelta | None = None
    break_glass: BreakGlassRule | None = None
    extend: ExtensionRule | None = None
    drift: Literal["report", "revoke"] = "report"
    # People who hold the group outside Clearance (service accounts, break-fix admins):
    # drift reconciliation neither reports nor removes them.
    baseline_members: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _approval_auto(cls, data: object) -> object:
        # Only the "auto" spelling is rewritten here; every other problem with the key is
        # reported by field validation, beside the resource's other problems.
        if isinstance(data, dict) and data.get("approval") == "auto":
            return {**data, "approval": (), "auto_approve": True}
        return data

    @field_validator("approval", mode="before")
    @classmethod
    def _check_approval(cls, v: object) -> object:
        if isinstance(v, str) or not isinstance(v, list | tuple):
            raise ValueError("approval must be 'auto' or a list of stages")
        return v

    @model_validator(mode="after")
    def _stages_unless_auto(self) -> Resource:
        if not self.auto_approve and not self.approval:
            raise ValueError("approval needs at least one stage (or 'auto')")
        return self

    @field_validator("reminders", mode="before")
    @classmethod
    def _parse_reminders(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            return tuple(_duration(x) for x in v)
        return v

    @field_validator("pending_timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, v: object) -> timedelta:
        return _duration(v)

    @field_validator("nudge_after", mode="before")
    @classmethod
    def _parse_nudge(cls, v: object) -> timedelta | None:
        return None if v is None else _duration(v)

    @property
    def nudge_delay(self) -> timedelta:
        """How long a stage waits before its approvers are reminded."""
        return self.nudge_after if self.nudge_after is not None else self.pending_timeout / 2

    @field_validator("baseline_members")
    @classmethod
    def _lower_baseline(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for member in v:
            if not _EMAIL.match(member):
                raise ValueError(f"baseline member '{member}' is not an email address")
        return tuple(m.lower() for m in v)

    @field_validator("owners")
    @classmethod
    def _lower_owners(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(o if o.startswith("group:") else o.lower() for o in v)


class PolicyDocument(_Strict):
    """The validated content of a policy file."""

    admins: AdminsConfig = AdminsConfig()
    directory: DirectoryConfig = DirectoryConfig()
    connectors: dict[str, ConnectorConfig] = Field(default_factory=dict)
    resources: tuple[Resource, ...]


@dataclass(frozen=True)
class Policy:
    """A loaded policy: its content, where it came from and its version (SHA-256 of the bytes)."""

    document: PolicyDocument
    version: str
    source: str

    @property
    def resources(self) -> tuple[Resource, ...]:
        return self.document.resources

    @property
    def admins(self) -> AdminsConfig:
        return self.document.admins

    def resource(self, resource_id: str) -> Resource | None:
        for res in self.document.resources:
            if res.id == resource_id:
                return res
        return None

    def is_admin(self, email: str) -> bool:
        return email.lower() in self.document.admins.users

    @property
    def executor_identities(self) -> frozenset[str]:
        """Accounts that carry out grants; separation of duties keeps them from approving."""
        return frozenset(
            c.identity.lower() for c in self.document.connectors.values() if c.identity
        )

    def summary(self) -> str:
        res = self.document.resources
        tiers = ", ".join(
            f"{sum(1 for r in res if r.risk == tier)} {tier}"
            for tier in RISK_ORDER
            if any(r.risk == tier for r in res)
        )
        return (
            f"{len(res)} resource{'s' if len(res) != 1 else ''} ({tiers}), "
            f"{len(self.document.connectors)} connector(s), "
            f"{len(self.document.admins.users)} admin(s), version {self.version[:12]}"
        )


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, at a line."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class PolicyError(Exception):
    """A policy that was refused, with every problem found in it."""

    problems: list[PolicyProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


Path_ = tuple[str | int, ...]


class _LineMap:
    """Where each key and list item sits in the YAML text, so errors can name a line."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[int, str]] = []

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, key))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
                # The key's own line is the better pointer for the whole entry.
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_of(self, path: Iterable[str | int]) -> int:
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), 1)


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


ConnectorCheck = Callable[[str, "ConnectorConfig"], str | None]
DirectoryCheck = Callable[["DirectoryConfig"], str | None]


@dataclass(frozen=True)
class Checks:
    """Checks of adapter settings the engine cannot judge, reported at their lines."""

    connector_types: Collection[str] | None = None
    connector: ConnectorCheck | None = None
    directory: DirectoryCheck | None = None


def parse_policy(
    text: bytes | str,
    source: str = "<policy>",
    checks: Checks | None = None,
) -> Policy:
    """Validate policy text and return it loaded, or raise PolicyError listing every problem."""
    raw = text.encode() if isinstance(text, str) else text
    version = hashlib.sha256(raw).hexdigest()
    problems: list[PolicyProblem] = []

    def problem(line: int, message: str) -> None:
        problems.append(PolicyProblem(source, line, message))

    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError([PolicyProblem(source, 1, "the file is not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([PolicyProblem(source, line, f"YAML syntax: {reason}")]) from None

    lines = _LineMap()
    if node is not None:
        lines.walk(node)
    for line, key in lines.duplicates:
        problem(line, f"duplicate key '{key}' (the earlier value would be silently lost)")
    if not isinstance(data, dict):
        problem(1, "a policy is a mapping with at least a 'resources' list")
        raise PolicyError(problems)
    if isinstance(data.get("directory"), dict):
        # Non-static directories carry their own settings; keep them apart from the schema.
        directory = dict(data["directory"])
        known = {"type", "people", "groups"}
        options = {k: v for k, v in directory.items() if k not in known}
        data["directory"] = {k: v for k, v in directory.items() if k in known} | {
            "options": options
        }

    document, resources, failed = _validate_sections(data, lines, problem)
    for line, message in _semantic_problems(document, resources, lines, checks or Checks(), failed):
        problem(line, message)
    if problems:
        problems.sort(key=lambda p: p.line)
        raise PolicyError(problems)
    return Policy(
        document=document.model_copy(update={"resources": tuple(r for _, r in resources)}),
        version=version,
        source=source,
    )


def _message(err: Any) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    return str(err["msg"]).removeprefix("Value error, ")


def _validate_sections(
    data: dict[str, Any], lines: _LineMap, problem: Callable[[int, str], None]
) -> tuple[PolicyDocument, list[tuple[int, Resource]], frozenset[str]]:
    """Validate each section and each resource on its own, so one run reports everything.

    Resources that fail the schema are left out of the cross-reference checks; the rest
    are still checked, except against top-level sections that failed (returned as the
    third value), which would only add noise. The caller refuses the policy if any
    problem was found.
    """

    def report(exc: ValidationError, prefix: Path_) -> None:
        for err in exc.errors():
            loc = (*prefix, *tuple(err["loc"]))
            where = _dotted(loc)
            text = _message(err)
            problem(lines.line_of(loc), f"{where}: {text}" if where else text)

    top = {k: v for k, v in data.items() if k != "resources"}
    raw_resources = data.get("resources")
    failed: frozenset[str] = frozenset()
    try:
        document = PolicyDocument.model_validate({**top, "resources": ()})
    except ValidationError as exc:
        report(exc, ())
        failed = frozenset(_failed_keys(exc))
        document = PolicyDocument.model_validate(
            {k: v for k, v in {**top, "resources": ()}.items() if k not in failed}
        )
    resources: list[tuple[int, Resource]] = []
    if raw_resources is None:
        problem(lines.line_of(()), "missing required key 'resources' (a list of resources)")
    elif not isinstance(raw_resources, list):
        problem(lines.line_of(("resources",)), "resources: must be a list of resources")
    else:
        for index, item in enumerate(raw_resources):
            try:
                resources.append((index, Resource.model_validate(item)))
            except ValidationError as exc:
                report(exc, ("resources", index))
    return document, resources, failed


def _failed_keys(exc: ValidationError) -> set[str]:
    """Top-level sections that failed; they are checked as if absent (already reported)."""
    return {str(err["loc"][0]) for err in exc.errors() if err["loc"]}


def load_policy(
    path: str | Path,
    checks: Checks | None = None,
) -> Policy:
    """Read and validate the policy file at ``path``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(
            [PolicyProblem(str(p), 1, f"cannot read the file: {exc.strerror}")]
        ) from None
    return parse_policy(raw, str(p), checks)


def _semantic_problems(
    doc: PolicyDocument,
    resources: list[tuple[int, Resource]],
    lines: _LineMap,
    checks: Checks,
    failed: frozenset[str] = frozenset(),
) -> Iterator[tuple[int, str]]:
    """Cross-references a schema cannot check: ids, groups, people, reachable approvers."""
    connector_types = checks.connector_types
    if checks.directory is not None and (problem := checks.directory(doc.directory)):
        yield lines.line_of(("directory",)), problem
    # A section that failed its schema is unknown, not empty: skip checks that rely on it.
    static = doc.directory.type == "static" and "directory" not in failed
    people = {p.email: p for p in doc.directory.people}
    groups = doc.directory.groups

    seen_people: set[str] = set()
    seen_chat_ids: dict[str, str] = {}
    for i, person in enumerate(doc.directory.people):
        at = lines.line_of(("directory", "people", i))
        if person.email in seen_people:
            yield at, f"person {person.email} is listed twice in directory.people"
        seen_people.add(person.email)
        if person.manager is not None and person.manager == person.email:
            yield at, f"{person.email} cannot be their own manager"
        elif static and person.manager is not None and person.manager not in people:
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

    if static:
        for name, members in groups.items():
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

    executors = {c.identity.lower() for c in doc.connectors.values() if c.identity}
    for name, conn in doc.connectors.items():
        at = lines.line_of(("connectors", name))
        if connector_types is not None and conn.type not in connector_types:
            yield (
                at,
                (
                    f"connector '{name}' has unknown type '{conn.type}'; "
                    f"known types: {', '.join(sorted(connector_types))}"
                ),
            )
    for admin in doc.admins.users:
        if admin in executors:
            yield (
                lines.line_of(("admins", "users")),
                (f"{admin} executes grants for a connector and so cannot be an admin who approves"),
            )

    def group_exists(rule: str, path: Path_) -> Iterator[tuple[int, str]]:
        name = rule.removeprefix("group:")
        if static and name not in groups:
            yield lines.line_of(path), f"unknown group '{name}' (not in directory.groups)"

    def person_exists(email: str, path: Path_, role: str) -> Iterator[tuple[int, str]]:
        if static and email not in people:
            yield lines.line_of(path), f"{role} {email} is not in directory.people"

    seen_ids: set[str] = set()
    for i, res in resources:
        base: Path_ = ("resources", i)
        if res.id in seen_ids:
            yield lines.line_of((*base, "id")), f"duplicate resource id '{res.id}'"
        seen_ids.add(res.id)
        if res.grant.connector not in doc.connectors and "connectors" not in failed:
            yield (
                lines.line_of((*base, "grant", "connector")),
                (
                    f"resource '{res.id}' uses unknown connector '{res.grant.connector}'"
                    + (f"; defined: {', '.join(sorted(doc.connectors))}" if doc.connectors else "")
                ),
            )
        if res.duration.default > res.duration.max:
            yield (
                lines.line_of((*base, "duration", "default")),
                (
                    f"duration default {format_duration(res.duration.default)} is above "
                    f"max {format_duration(res.duration.max)}"
                ),
            )
        if res.break_glass is not None and res.break_glass.max > res.duration.max:
            yield (
                lines.line_of((*base, "break_glass", "max")),
                (
                    f"break_glass max {format_duration(res.break_glass.max)} is above the "
                    f"resource's duration max {format_duration(res.duration.max)}"
                ),
            )
        just = res.justification
        if just.min_length > just.max_length:
            yield (
                lines.line_of((*base, "justification", "min_length")),
                (
                    f"justification min_length {just.min_length} is above "
                    f"max_length {just.max_length}"
                ),
            )
        if just.ticket is not None:
            try:
                re.compile(just.ticket)
            except re.error as exc:
                yield (
                    lines.line_of((*base, "justification", "ticket")),
                    (f"ticket pattern is not a valid regular expression: {exc}"),
                )
        if res.auto_approve and RISK_ORDER.index(res.risk) > RISK_ORDER.index(
            AUTO_APPROVAL_MAX_RISK
        ):
            yield (
                lines.line_of((*base, "approval")),
                (
                    f"resource '{res.id}' is {res.risk} risk; auto-approval is allowed up to "
                    f"{AUTO_APPROVAL_MAX_RISK} risk only, list approval stages instead"
                ),
            )
        yield from _extension_problems(res, base, lines)
        if res.nudge_after is not None and res.nudge_after >= res.pending_timeout:
            yield (
                lines.line_of((*base, "nudge_after")),
                (
                    f"nudge_after {format_duration(res.nudge_after)} is not before the "
                    f"pending_timeout {format_duration(res.pending_timeout)}; the stage would "
                    "time out first"
                ),
            )
        for j, owner in enumerate(res.owners):
            path: Path_ = (*base, "owners", j)
            if owner.startswith("group:"):
                yield from group_exists(owner, path)
            else:
                yield from person_exists(owner, path, "owner")
        for j, who in enumerate(res.requesters or ()):
            path = (*base, "requesters", j)
            if who.startswith("group:"):
                yield from group_exists(who, path)
            elif who != "everyone":
                yield from person_exists(who.removeprefix("user:").lower(), path, "requester")
        for k, stage in enumerate(res.approval):
            spath: Path_ = (*base, "approval", k)
            for j, rule in enumerate(stage.approvers):
                rpath: Path_ = (*spath, "approvers", j) if len(stage.approvers) > 1 else spath
                if rule.startswith("group:"):
                    yield from group_exists(rule, rpath)
                elif rule.startswith("user:"):
                    yield from person_exists(rule.removeprefix("user:"), rpath, "approver")
            bound = _static_approver_bound(stage, res, doc) if not failed else None
            if bound == 0:
                yield (
                    lines.line_of(spath),
                    (
                        f"{stage.label(k)} of resource '{res.id}' has no possible approver "
                        f"(nobody is named by {', '.join(stage.approvers)})"
                    ),
                )
            elif bound is not None and isinstance(stage.quorum, int) and stage.quorum > bound:
                yield (
                    lines.line_of(spath),
                    (
                        f"{stage.label(k)} of resource '{res.id}' needs {stage.quorum} approvals "
                        f"but only {bound} {'person' if bound == 1 else 'people'} can approve it"
                    ),
                )


def _extension_problems(res: Resource, base: Path_, lines: _LineMap) -> Iterator[tuple[int, str]]:
    """Self-service extension grants time without an approver: bounded like auto-approval."""
    rule = res.extend
    if rule is None:
        return
    if RISK_ORDER.index(res.risk) > RISK_ORDER.index(AUTO_APPROVAL_MAX_RISK):
        yield (
            lines.line_of((*base, "extend", "self_service")),
            (
                f"resource '{res.id}' is {res.risk} risk; self-service extension is allowed up "
                f"to {AUTO_APPROVAL_MAX_RISK} risk only (it adds time without an approver)"
            ),
        )
    if rule.self_service > res.duration.max:
        yield (
            lines.line_of((*base, "extend", "self_service")),
            (
                f"extend self_service {format_duration(rule.self_service)} is above the "
                f"resource's duration max {format_duration(res.duration.max)}"
            ),
        )
    if rule.step is not None and rule.step > rule.self_service:
        yield (
            lines.line_of((*base, "extend", "step")),
            (
                f"extend step {format_duration(rule.step)} is above its self_service cap "
                f"{format_duration(rule.self_service)}"
            ),
        )


def _static_approver_bound(stage: Stage, res: Resource, doc: PolicyDocument) -> int | None:
    """How many people could approve a stage at most, or None when it depends on the requester."""
    if doc.directory.type != "static":
        return None
    people: set[str] = set()
    dynamic = 0
    executors = {c.identity.lower() for c in doc.connectors.values() if c.identity}
    for rule in stage.approvers:
        if rule.startswith("manager"):
            dynamic += 1
        elif rule == "resource_owner":
            people |= set(expand_members(res.owners, doc.directory.groups))
        elif rule == "admins":
            people |= set(doc.admins.users)
        elif rule.startswith("group:"):
            people |= set(doc.directory.groups.get(rule.removeprefix("group:"), ()))
        elif rule.startswith("user:"):
            people.add(rule.removeprefix("user:"))
    people -= executors
    if dynamic:
        return None  # a manager rule depends on who asks
    return len(people)


def expand_members(entries: Iterable[str], groups: Mapping[str, Iterable[str]]) -> list[str]:
    """People named by a list of emails and ``group:<name>`` entries, in order, without repeats."""
    out: list[str] = []
    for entry in entries:
        names = (
            groups.get(entry.removeprefix("group:"), ()) if entry.startswith("group:") else (entry,)
        )
        for name in names:
            if name.lower() not in out:
                out.append(name.lower())
    return out
