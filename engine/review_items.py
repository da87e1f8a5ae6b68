"""Access reviews, the data: campaigns, their items, and the pieces every review
transition builds from (who reviews an item, the audit records, closing a campaign).

The transitions are in ``engine.reviews`` (start, decide) and ``engine.review_deadlines``
(the due time, escalation, confirmation, removal).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from engine.access_request import AccessRequest
from engine.approvers import first_eligible
from engine.directory import DirectoryView
from engine.effects import (
    Effect,
    NotifyAdminsOfReview,
    NotifyReviewer,
    RefreshReviewCards,
    ReviewRemindAt,
)
from engine.policy import Policy, Resource
from engine.policy_fields import Risk
from engine.review_policy import NoDecision, ReviewPolicy
from engine.rules import Admins, ApproverRule, ResourceOwner
from engine.transitions import AuditRecord

Holding = Literal["grant", "member", "baseline"]
Verdict = Literal["keep", "revoke"]
CampaignKind = Literal["campaign", "break_glass"]
CampaignStatus = Literal["open", "held", "closed"]
Outcome = Literal["undecided", "kept", "revoking", "revoked", "held"]
REASON_MAX = 500
BREAK_GLASS_REVIEW = "break-glass"  # the review id of break-glass campaigns
# Keeping sensitive access needs a rationale: auditors' most common finding is a review
# without one. Low and medium risk may be kept without (and in bulk).
REASON_TO_KEEP_FROM: Risk = "high"


@dataclass(frozen=True)
class HeldAccess:
    """One person's hold on one resource, as a campaign snapshots it."""

    principal: str
    resource_id: str
    connector: str
    group: str
    holding: Holding
    request_id: str | None = None
    since: datetime | None = None
    approvers: tuple[str, ...] = ()
    justification: str = ""
    requests_90d: int = 0

    @classmethod
    def of_grant(cls, request: AccessRequest) -> HeldAccess:
        """A request's own grant as the item of its break-glass review."""
        return cls(
            principal=request.principal,
            resource_id=request.resource_id,
            connector=request.connector,
            group=request.target_group,
            holding="grant",
            request_id=request.id,
            since=request.granted_at,
            justification=request.justification,
        )


@dataclass(frozen=True)
class Campaign:
    """One run of a review (or one break-glass review)."""

    id: str
    review_id: str
    kind: CampaignKind
    status: CampaignStatus
    policy_version: str
    started_by: str
    started_at: datetime
    due_at: datetime
    on_no_decision: NoDecision
    max_revocations: int
    escalated: bool = False
    closed_at: datetime | None = None
    request_id: str | None = None  # break-glass: the request under review
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.status != "closed"


@dataclass(frozen=True)
class ReviewItem:
    """One person's hold on one resource to keep or revoke, and who may decide it."""

    campaign_id: str
    index: int
    access: HeldAccess
    risk: Risk
    reviewers: tuple[str, ...]
    role: Literal["reviewer", "fallback", "escalated"] = "reviewer"
    verdict: Verdict | None = None
    reason: str = ""
    decided_by: str | None = None
    decided_at: datetime | None = None
    defaulted: bool = False
    outcome: Outcome = "undecided"
    version: int = 0

    @property
    def undecided(self) -> bool:
        return self.verdict is None

    def evolve(self, **changes: object) -> ReviewItem:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReviewTransition:
    """What one event changed in a campaign: saved together with its effects and audit."""

    campaign: Campaign
    items: tuple[ReviewItem, ...] = ()
    effects: tuple[Effect, ...] = ()
    audit: tuple[AuditRecord, ...] = ()
    created: bool = False  # a new campaign (insert) rather than a change (update)


def campaign_audit(campaign: Campaign, action: str, actor: str, **details: object) -> AuditRecord:
    return AuditRecord(
        action=action,
        actor=actor,
        request_id=campaign.request_id,
        resource_id=None,
        policy_version=campaign.policy_version,
        details={"campaign": campaign.id, "review": campaign.review_id, **details},
    )


