"""Access reviews in the engine, one rule per test: who reviews, what a decision does, what
the due time does, and what is refused (a refusal changes nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import review_deadlines, reviews
from engine.directory import snapshot_from_policy
from engine.effects import (
    NotifyAdminsOfReview,
    NotifyReviewer,
    RefreshReviewCards,
    ReviewDueAt,
    ReviewRemindAt,
    RevokeReviewed,
)
from engine.policy import Policy
from engine.policy_loading import parse_policy
from engine.refusals import Refused
from engine.review_items import Campaign, HeldAccess, ReviewItem, ReviewTransition
from message_templates import refusal_text

POLICY = parse_policy(
    """\
admins:
  users: [adm@x.com, ada@x.com]
directory:
  people:
    - {email: alice@x.com, name: Alice, manager: mgr@x.com}
    - {email: bob@x.com, name: Bob, manager: mgr@x.com}
    - {email: mgr@x.com, name: Mgr}
    - {email: dora@x.com, name: Dora, manager: mgr@x.com}
    - {email: dan@x.com, name: Dan, manager: mgr@x.com}
    - {email: ina@x.com, name: Ina, active: false}
    - {email: adm@x.com, name: Adm}
    - {email: ada@x.com, name: Ada}
    - {email: bot@x.com, name: Bot}
  groups:
    dba: [dora@x.com, dan@x.com, ina@x.com, bot@x.com]
connectors:
  ldap: {type: ldap, identity: bot@x.com}
resources:
  - id: prod
    name: Prod
    risk: high
    owners: [group:dba]
    grant: {connector: ldap, group: cn=prod}
    duration: {default: 1h, max: 4h}
    approval: [admins]
    break_glass: {max: 1h, review_within: 12h}
  - id: wiki
    name: Wiki
    risk: low
    owners: [group:dba]
    grant: {connector: ldap, group: cn=wiki}
    duration: {default: 1h, max: 4h}
    approval: [admins]
reviews:
  - id: quarterly
    reviewer: resource_owner
    due: 7d
    max_revocations: 2
  - id: managers
    resources: [wiki]
    reviewer: manager
    fallback: user:adm@x.com
    on_no_decision: escalate
    due: 2d
