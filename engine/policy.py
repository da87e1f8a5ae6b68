"""Policy as code: the model of the YAML file that says who may get what, for how long,
approved by whom.

This module holds the validated shapes; ``engine.policy_loading`` reads a file into them
(with line numbers for every problem) and ``engine.policy_checks`` checks what a schema
cannot. The version of a policy is the SHA-256 of its bytes; requests and audit events
record it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.durations import count_per_window, format_duration
from engine.policy_fields import RISK_ORDER, Risk
from engine.policy_fields import StrictModel as _Strict
from engine.policy_fields import as_duration as _duration
from engine.review_policy import ReviewPolicy
from engine.rules import (
    ApproverRule,
    Group,
    OwnerEntry,
    RequesterEntry,
    is_email,
    parse_approver_rule,
    parse_owner,
    parse_requester,
)
from engine.workload_policy import ApiConfig, WorkloadPolicy

# Auto-approval is a convenience for low-stakes access; above this it must be a human call.
AUTO_APPROVAL_MAX_RISK: Risk = "medium"
JUSTIFICATION_HARD_LIMIT = 2000


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
        if not is_email(v):
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

    approvers: tuple[ApproverRule, ...]
    quorum: int | Literal["all"] = 1
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, data: object) -> object:
        if isinstance(data, str):
            return {"approvers": [data]}
        return data

    @field_validator("approvers", mode="before")
    @classmethod
    def _parse_rules(cls, v: object) -> object:
        if not isinstance(v, list | tuple):
            return v
        if not v:
            raise ValueError("a stage needs at least one approver rule")
        return tuple(parse_approver_rule(r) if isinstance(r, str) else r for r in v)

    @field_validator("quorum")
    @classmethod
    def _check_quorum(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("quorum must be 1 or more, or 'all'")
        return v

    def label(self, index: int) -> str:
        return self.name or f"stage {index + 1}"


class BreakGlassLimit(_Strict):
    """At most ``count`` break-glass requests of one person for one resource per ``window``,
    written ``2/30d``; beyond it a break-glass ask goes to the approvers."""

    count: int
    window: timedelta

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: object) -> object:
        count, window = count_per_window(data, "a limit", "2/30d (2 in 30 days)")
        if count < 1:
            raise ValueError(
                f"'{data}' allows no break-glass at all; the count must be 1 or more "
                "(leave break_glass out to offer none)"
            )
        return {"count": count, "window": window}

    @property
    def per(self) -> str:
        """The window as people count it: ``30d`` rather than ``4w2d``."""
        days, rest = divmod(int(self.window.total_seconds()), 86400)
        return f"{days}d" if days and not rest else format_duration(self.window)

    def __str__(self) -> str:
        return f"{self.count}/{self.per}"


class BreakGlassRule(_Strict):
    """Self-service emergency access: no approvers, a loud alert, a short cap, a review after.

    ``review_within`` is how long the mandatory review after it may take; ``limit`` how
    often one person may break glass on the resource (unlimited when unset).
    """

    max: timedelta
    review_within: timedelta = timedelta(hours=24)
    limit: BreakGlassLimit | None = None

    _parse = field_validator("max", "review_within", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


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
    owners: tuple[OwnerEntry, ...] = ()
    grant: GrantTarget
    duration: DurationRule
    justification: JustificationRule = JustificationRule()
    requesters: tuple[RequesterEntry, ...] | None = None
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
    # Service accounts a person may ask for this resource on behalf of (the card shows both).
    on_behalf: tuple[str, ...] = ()

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

    @field_validator("baseline_members", "on_behalf")
    @classmethod
    def _lower_emails(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        role = "baseline member" if info.field_name == "baseline_members" else "on_behalf entry"
        for member in v:
            if not is_email(member):
                raise ValueError(f"{role} '{member}' is not an email address")
        return tuple(m.lower() for m in v)

    @field_validator("owners", mode="before")
    @classmethod
    def _parse_owners(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            return tuple(parse_owner(o) if isinstance(o, str) else o for o in v)
        return v

    @field_validator("requesters", mode="before")
    @classmethod
    def _parse_requesters(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            return tuple(parse_requester(o) if isinstance(o, str) else o for o in v)
        return v


class PolicyDocument(_Strict):
    """The validated content of a policy file."""

    admins: AdminsConfig = AdminsConfig()
    directory: DirectoryConfig = DirectoryConfig()
    connectors: dict[str, ConnectorConfig] = Field(default_factory=dict)
    resources: tuple[Resource, ...]
    reviews: tuple[ReviewPolicy, ...] = ()
    workloads: tuple[WorkloadPolicy, ...] = ()
    api: ApiConfig = ApiConfig()

    @property
    def executor_identities(self) -> frozenset[str]:
        """Accounts that carry out grants; separation of duties keeps them from approving."""
        return frozenset(c.identity.lower() for c in self.connectors.values() if c.identity)


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

    def review(self, review_id: str) -> ReviewPolicy | None:
        return next((r for r in self.document.reviews if r.id == review_id), None)

    def workload(self, workload_id: str) -> WorkloadPolicy | None:
        return next((w for w in self.document.workloads if w.id == workload_id), None)

    def is_admin(self, email: str) -> bool:
        return email.lower() in self.document.admins.users

    @cached_property
    def executor_identities(self) -> frozenset[str]:
        """Accounts that carry out grants; separation of duties keeps them from approving."""
        return self.document.executor_identities

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


def expand_members(
    entries: Iterable[OwnerEntry], members: Callable[[str], Iterable[str] | None]
) -> list[str]:
    """People named by owner entries (people and groups), in order, without repeats."""
    out: list[str] = []
    for entry in entries:
        names = (members(entry.name) or ()) if isinstance(entry, Group) else (entry.email,)
        for name in names:
            if name.lower() not in out:
                out.append(name.lower())
    return out
