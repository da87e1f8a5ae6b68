"""The ``reviews:`` section of a policy: recertification campaigns and who reviews what.

reviews:
  - id: quarterly-prod
    resources: [prod-db-admin]     # or [all]; ``risk: [high, critical]`` narrows further
    every: 90d                     # cadence (also ``clearance review start <id>``)
    reviewer: resource_owner       # any approver rule
    fallback: admins               # when the reviewer is missing, inactive or the holder
    due: 7d
    on_no_decision: revoke         # revoke | keep | escalate (to fallback, once)
    scope: [members, grants]
    min_age: 7d
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from engine.policy_fields import Risk, StrictModel, as_duration
from engine.rules import Admins, ApproverRule, parse_approver_rule

NoDecision = Literal["revoke", "keep", "escalate"]
Scope = Literal["members", "grants"]
MAX_REVOCATIONS_DEFAULT = 25


class ReviewPolicy(StrictModel):
    """One recertification campaign definition."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    resources: tuple[str, ...] = ("all",)
    risk: tuple[Risk, ...] | None = None
    every: timedelta | None = None
    reviewer: ApproverRule
    fallback: ApproverRule = Admins()
    due: timedelta = timedelta(days=7)
    on_no_decision: NoDecision = "revoke"
    scope: tuple[Scope, ...] = ("members", "grants")
    min_age: timedelta = timedelta(0)
    # More default revocations than this in one group wait for an admin's confirmation.
    max_revocations: int = Field(default=MAX_REVOCATIONS_DEFAULT, ge=0)

    _durations = field_validator("due", "min_age", mode="before")(
        classmethod(lambda cls, v: as_duration(v))
    )

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: object) -> timedelta | None:
        return None if v is None else as_duration(v)

    @field_validator("reviewer", "fallback", mode="before")
    @classmethod
    def _rule(cls, v: object) -> object:
        return parse_approver_rule(v) if isinstance(v, str) else v

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: tuple[Scope, ...]) -> tuple[Scope, ...]:
        if not v:
            raise ValueError("scope needs members, grants or both")
        return v

    def covers(self, resource_id: str, risk: Risk) -> bool:
        """Whether this campaign reviews access to the resource."""
        named = "all" in self.resources or resource_id in self.resources
        return named and (self.risk is None or risk in self.risk)