""",
    "policy.yaml",
)
DIR = snapshot_from_policy(POLICY)
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def held(principal: str, resource: str = "prod", holding: str = "member") -> HeldAccess:
    group = "cn=prod" if resource == "prod" else "cn=wiki"
    return HeldAccess(principal, resource, "ldap", group, holding)  # type: ignore[arg-type]


def started(
    *access: HeldAccess, review_id: str = "quarterly", policy: Policy = POLICY
) -> ReviewTransition:
    found = policy.review(review_id)
    assert found is not None
    return reviews.start(found, access, policy, DIR, T0, "C-TEST", "adm@x.com")


def decide(
    t: ReviewTransition, index: int, actor: str, verdict: str, reason: str = "", left: int = 5
) -> ReviewTransition:
    return reviews.decide(
        t.campaign,
        t.items[index],
        actor,
        verdict,
        reason,
        T0 + timedelta(hours=1),
        POLICY,
        left,  # type: ignore[arg-type]
    )


def code_of(call: object) -> str:
    with pytest.raises(Refused) as info:
        call()  # type: ignore[operator]
    return info.value.code


# --- who reviews -------------------------------------------------------------------------


def test_owners_review_and_nobody_reviews_their_own_access() -> None:
    t = started(held("alice@x.com"), held("dora@x.com"))
    alice, dora = t.items
    # bot@x.com executes grants and ina@x.com is inactive: neither is asked.
    assert alice.reviewers == ("dora@x.com", "dan@x.com") and alice.role == "reviewer"
    # Dora holds it herself: the other owner reviews, never Dora.
    assert dora.reviewers == ("dan@x.com",)
    assert [e.reviewer for e in t.effects if isinstance(e, NotifyReviewer)] == [
        "dora@x.com",
        "dan@x.com",
    ]
    assert t.audit[0].action == "review_started" and t.audit[0].details["items"] == 2


def test_a_missing_reviewer_falls_back() -> None:
    # The manager rule about someone without a manager: the fallback (one admin) reviews.
    t = started(held("mgr@x.com", "wiki"), held("alice@x.com", "wiki"), review_id="managers")
    assert t.items[0].reviewers == ("adm@x.com",) and t.items[0].role == "fallback"
    assert t.items[1].reviewers == ("mgr@x.com",)


def test_reminders_at_half_time_and_a_day_before_then_the_due_time() -> None:
    t = started(held("alice@x.com"))
    reminders = sorted(e.due_at for e in t.effects if isinstance(e, ReviewRemindAt) and e.due_at)
    assert reminders == [T0 + timedelta(days=3.5), T0 + timedelta(days=6)]
    assert [e.due_at for e in t.effects if isinstance(e, ReviewDueAt)] == [T0 + timedelta(days=7)]


def test_an_empty_campaign_closes_at_once() -> None:
    t = started()
    assert t.campaign.status == "closed" and [a.action for a in t.audit] == [
        "review_started",
        "review_closed",
    ]


# --- deciding ------------------------------------------------------------------------------


def test_revoke_needs_a_reason_and_queues_the_removal() -> None:
    t = started(held("alice@x.com"), held("bob@x.com"))
    assert code_of(lambda: decide(t, 0, "dora@x.com", "revoke")) == "review_reason_required"
    d = decide(t, 0, "dora@x.com", "revoke", "left the team")
    item = d.items[0]
    assert (item.verdict, item.outcome, item.decided_by) == ("revoke", "revoking", "dora@x.com")
    assert RevokeReviewed("C-TEST", index=0) in d.effects
    # Only the cards that show the item are redrawn.
    assert [e for e in d.effects if isinstance(e, RefreshReviewCards)] == [
        RefreshReviewCards("C-TEST", reviewer="dora@x.com"),
        RefreshReviewCards("C-TEST", reviewer="dan@x.com"),
    ]
    assert d.audit[0].action == "review_item_decided"
    assert d.audit[0].details["reason"] == "left the team"


def test_keeping_high_risk_needs_a_reason_low_risk_does_not() -> None:
    t = started(held("alice@x.com"), held("bob@x.com", "wiki"))
    assert code_of(lambda: decide(t, 0, "dora@x.com", "keep")) == "review_reason_required"
    assert decide(t, 1, "dora@x.com", "keep").items[0].outcome == "kept"


def test_who_may_not_decide_and_nothing_changes() -> None:
    t = started(held("alice@x.com"), held("dora@x.com"))
    before = t.items
    assert code_of(lambda: decide(t, 0, "bob@x.com", "keep", "ok")) == "not_reviewer"
    assert code_of(lambda: decide(t, 1, "dora@x.com", "keep", "ok")) == "self_review"
    assert code_of(lambda: decide(t, 0, "bot@x.com", "keep", "ok")) == "executor"
    assert t.items == before
    done = decide(t, 0, "dora@x.com", "keep", "needed")
    again = ReviewTransition(t.campaign, done.items)
    # A double click or a second reviewer after the first: one decision, a clear refusal.
    with pytest.raises(Refused) as info:
        decide(again, 0, "dan@x.com", "revoke", "no")
    assert refusal_text(info.value) == "This item was already decided by dora@x.com."
    closed = ReviewTransition(_replace(t.campaign, status="closed"), t.items)
    assert code_of(lambda: decide(closed, 0, "dora@x.com", "keep", "ok")) == "review_closed"
    assert code_of(lambda: decide(t, 0, "dora@x.com", "keep", "x" * 501)) == "reason_too_long"


def test_the_last_decision_closes_the_campaign_and_tells_the_admins() -> None:
    t = started(held("alice@x.com"))
    d = decide(t, 0, "dora@x.com", "keep", "still on call", left=0)
    assert d.campaign.status == "closed"
    assert [a.action for a in d.audit] == ["review_item_decided", "review_closed"]
    assert NotifyAdminsOfReview("C-TEST", template="review_summary") in d.effects


def test_the_decision_that_closes_a_campaign_redraws_every_card() -> None:
    t = started(held("dan@x.com"), held("dora@x.com"))
    assert [i.reviewers for i in t.items] == [("dora@x.com",), ("dan@x.com",)]
    d = decide(t, 0, "dora@x.com", "keep", "on call", left=0)
    # Dan's card shows nothing of Dora's item, but it must say the review closed too.
    refreshes = [e for e in d.effects if isinstance(e, RefreshReviewCards)]
    assert refreshes == [RefreshReviewCards("C-TEST")]


def test_keep_all_keeps_only_low_and_medium_risk() -> None:
    t = started(held("alice@x.com"), held("alice@x.com", "wiki"), held("bob@x.com", "wiki"))
    k = reviews.keep_all(t.campaign, t.items, "dora@x.com", T0, POLICY, undecided_left=3)
    assert [(i.index, i.outcome) for i in k.items] == [(1, "kept"), (2, "kept")]
    assert k.campaign.status == "open"  # the high-risk item still waits
    only_high = [t.items[0]]
    assert (
        code_of(lambda: reviews.keep_all(t.campaign, only_high, "dora@x.com", T0, POLICY, 1))
        == "nothing_to_keep"
    )


# --- the due time --------------------------------------------------------------------------


def _replace(campaign: Campaign, **changes: object) -> Campaign:
    import dataclasses

    return dataclasses.replace(campaign, **changes)  # type: ignore[arg-type]


def at_due(t: ReviewTransition, items: tuple[ReviewItem, ...] | None = None) -> ReviewTransition:
    return review_deadlines.due(
        t.campaign,
        items if items is not None else t.items,
        t.campaign.due_at,
        POLICY,
        DIR,
        timedelta(days=2),
    )


def test_nothing_happens_before_the_due_time() -> None:
    t = started(held("alice@x.com"))
    early = review_deadlines.due(t.campaign, t.items, T0, POLICY, DIR, timedelta(days=1))
    assert early.campaign == t.campaign and not early.items and not early.effects


def test_undecided_items_are_revoked_by_default_within_the_guard() -> None:
    t = started(held("alice@x.com"), held("bob@x.com"))
    d = at_due(t)
    assert d.campaign.status == "closed"
    assert all(i.defaulted and i.outcome == "revoking" for i in d.items)
    assert sum(isinstance(e, RevokeReviewed) for e in d.effects) == 2
    assert [a.action for a in d.audit].count("review_defaulted") == 2


def test_more_default_revocations_than_the_guard_wait_for_an_admin() -> None:
    t = started(held("alice@x.com"), held("bob@x.com"), held("mgr@x.com"))
    d = at_due(t)
    assert d.campaign.status == "held"
    assert all(i.outcome == "held" for i in d.items)
    assert not any(isinstance(e, RevokeReviewed) for e in d.effects)
    assert NotifyAdminsOfReview("C-TEST", template="review_held") in d.effects
    assert (
        code_of(lambda: review_deadlines.confirm(d.campaign, d.items, "dora@x.com", T0, POLICY))
        == "not_admin"
    )
    c = review_deadlines.confirm(d.campaign, d.items, "adm@x.com", T0, POLICY)
    assert c.campaign.status == "closed"
    assert sum(isinstance(e, RevokeReviewed) for e in c.effects) == 3
    assert c.audit[0].action == "review_confirmed"


def test_escalate_hands_undecided_items_to_the_fallback_once_then_revokes() -> None:
    t = started(held("alice@x.com", "wiki"), review_id="managers")
    e = at_due(t)
    assert e.campaign.escalated and e.campaign.status == "open"
    assert e.items[0].reviewers == ("adm@x.com",) and e.items[0].role == "escalated"
    assert NotifyReviewer("C-TEST", reviewer="adm@x.com") in e.effects
    assert ReviewDueAt("C-TEST", due_at=e.campaign.due_at) in e.effects
    final = at_due(ReviewTransition(e.campaign, e.items))
    assert final.campaign.status == "closed" and final.items[0].outcome == "revoking"


def test_break_glass_review_goes_to_the_owners_never_defaults_and_escalates_once() -> None:
    access = HeldAccess("dora@x.com", "prod", "ldap", "cn=prod", "grant", request_id="R-1")
    t = reviews.start_break_glass(access, POLICY, DIR, T0, "C-BG", timedelta(hours=12))
    assert t.campaign.kind == "break_glass" and t.campaign.request_id == "R-1"
    assert t.items[0].reviewers == ("dan@x.com",)  # the other owner; never the requester
    e = review_deadlines.due(t.campaign, t.items, t.campaign.due_at, POLICY, DIR, timedelta(days=7))
    assert e.campaign.escalated and e.items[0].reviewers == ("adm@x.com", "ada@x.com")
    later = review_deadlines.due(
        e.campaign, e.items, e.campaign.due_at + timedelta(days=1), POLICY, DIR, timedelta(days=7)
    )
    assert later.campaign.status == "open" and not later.items  # it waits for a verdict
    with pytest.raises(Refused):
        reviews.decide(t.campaign, t.items[0], "dan@x.com", "revoke", "", T0, POLICY, 0)
    verdict = reviews.decide(
        t.campaign, t.items[0], "dan@x.com", "revoke", "no incident", T0, POLICY, 0
    )
    assert verdict.items[0].outcome == "kept"  # judged, not revoked: the access was used
    assert not any(isinstance(x, RevokeReviewed) for x in verdict.effects)
    assert (
        NotifyAdminsOfReview("C-BG", template="break_glass_not_justified", index=0)
        in verdict.effects
    )
    assert verdict.audit[0].details["verdict"] == "not_justified"


def test_the_summary_names_who_decided_and_who_did_not() -> None:
    t = started(held("alice@x.com"), held("bob@x.com", "wiki"), held("dora@x.com"))
    kept = decide(t, 1, "dora@x.com", "keep").items[0]
    figures = review_deadlines.summary((t.items[0], kept, t.items[2]))
    assert figures["kept"] == 1 and figures["undecided"] == 2
    assert figures["silent"] == ["dan@x.com"]
