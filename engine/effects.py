"""What a transition asks the outside world to do, as plain values.

Storage writes each effect as an outbox row in the same transaction as the state change;
the dispatcher carries them out later (now, or at ``due_at``). Effects name the request
and what to do; the data a message shows is read fresh when it is sent.

An effect travels as its ``kind``, its request (``request_of``), its ``due_at`` and its
``payload()`` (every other field, as plain JSON values), and ``effect_from_payload``
turns those back into the same typed value: the one way into an outbox row and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

# Fields the outbox row keeps in columns of their own, so never in its JSON payload.
_COLUMNS = frozenset({"request_id", "due_at"})


@dataclass(frozen=True)
class Effect:
    """Base of all effects; ``kind`` picks the dispatcher handler."""

    kind: ClassVar[str] = ""
    due_at: datetime | None = field(default=None, kw_only=True)

    def payload(self) -> dict[str, Any]:
        """The fields the outbox row stores as JSON (all but its columns)."""
        return {k: v for k, v in asdict(self).items() if k not in _COLUMNS}


@dataclass(frozen=True)
class RequestEffect(Effect):
    """An effect on one request: every effect but the drift report."""

    request_id: str


@dataclass(frozen=True)
class NotifyPerson(RequestEffect):
    """Send a person a direct message rendered from ``template``."""

    kind: ClassVar[str] = "notify"
    email: str
    template: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotifyApprovers(RequestEffect):
    """Ask the current stage's approvers to decide (one card each)."""

    kind: ClassVar[str] = "notify_approvers"
    stage: int


@dataclass(frozen=True)
class NotifyAdmins(RequestEffect):
    """Post to the admin channel (grants, denials, failures, break-glass alerts)."""

    kind: ClassVar[str] = "notify_admins"
    template: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefreshCards(RequestEffect):
    """Update every approval card already sent for this request to its current state."""

    kind: ClassVar[str] = "refresh_cards"


@dataclass(frozen=True)
class Provision(RequestEffect):
    """Add the principal to the group through the connector."""

    kind: ClassVar[str] = "provision"
    connector: str
    group: str
    principal: str


@dataclass(frozen=True)
class Deprovision(RequestEffect):
    """Remove the principal from the group through the connector."""

    kind: ClassVar[str] = "deprovision"
    connector: str
    group: str
    principal: str
    reason: str


@dataclass(frozen=True)
class ExpireAt(RequestEffect):
    """Wake up at ``due_at`` and end the access if it is still due to end then."""

    kind: ClassVar[str] = "expire"


@dataclass(frozen=True)
class RemindAt(RequestEffect):
    """Remind the requester before expiry (``before`` as written in policy, e.g. 1h)."""

    kind: ClassVar[str] = "remind"
    before: str


@dataclass(frozen=True)
class NudgeAt(RequestEffect):
    """Remind the approvers of ``stage`` who have not decided, and tell the admins, when the
    stage is still waiting at ``due_at`` (an escalation before it times out)."""

    kind: ClassVar[str] = "nudge"
    stage: int


@dataclass(frozen=True)
class TimeoutAt(RequestEffect):
    """Wake up at ``due_at`` and time the request out if nobody decided by then."""

    kind: ClassVar[str] = "timeout"


@dataclass(frozen=True)
class PostDriftReport(Effect):
    """Post a drift reconciliation's report to the admin channels. It belongs to no request
    (a reconciliation checks every managed group); ``report`` is the template's data."""

    kind: ClassVar[str] = "drift_report"
    report: Mapping[str, Any]


@dataclass(frozen=True)
class ReviewEffect(Effect):
    """An effect on one access-review campaign."""

    campaign_id: str


@dataclass(frozen=True)
class NotifyReviewer(ReviewEffect):
    """Send (or, with ``nudge``, send again as a reminder) a reviewer their review card."""

    kind: ClassVar[str] = "notify_reviewer"
    reviewer: str
    nudge: bool = False


@dataclass(frozen=True)
class RefreshReviewCards(ReviewEffect):
    """Update the review cards of the campaign already sent to their current state: those of
    ``reviewer`` only when set (a decision changes its item's reviewers' cards), else all."""

    kind: ClassVar[str] = "refresh_review_cards"
    reviewer: str | None = None


@dataclass(frozen=True)
class NotifyAdminsOfReview(ReviewEffect):
    """Post a campaign's news to the admin channel (summary, held revocations, a verdict)."""

    kind: ClassVar[str] = "notify_admins_review"
    template: str
    index: int | None = None
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RevokeReviewed(ReviewEffect):
    """Carry out a review's Revoke of item ``index``: end its grant, or remove the membership."""

    kind: ClassVar[str] = "revoke_reviewed"
    index: int


@dataclass(frozen=True)
class ReviewRemindAt(ReviewEffect):
    """Remind the reviewers who still have items to decide, when the campaign is still open."""

    kind: ClassVar[str] = "review_remind"


@dataclass(frozen=True)
class ReviewDueAt(ReviewEffect):
    """The campaign's due time: undecided items follow the policy's ``on_no_decision``."""

    kind: ClassVar[str] = "review_due"


@dataclass(frozen=True)
class StartBreakGlassReview(RequestEffect):
    """Break-glass access started: open its mandatory review."""

    kind: ClassVar[str] = "start_break_glass_review"


@dataclass(frozen=True)
class PostCallback(RequestEffect):
    """Tell a workload's callback_url that its request reached ``status`` (signed POST)."""

    kind: ClassVar[str] = "callback"
    status: str


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
        PostDriftReport,
        NotifyReviewer,
        RefreshReviewCards,
        NotifyAdminsOfReview,
        RevokeReviewed,
        ReviewRemindAt,
        ReviewDueAt,
        StartBreakGlassReview,
        PostCallback,
    )
}


def request_of(effect: Effect) -> str | None:
    """The request an effect belongs to (None for work of no request, like a drift report)."""
    return effect.request_id if isinstance(effect, RequestEffect) else None


def effect_from_payload(
    kind: str, request_id: str | None, payload: Mapping[str, Any], due_at: datetime | None
) -> Effect:
    """Rebuild an effect from an outbox row's kind, columns and payload.

    Keys this version does not know are dropped: a newer version's fields, and the
    request_id older versions also wrote into the payload (the column is the one kept).
    Raises KeyError for an unknown kind, TypeError or ValueError for a payload that does
    not fit it.
    """
    cls = EFFECT_TYPES[kind]
    names = {f.name for f in fields(cls)} - _COLUMNS
    values = {k: v for k, v in payload.items() if k in names}
    if issubclass(cls, RequestEffect):
        if request_id is None:
            raise ValueError(f"a {kind} effect names no request")
        values["request_id"] = request_id
    return cls(**values, due_at=due_at)
