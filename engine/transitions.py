"""What a transition returns, and the pieces every transition builds its result from.

A transition is a pure function of the request, the policy, the event and the time; it
returns a ``Transition`` (the new request, the effects to carry out and the audit records
to append, all to be saved in one transaction) or raises ``Refused``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.access_request import AccessRequest, Decision
from engine.effects import Deprovision, Effect, Provision

SYSTEM_ACTOR = "clearance"  # the actor of events nobody clicked: timers, auto-approval


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


def audit_record(
    request: AccessRequest, action: str, actor: str, policy_version: str, **details: Any
) -> AuditRecord:
    """An audit record about ``request``."""
    return AuditRecord(
        action=action,
        actor=actor,
        request_id=request.id,
        resource_id=request.resource_id,
        policy_version=policy_version,
        details=details,
    )


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def provision_effect(request: AccessRequest) -> Provision:
    return Provision(
        request.id,
        connector=request.connector,
        group=request.target_group,
        principal=request.principal,
    )


def deprovision_effect(request: AccessRequest, reason: str) -> Deprovision:
    return Deprovision(
        request.id,
        connector=request.connector,
        group=request.target_group,
        principal=request.principal,
        reason=reason,
    )
