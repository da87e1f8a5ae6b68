"""What a transition asks the outside world to do, as plain values.

Storage writes each effect as an outbox row in the same transaction as the state change;
the dispatcher carries them out later (now, or at ``due_at``). Effects name the request
and what to do; the data a message shows is read fresh when it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class Effect:
    """Base of all effects; ``kind`` picks the dispatcher handler."""

    kind: ClassVar[str] = ""
    request_id: str
    due_at: datetime | None = field(default=None, kw_only=True)

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("due_at", None)
        return data


@dataclass(frozen=True)
class NotifyPerson(Effect):
    """Send a person a direct message rendered from ``template``."""

    kind: ClassVar[str] = "notify"
    email: str
    template: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifyApprovers(Effect):
    """Ask the current stage's approvers to decide (one card each)."""

    kind: ClassVar[str] = "notify_approvers"
    stage: int


@dataclass(frozen=True)
class NotifyAdmins(Effect):
    """Post to the admin channel (grants, denials, failures, break-glass alerts)."""

    kind: ClassVar[str] = "notify_admins"
    template: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefreshCards(Effect):
    """Update every approval card already sent for this request to its current state."""

    kind: ClassVar[str] = "refresh_cards"


@dataclass(frozen=True)
class Provision(Effect):
    """Add the principal to the group through the connector."""

    kind: ClassVar[str] = "provision"
    connector: str
    group: str
    principal: str


@dataclass(frozen=True)
class Deprovision(Effect):
    """Remove the principal from the group through the connector."""

    kind: ClassVar[str] = "deprovision"
    connector: str
    group: str
    principal: str
    reason: str


@dataclass(frozen=True)
class ExpireAt(Effect):
    """Wake up at ``due_at`` and end the access if it is still due to end then."""

    kind: ClassVar[str] = "expire"


@dataclass(frozen=True)
class RemindAt(Effect):
    """Remind the requester before expiry (``before`` as written in policy, e.g. 1h)."""

    kind: ClassVar[str] = "remind"
    before: str


@dataclass(frozen=True)
class NudgeAt(Effect):
    """Remind the approvers of ``stage`` who have not decided, and tell the admins, when the
    stage is still waiting at ``due_at`` (an escalation before it times out)."""

    kind: ClassVar[str] = "nudge"
    stage: int


@dataclass(frozen=True)
class TimeoutAt(Effect):
    """Wake up at ``due_at`` and time the request out if nobody decided by then."""

    kind: ClassVar[str] = "timeout"


EFFECT_TYPES: dict[str, type[Effect]] = {
    cls.kind: cls
    for cls in (
        NotifyPerson,
        NotifyApprovers,
        NotifyAdmins,
        RefreshCards,
        Provision,
        Deprovision,
        ExpireAt,
        RemindAt,
        NudgeAt,
        TimeoutAt,
    )
}


def effect_from_payload(kind: str, payload: Mapping[str, Any], due_at: datetime | None) -> Effect:
    """Rebuild an effect from an outbox row (unknown keys from newer versions are dropped)."""
    cls = EFFECT_TYPES[kind]
    names = {f.name for f in fields(cls)} - {"due_at"}
    return cls(**{k: v for k, v in payload.items() if k in names}, due_at=due_at)
