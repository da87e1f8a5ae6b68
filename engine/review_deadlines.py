"""Access reviews over time: the due time (defaults, escalation, the revocation guard),
an admin's confirmation of held revocations, the removal carried out, the summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from engine.directory import DirectoryView
from engine.effects import (
    Effect,
    NotifyAdminsOfReview,
    RefreshReviewCards,
    ReviewDueAt,
    RevokeReviewed,
)
from engine.policy import Policy
from engine.refusals import Refusal, Refused
from engine.review_items import (
    Campaign,
    ReviewItem,
    ReviewTransition,
    Verdict,
    ask,
    campaign_audit,
    close,
    decided,
    item_details,
    refresh_for,
    reviewers_for,
    tally,
)
from engine.rules import Admins, ApproverRule
from engine.transitions import SYSTEM_ACTOR


def due(
    campaign: Campaign,
    undecided: Sequence[ReviewItem],
    now: datetime,
    policy: Policy,
    directory: DirectoryView,
    escalate_for: timedelta,
) -> ReviewTransition:
    """The due time came: undecided items follow ``on_no_decision``.

    ``escalate`` hands them to the fallback reviewers once, due again after
    ``escalate_for``; a break-glass review stays open until decided, an escalated
    campaign's items are then revoked (the safe side). More default revocations in one
    group than ``max_revocations`` are held, all of them, until an admin confirms."""
    if campaign.status != "open" or now < campaign.due_at:
        return ReviewTransition(campaign)
    if not undecided:
        return close(campaign, (), [], [], now, SYSTEM_ACTOR)
    action = campaign.on_no_decision
    if action == "escalate" and not campaign.escalated:
        return _escalate(campaign, undecided, now, policy, directory, escalate_for)
    if campaign.kind == "break_glass":
        return ReviewTransition(campaign)  # escalated once already: it waits for a verdict
    verdict: Verdict = "keep" if action == "keep" else "revoke"
    defaulted = [
        decided(i, verdict, "", SYSTEM_ACTOR, now, campaign.kind, defaulted=True) for i in undecided
    ]
    audit = [
        campaign_audit(
            campaign, "review_defaulted", SYSTEM_ACTOR, **item_details(i), verdict=verdict
        )
        for i in undecided
    ]
    per_group = Counter(
        (i.access.connector, i.access.group) for i in defaulted if i.outcome == "revoking"
    )
    over = {g for g, n in per_group.items() if n > campaign.max_revocations}
    if over:
        held = tuple(
            i.evolve(outcome="held") if (i.access.connector, i.access.group) in over else i
            for i in defaulted
        )
        effects: list[Effect] = [
            RevokeReviewed(campaign.id, index=i.index) for i in held if i.outcome == "revoking"
        ]
        effects += [
            NotifyAdminsOfReview(campaign.id, template="review_held"),
            RefreshReviewCards(campaign.id),
        ]
        audit.append(
            campaign_audit(
                campaign,
                "review_held",
                SYSTEM_ACTOR,
                groups=sorted(f"{c}:{g}" for c, g in over),
                held=sum(1 for i in held if i.outcome == "held"),
                limit=campaign.max_revocations,
            )
        )
        return ReviewTransition(
            replace(campaign, status="held"), held, tuple(effects), tuple(audit)
        )
    effects = [
        RevokeReviewed(campaign.id, index=i.index) for i in defaulted if i.outcome == "revoking"
    ]
    effects.append(RefreshReviewCards(campaign.id))
    return close(campaign, tuple(defaulted), effects, audit, now, SYSTEM_ACTOR)


def _escalate(
    campaign: Campaign,
    undecided: Sequence[ReviewItem],
    now: datetime,
    policy: Policy,
    directory: DirectoryView,
    escalate_for: timedelta,
) -> ReviewTransition:
    review = policy.review(campaign.review_id)
    rules: tuple[ApproverRule, ...] = (review.fallback, Admins()) if review else (Admins(),)
    moved = []
    for item in undecided:
        resource = policy.resource(item.access.resource_id)
        people = reviewers_for(item.access, rules, resource, policy, directory) if resource else ()
        moved.append(item.evolve(reviewers=people or item.reviewers, role="escalated"))
    escalated = replace(campaign, escalated=True, due_at=now + escalate_for)
    effects: list[Effect] = [
        *ask(escalated, moved),
        NotifyAdminsOfReview(campaign.id, template="review_escalated"),
        RefreshReviewCards(campaign.id),
    ]
    if campaign.kind == "campaign":
        effects.append(ReviewDueAt(campaign.id, due_at=escalated.due_at))
    record = campaign_audit(
        escalated,
        "review_escalated",
        SYSTEM_ACTOR,
        items=len(moved),
        reviewers=sorted({r for i in moved for r in i.reviewers}),
    )
    return ReviewTransition(escalated, tuple(moved), tuple(effects), (record,))


def settle(campaign: Campaign, now: datetime) -> ReviewTransition:
    """Close an open campaign whose items were all decided (the caller counted none left)."""
    if campaign.status != "open":
        return ReviewTransition(campaign)
    return close(campaign, (), [], [], now, SYSTEM_ACTOR)


def confirm(
    campaign: Campaign, held: Sequence[ReviewItem], actor: str, now: datetime, policy: Policy
) -> ReviewTransition:
    """An admin confirms the held default revocations: they go ahead, the campaign closes."""
    actor = actor.lower()
    if not policy.is_admin(actor):
        raise Refused(Refusal("not_admin"))
    if campaign.status != "held":
        raise Refused(Refusal("review_not_held", campaign=campaign.id))
    going = tuple(i.evolve(outcome="revoking") for i in held if i.outcome == "held")
    effects: list[Effect] = [RevokeReviewed(campaign.id, index=i.index) for i in going]
    audit = [campaign_audit(campaign, "review_confirmed", actor, revocations=len(going))]
    return close(campaign, going, effects, audit, now, actor)


def revoked(campaign: Campaign, item: ReviewItem, now: datetime) -> ReviewTransition:
    """The Revoke was carried out (the grant ended, or the membership is gone)."""
    if item.outcome == "revoked":
        return ReviewTransition(campaign)
    done = item.evolve(outcome="revoked")
    record = campaign_audit(campaign, "review_access_removed", SYSTEM_ACTOR, **item_details(item))
    return ReviewTransition(campaign, (done,), tuple(refresh_for(campaign, (item,))), (record,))


def summary(items: Sequence[ReviewItem]) -> dict[str, object]:
    """A campaign's figures for the admins: overall and per reviewer, and who did nothing."""
    per: dict[str, Counter[str]] = {}
    waiting: Counter[str] = Counter()
    for item in items:
        for reviewer in item.reviewers:
            per.setdefault(reviewer, Counter())
            waiting[reviewer] += item.undecided
        if item.decided_by and not item.defaulted:
            per.setdefault(item.decided_by, Counter())[item.verdict or ""] += 1
    silent = sorted(
        r
        for r, c in per.items()
        if not c and any(i.undecided or i.defaulted for i in items if r in i.reviewers)
    )
    return {
        **tally(items),
        "items": len(items),
        "undecided": sum(1 for i in items if i.undecided),
        "held": sum(1 for i in items if i.outcome == "held"),
        "reviewers": [
            {"reviewer": r, "kept": c["keep"], "revoked": c["revoke"], "undecided": waiting[r]}
            for r, c in sorted(per.items())
        ],
        "silent": silent,
    }
