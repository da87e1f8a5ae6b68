"""An access request and everything decided about it: the state the lifecycle moves."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal


class Status(StrEnum):
    """Where a request is in its life. Terminal states never change again, but for cleanup."""

    PENDING = "pending"
    APPROVED = "approved"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FAILED = "failed"

    @property
    def is_open(self) -> bool:
        """Still waiting for people or for the connector."""
        return self in (Status.PENDING, Status.APPROVED, Status.PROVISIONING)

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        Status.EXPIRED,
        Status.REVOKED,
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
        Status.FAILED,
    }
)

Outcome = Literal["approve", "deny"]
PrincipalKind = Literal["human", "service"]
ApprovalMode = Literal["stages", "auto", "break_glass"]


@dataclass(frozen=True)
class Decision:
    """One approver's call on one stage."""

    stage: int
    approver: str
    outcome: Outcome
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class Exclusion:
    """Someone a stage rule named who may not decide, and why."""

    email: str
    reason: str


@dataclass(frozen=True)
class StageState:
    """The current approval stage: who may decide it and how many approvals it needs."""

    index: int
    label: str
    approvers: tuple[str, ...]
    required: int
    excluded: tuple[Exclusion, ...] = ()
    fallback: bool = False  # the stage's own rules found nobody; admins stand in
    started_at: datetime | None = None


@dataclass(frozen=True)
class AccessRequest:
    """A request for time-bound access of a principal to a resource.

    The requester asks; the principal gets the access (the requester, or a service account
    or pipeline they own). Only the engine's transitions produce new versions of it.
    """

    id: str
    requester: str
    principal: str
    resource_id: str
    duration: timedelta
    justification: str
    status: Status
    policy_version: str
    created_at: datetime
    principal_kind: PrincipalKind = "human"
    ticket: str | None = None
    # Every stage started so far, in order; the last is the current one while pending.
    stages: tuple[StageState, ...] = ()
    stage_count: int = 0
    approval_mode: ApprovalMode = "stages"
    connector: str = ""
    target_group: str = ""
    decisions: tuple[Decision, ...] = ()
    pending_deadline: datetime | None = None
    break_glass: bool = False
    # Why a break-glass ask took the approval path instead (``engine.lifecycle``), if it did.
    break_glass_refused: str | None = None
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    deprovisioned_at: datetime | None = None
    failure: str | None = None
    # Time the requester added themselves with Extend (bounded by the resource's extend rule).
    self_extended: timedelta = timedelta(0)
    version: int = 0
    # How the request came in when not from a chat form: the API caller's verified identity
    # ({"via": "api", "workload": id, "issuer": iss, "subject": sub} or {"via": "api",
    # "token": id}); evidence for approvers' cards and the audit trail, never a secret.
    origin: dict[str, str] = field(default_factory=dict)

    def evolve(self, **changes: object) -> AccessRequest:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def stage(self) -> StageState | None:
        """The stage waiting for decisions, or None when the request is not pending."""
        return self.stages[-1] if self.stages and self.status is Status.PENDING else None

    def approvals(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.outcome == "approve")

    def approvals_in(self, stage: int) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.stage == stage and d.outcome == "approve")

    def approvers_of_other_stages(self, stage: int) -> frozenset[str]:
        return frozenset(
            d.approver for d in self.decisions if d.stage != stage and d.outcome == "approve"
        )

    def involves(self, email: str) -> bool:
        """Whether ``email`` has a part in this request (and so may see it): the requester,
        anyone asked to approve at any stage, or anyone who decided."""
        return (
            email == self.requester
            or any(email in stage.approvers for stage in self.stages)
            or any(d.approver == email for d in self.decisions)
        )

    @property
    def denial(self) -> Decision | None:
        return next((d for d in self.decisions if d.outcome == "deny"), None)