def item_details(item: ReviewItem) -> dict[str, object]:
    a = item.access
    return {
        "item": item.index,
        "principal": a.principal,
        "resource": a.resource_id,
        "holding": a.holding,
        "request": a.request_id,
    }


# --- who reviews -----------------------------------------------------------------------


def reviewers_for(
    access: HeldAccess,
    rules: Sequence[ApproverRule],
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
) -> tuple[str, ...]:
    """Who reviews this access: the first rule's eligible people (nobody reviews their own
    access, a connector identity never does, nor anyone unknown or inactive)."""
    return first_eligible(rules, access.principal, resource, policy, directory)[0]


def assign(
    access: HeldAccess,
    review: ReviewPolicy | None,
    resource: Resource,
    policy: Policy,
    directory: DirectoryView,
) -> tuple[tuple[str, ...], Literal["reviewer", "fallback"]]:
    first: ApproverRule = review.reviewer if review else ResourceOwner()
    fallback: ApproverRule = review.fallback if review else Admins()
    people = reviewers_for(access, (first,), resource, policy, directory)
    if people:
        return people, "reviewer"
    return reviewers_for(access, (fallback, Admins()), resource, policy, directory), "fallback"


def reminders(campaign: Campaign, now: datetime) -> list[Effect]:
    """At half-time and one day before the due time (when that is still ahead)."""
    length = campaign.due_at - now
    times = {now + length / 2, campaign.due_at - timedelta(days=1)}
    return [
        ReviewRemindAt(campaign.id, due_at=t) for t in sorted(times) if now < t < campaign.due_at
    ]


def ask(campaign: Campaign, items: Iterable[ReviewItem]) -> list[Effect]:
    reviewers = dict.fromkeys(r for item in items if item.undecided for r in item.reviewers)
    return [NotifyReviewer(campaign.id, reviewer=r) for r in reviewers]


def decided(
    item: ReviewItem,
    verdict: Verdict,
    reason: str,
    actor: str,
    now: datetime,
    kind: CampaignKind,
    defaulted: bool,
) -> ReviewItem:
    # A break-glass verdict judges access that was already used: it revokes nothing.
    revokes = verdict == "revoke" and kind == "campaign"
    return item.evolve(
        verdict=verdict,
        reason=reason,
        decided_by=actor,
        decided_at=now,
        defaulted=defaulted,
        outcome="revoking" if revokes else "kept",
    )


def verdict_name(verdict: Verdict, kind: CampaignKind) -> str:
    if kind == "break_glass":
        return "justified" if verdict == "keep" else "not_justified"
    return verdict


def tally(items: Iterable[ReviewItem]) -> dict[str, int]:
    items = list(items)
    return {
        "decided": sum(1 for i in items if i.verdict and not i.defaulted),
        "kept": sum(1 for i in items if i.verdict == "keep"),
        "revoked": sum(1 for i in items if i.verdict == "revoke"),
        "defaulted": sum(1 for i in items if i.defaulted),
    }


def close(
    campaign: Campaign,
    changed: tuple[ReviewItem, ...],
    effects: list[Effect],
    audit: list[AuditRecord],
    now: datetime,
    actor: str,
) -> ReviewTransition:
    closed = replace(campaign, status="closed", closed_at=now)
    audit = [*audit, campaign_audit(closed, "review_closed", actor, **tally(changed))]
    # Every card of a closed campaign changes (it says so, its buttons go), not only those
    # of the last items' reviewers: one refresh of them all replaces the narrower ones.
    effects = [e for e in effects if not isinstance(e, RefreshReviewCards)]
    effects += [
        RefreshReviewCards(campaign.id),
        NotifyAdminsOfReview(campaign.id, template="review_summary"),
    ]
    return ReviewTransition(closed, changed, tuple(effects), tuple(audit))


def refresh_for(campaign: Campaign, items: Iterable[ReviewItem]) -> list[Effect]:
    """Refresh only the cards that show these items: one per reviewer of them (a campaign
    of 10,000 items over 50 reviewers must not redraw 50 cards for every click)."""
    reviewers = dict.fromkeys(r for item in items for r in item.reviewers)
    return [RefreshReviewCards(campaign.id, reviewer=r) for r in reviewers]
