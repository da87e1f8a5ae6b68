"""Access reviews: the second lifecycle beside requests. Pure transitions over plain data.

A *campaign* takes a snapshot of who holds what (``HeldAccess``: a Clearance grant, a
membership without one, a baseline member), gives each item its reviewers and asks them.
A reviewer keeps or revokes each item with a reason; at the due time the undecided items
follow the policy's ``on_no_decision``. Break-glass access gets a campaign of its own with
one item: "was this emergency access justified?", which never defaults and escalates to
the admins once.

    campaign: open -> closed;  open -> held (default revocations wait for an admin) -> closed
    item:     undecided -> kept | revoking -> revoked;  undecided -> held -> revoking

Every function returns a ``ReviewTransition`` (what changed, the effects, the audit
records; saved in one transaction) or raises ``Refused``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from engine.directory import DirectoryView
from engine.effects import (
    Effect,
    NotifyAdminsOfReview,
    ReviewDueAt,
    RevokeReviewed,
)
from engine.policy import Policy
from engine.policy_fields import RISK_ORDER
from engine.refusals import Refusal, Refused
from engine.review_items import (
    BREAK_GLASS_REVIEW,
    REASON_MAX,
    REASON_TO_KEEP_FROM,
    Campaign,
    CampaignKind,
    HeldAccess,
    ReviewItem,
    ReviewTransition,
    Verdict,
    ask,
    assign,
    campaign_audit,
    close,
    decided,
    item_details,
    refresh_for,
    reminders,
    tally,
    verdict_name,
)
from engine.review_policy import ReviewPolicy
from engine.transitions import SYSTEM_ACTOR

# --- starting --------------------------------------------------------------------------


def start(
    review: ReviewPolicy,
    held: Sequence[HeldAccess],
    policy: Policy,
    directory: DirectoryView,
    now: datetime,
    campaign_id: str,
    started_by: str,
) -> ReviewTransition:
    """Open a campaign over ``held`` (the snapshot the application took) and ask."""
    campaign = Campaign(
        id=campaign_id,
        review_id=review.id,
        kind="campaign",
        status="open",
        policy_version=policy.version,
        started_by=started_by,
        started_at=now,
        due_at=now + review.due,
        on_no_decision=review.on_no_decision,
        max_revocations=review.max_revocations,
    )
    items: list[ReviewItem] = []
    for access in held:
        resource = policy.resource(access.resource_id)
        if resource is None:
            continue  # the resource left the policy since the snapshot
        reviewers, role = assign(access, review, resource, policy, directory)
        items.append(ReviewItem(campaign_id, len(items), access, resource.risk, reviewers, role))
    return _opened(campaign, tuple(items), now, started_by)


def cadence_due(review: ReviewPolicy, last_started: datetime | None, now: datetime) -> bool:
    """Whether a review with ``every:`` starts a campaign by itself now: it never ran, or
    its last campaign started ``every`` ago or longer. (An open one still refuses a second.)"""
    if review.every is None:
        return False
    return last_started is None or now - last_started >= review.every


def start_break_glass(
    access: HeldAccess,
    policy: Policy,
    directory: DirectoryView,
    now: datetime,
    campaign_id: str,
    review_within: timedelta,
) -> ReviewTransition:
    """The mandatory review of emergency access: the resource owners (else the admins),
    never the requester, say whether it was justified."""
    resource = policy.resource(access.resource_id)
    if resource is None:
        raise Refused(Refusal("unknown_resource", resource=access.resource_id, known=""))
    campaign = Campaign(
        id=campaign_id,
        review_id=BREAK_GLASS_REVIEW,
        kind="break_glass",
        status="open",
        policy_version=policy.version,
        started_by=SYSTEM_ACTOR,
        started_at=now,
        due_at=now + review_within,
        on_no_decision="escalate",
        max_revocations=0,
        request_id=access.request_id,
    )
    reviewers, role = assign(access, None, resource, policy, directory)
    item = ReviewItem(campaign_id, 0, access, resource.risk, reviewers, role)
    return _opened(campaign, (item,), now, SYSTEM_ACTOR)


def _opened(
    campaign: Campaign, items: tuple[ReviewItem, ...], now: datetime, actor: str
) -> ReviewTransition:
    record = campaign_audit(
        campaign,
        "review_started",
        actor,
        kind=campaign.kind,
        items=len(items),
        reviewers=sorted({r for i in items for r in i.reviewers}),
        unassigned=sum(1 for i in items if not i.reviewers),
        due_at=campaign.due_at.isoformat(),
    )
    if not items:
        closed = replace(campaign, status="closed", closed_at=now)
        audit = (record, campaign_audit(closed, "review_closed", actor, **tally(items)))
        return ReviewTransition(closed, (), (), audit, created=True)
    effects = [
        *ask(campaign, items),
        *reminders(campaign, now),
        ReviewDueAt(campaign.id, due_at=campaign.due_at),
    ]
    return ReviewTransition(campaign, items, tuple(effects), (record,), created=True)


# --- deciding --------------------------------------------------------------------------


def _refusal_for(
    campaign: Campaign, item: ReviewItem, actor: str, policy: Policy
) -> Refusal | None:
    # Who decided says more than "closed" to the loser of a race for the last item.
    if not item.undecided:
        return Refusal("review_item_decided", decided_by=item.decided_by or SYSTEM_ACTOR)
    if not campaign.is_open:
        return Refusal("review_closed", campaign=campaign.id)
    if actor == item.access.principal:
        return Refusal("self_review")
    if actor in policy.executor_identities:
        return Refusal("executor")
    if actor not in item.reviewers:
        return Refusal("not_reviewer")
    return None


def may_review(campaign: Campaign, item: ReviewItem, actor: str, policy: Policy) -> bool:
    """Whether ``actor`` may decide the item now (what a card offers buttons for)."""
    return _refusal_for(campaign, item, actor.lower(), policy) is None


def needs_reason(item: ReviewItem, verdict: Verdict, kind: CampaignKind) -> bool:
    """Revoking always needs a reason, keeping sensitive access too; a break-glass verdict
    always does."""
    if kind == "break_glass" or verdict == "revoke":
        return True
    return RISK_ORDER.index(item.risk) >= RISK_ORDER.index(REASON_TO_KEEP_FROM)


def decide(
    campaign: Campaign,
    item: ReviewItem,
    actor: str,
    verdict: Verdict,
    reason: str,
    now: datetime,
    policy: Policy,
    undecided_left: int,
) -> ReviewTransition:
    """A reviewer keeps or revokes one item. ``undecided_left`` counts the campaign's other
    undecided items: when it is zero, this decision closes the campaign."""
    actor, reason = actor.lower(), reason.strip()
    if (refusal := _refusal_for(campaign, item, actor, policy)) is not None:
        raise Refused(refusal)
    if needs_reason(item, verdict, campaign.kind) and not reason:
        raise Refused(
            Refusal("review_reason_required", "reason", verdict=verdict, kind=campaign.kind)
        )
    if len(reason) > REASON_MAX:
        raise Refused(Refusal("reason_too_long", "reason", max=REASON_MAX))
    done = decided(item, verdict, reason, actor, now, campaign.kind, defaulted=False)
    effects: list[Effect] = refresh_for(campaign, (item,))
    if done.outcome == "revoking":
        effects.append(RevokeReviewed(campaign.id, index=item.index))
    if campaign.kind == "break_glass" and verdict == "revoke":
        # "Not justified": the admins hear at once; the evidence export flags it.
        effects.append(
            NotifyAdminsOfReview(
                campaign.id, template="break_glass_not_justified", index=item.index
            )
        )
    audit = [
        campaign_audit(
            campaign,
            "review_item_decided",
            actor,
            **item_details(item),
            verdict=verdict_name(verdict, campaign.kind),
            reason=reason,
        )
    ]
    if undecided_left == 0 and campaign.status == "open":
        return close(campaign, (done,), effects, audit, now, actor)
    return ReviewTransition(campaign, (done,), tuple(effects), tuple(audit))


def keep_all(
    campaign: Campaign,
    items: Sequence[ReviewItem],
    actor: str,
    now: datetime,
    policy: Policy,
    undecided_left: int,
) -> ReviewTransition:
    """ "Keep all remaining": the reviewer's undecided low and medium risk items, kept at
    once (sensitive items still need a decision each, with a reason)."""
    actor = actor.lower()
    if campaign.kind == "break_glass":
        raise Refused(Refusal("keep_all_not_here"))
    chosen = [
        i
        for i in items
        if _refusal_for(campaign, i, actor, policy) is None
        and not needs_reason(i, "keep", campaign.kind)
    ]
    if not chosen:
        raise Refused(Refusal("nothing_to_keep"))
    kept = tuple(decided(i, "keep", "", actor, now, campaign.kind, defaulted=False) for i in chosen)
    audit = [
        campaign_audit(
            campaign,
            "review_item_decided",
            actor,
            **item_details(i),
            verdict="keep",
            reason="",
            bulk=True,
        )
        for i in chosen
    ]
    effects: list[Effect] = refresh_for(campaign, chosen)
    if undecided_left - len(chosen) <= 0 and campaign.status == "open":
        return close(campaign, kept, effects, audit, now, actor)
    return ReviewTransition(campaign, kept, tuple(effects), tuple(audit))
