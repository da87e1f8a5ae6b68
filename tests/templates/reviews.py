"""Real review campaigns, made by the engine, to render the review templates of each chat.

Campaigns are started, decided, defaulted, held and escalated by the engine itself
(``engine.reviews``, ``engine.review_deadlines``) on the example policy, and shown through
``bot.review_views``' data builders, as the review notifier does. Beside representative
data is worst-case data: a reviewer with 300 items, hostile text wherever a person, a
directory, a connector or a reviewer supplies it, 60 reviewers, 40 held groups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from bot.review_views import admin_data, card_data, reason_form_data
from engine import review_deadlines, reviews
from engine.directory import DirectorySnapshot, Person
from engine.review_items import Campaign, HeldAccess, ReviewItem, ReviewTransition, Verdict
from engine.review_policy import ReviewPolicy
from tests.templates.requests import T0, Case, TemplateData, World

CAMPAIGN = "C-7K3QX9MD"
DORA = "dora@example.com"  # a DBA: she reviews prod-db-admin and staging-db-read
DAN = "dan@example.com"
NOW = T0 + timedelta(days=2)


@dataclass(frozen=True)
class Reviewed:
    """A campaign as the engine left it, and the world it was made in."""

    world: World
    campaign: Campaign
    items: tuple[ReviewItem, ...]

    @property
    def people(self) -> Mapping[str, Person]:
        return self.world.directory.people

    @property
    def counts(self) -> Counter[str]:
        return Counter(i.outcome for i in self.items)

    def mine(self, reviewer: str) -> list[ReviewItem]:
        return [i for i in self.items if reviewer in i.reviewers]

    def apply(self, transition: ReviewTransition) -> Reviewed:
        changed = {i.index: i for i in transition.items}
        items = tuple(changed.get(i.index, i) for i in self.items)
        return replace(self, campaign=transition.campaign, items=items)

    def decide(self, index: int, actor: str, verdict: Verdict, reason: str = "") -> Reviewed:
        item = self.items[index]
        left = sum(1 for i in self.items if i.undecided and i.index != index)
        transition = reviews.decide(
            self.campaign, item, actor, verdict, reason, NOW, self.world.policy, left
        )
        return self.apply(transition)


def review(**overrides: Any) -> ReviewPolicy:
    values: dict[str, Any] = {
        "id": "quarterly-prod",
        "resources": ["prod-db-admin", "staging-db-read", "ci-admin"],
        "reviewer": "resource_owner",
        "due": "7d",
    }
    values.update(overrides)
    return ReviewPolicy.model_validate(values)


def held_access(
    principal: str,
    resource: str,
    group: str,
    holding: str = "member",
    justification: str = "",
    n: int = 0,
) -> HeldAccess:
    grant = holding == "grant"
    return HeldAccess(
        principal=principal,
        resource_id=resource,
        connector="slack-groups",
        group=group,
        holding=holding,  # type: ignore[arg-type]
        request_id=f"R-{n}" if grant else None,
        since=T0 - timedelta(days=30 + n % 60) if grant else None,
        approvers=("bob@example.com", "dora@example.com") if grant else (),
        justification=justification if grant else "",
        requests_90d=n % 7,
    )


def typical_held() -> list[HeldAccess]:
    """What the example's groups hold: a bare member, grants, a baseline member."""
    return [
        held_access("carol@example.com", "prod-db-admin", "S0DBADMIN"),
        held_access(
            "alice@example.com",
            "staging-db-read",
            "S0STAGINGRO",
            "grant",
            "Checking yesterday's import",
            n=3,
        ),
        held_access("erin@example.com", "staging-db-read", "S0STAGINGRO", "grant", "ETL", n=4),
        held_access("carol@example.com", "staging-db-read", "S0STAGINGRO", "baseline"),
        held_access("carol@example.com", "ci-admin", "S0CIADMIN"),
    ]


def many_held(data: TemplateData, n: int, hostile: bool) -> tuple[World, list[HeldAccess]]:
    """``n`` holders of prod-db-admin (high) and staging-db-read (low), all Dora's to
    review; hostile: hostile names, groups and 2000-character justifications."""
    world = data.worst_world() if hostile else data.world()
    h = data.hostile
    people = dict(world.directory.people)
    held = []
    for i in range(n):
        email = f"h{i}@example.com"
        people[email] = Person(email=email, name=f"{h.name} {i}" if hostile else f"Holder {i}")
        resource, group = ("prod-db-admin", "S0DBADMIN") if i % 2 else ("staging-db-read", "S0")
        group = f"{h.name} {group}" if hostile else group
        justification = h.long if hostile else "Nightly ETL checks"
        holding = ("grant", "member", "baseline")[i % 3]
        held.append(held_access(email, resource, group, holding, justification, n=i))
    directory = DirectorySnapshot(people, world.directory.groups)
    return World(world.policy, directory, world.requests), held


def started(world: World, held: Sequence[HeldAccess], **policy: Any) -> Reviewed:
    transition = reviews.start(
        review(**policy), held, world.policy, world.directory, T0, CAMPAIGN, "sam@example.com"
    )
    return Reviewed(world, transition.campaign, transition.items)


def break_glass(data: TemplateData, hostile: bool) -> tuple[Reviewed, dict[str, Any]]:
    """The review of the example's break-glass request, and the request's view."""
    world = data.worst_world() if hostile else data.world()
    request = world.requests["break_glass_active"]
    if hostile:
        request = data.worst(request)
    access = HeldAccess.of_grant(request)
    transition = reviews.start_break_glass(
        access, world.policy, world.directory, T0, "C-BREAKGLS", timedelta(hours=24)
    )
    view = data.view("break_glass_active", None, hostile=hostile)
    return Reviewed(world, transition.campaign, transition.items), view


# --- template data, as bot/review_views builds it ----------------------------------------


def card(made: Reviewed, viewer: str, nudge: bool = False, **extra: Any) -> dict[str, Any]:
    data = card_data(
        made.campaign,
        made.counts,
        made.mine(viewer),
        viewer,
        made.world.policy,
        made.people,
        NOW,
        nudge,
        made.items,
    )
    return {**data, **extra}


def reason_form(
    made: Reviewed, index: int, verdict: Verdict, errors: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    data = reason_form_data(
        made.campaign,
        made.counts,
        made.items[index],
        verdict,
        made.world.policy,
        made.people,
        NOW,
        errors,
        {"reason": extra.pop("reason", "")},
    )
    return {**data, **extra}


def admin(made: Reviewed, index: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        **admin_data(made.campaign, made.items, made.world.policy, made.people, NOW, index),
        **extra,
    }


def at_due(r: Reviewed) -> Reviewed:
    """The due time came: the undecided follow the campaign's on_no_decision."""
    undecided = [i for i in r.items if i.undecided]
    transition = review_deadlines.due(
        r.campaign,
        undecided,
        r.campaign.due_at,
        r.world.policy,
        r.world.directory,
        timedelta(days=3),
    )
    return r.apply(transition)


# --- every review template, representative and worst case ---------------------------------


def review_cases(data: TemplateData) -> Iterator[Case]:
    """(template, label, data) for every review template of one chat."""
    h = data.hostile
    typical = started(data.world(), typical_held())
    yield "review_card", "typical", card(typical, DORA)
    yield "review_card", "nudge", card(typical, DORA, nudge=True)
    yield "review_card", "bob-medium-only", card(typical, "bob@example.com")
    partly = typical.decide(0, DORA, "keep", "On call this quarter").decide(
        2, DAN, "revoke", "Left"
    )
    yield "review_card", "partly-decided", card(partly, DORA)
    yield "review_card", "not-a-reviewer", card(partly, "erin@example.com")
    done = partly.decide(1, DORA, "keep").decide(3, DORA, "keep")
    yield "review_card", "nothing-left", card(done, DORA)
    closed = done.decide(4, "bob@example.com", "keep")
    assert closed.campaign.status == "closed"
    yield "review_card", "closed", card(closed, DORA)
    held = at_due(started(data.world(), typical_held(), max_revocations=0))
    assert held.campaign.status == "held"
    yield "review_card", "held", card(held, DORA)

    world, many = many_held(data, 300, hostile=False)
    big = started(world, many)
    yield "review_card", "300-items", card(big, DORA)
    yield "review_card", "300-items-nudge", card(big, DORA, nudge=True)
    world, worst_many = many_held(data, 300, hostile=True)
    worst = started(world, worst_many)
    yield "review_card", "worst-300-items", card(worst, DORA, nudge=True)

    glass, glass_request = break_glass(data, hostile=False)
    yield "break_glass_review", "to-judge", card(glass, DORA, r=glass_request)
    yield "break_glass_review", "nudge", card(glass, DAN, nudge=True, r=glass_request)
    justified = glass.decide(0, DAN, "keep", "INC-99 needed it to restore the primary")
    yield "break_glass_review", "justified", card(justified, DORA, r=glass_request)
    unjustified = glass.decide(0, DORA, "revoke", "A read replica would have done")
    yield "break_glass_review", "not-justified", card(unjustified, DAN, r=glass_request)
    worst_glass, worst_request = break_glass(data, hostile=True)
    yield "break_glass_review", "worst", card(worst_glass, DORA, nudge=True, r=worst_request)
    worst_judged = worst_glass.decide(0, DORA, "revoke", h.reason)
    yield "break_glass_review", "worst-judged", card(worst_judged, DAN, r=worst_request)

    yield "review_reason_form", "keep-high", reason_form(typical, 0, "keep")
    yield "review_reason_form", "revoke-grant", reason_form(typical, 1, "revoke")
    yield "review_reason_form", "revoke-baseline", reason_form(typical, 3, "revoke")
    missing = {"reason": "Please give a reason for revoking this access."}
    yield "review_reason_form", "missing", reason_form(typical, 4, "revoke", missing)
    yield "review_reason_form", "justified", reason_form(glass, 0, "keep", r=glass_request)
    yield "review_reason_form", "not-justified", reason_form(glass, 0, "revoke", r=glass_request)
    worst_errors = {"reason": h.long}
    yield (
        "review_reason_form",
        "worst",
        reason_form(worst, 1, "revoke", worst_errors, reason=h.long),
    )
    yield (
        "review_reason_form",
        "worst-break-glass",
        reason_form(worst_glass, 0, "keep", worst_errors, reason=h.reason, r=worst_request),
    )

    yield "admin_review_summary", "closed", admin(closed)
    defaulted = at_due(partly)
    assert defaulted.campaign.status == "closed"
    yield "admin_review_summary", "defaulted", admin(defaulted)
    yield "admin_review_summary", "worst", admin(at_due(worst_reviewers(data)))
    yield "admin_review_held", "typical", admin(held)
    yield (
        "admin_review_held",
        "worst",
        admin(at_due(started(*many_groups(data), max_revocations=0))),
    )
    escalated = at_due(started(data.world(), typical_held(), on_no_decision="escalate"))
    assert escalated.campaign.escalated
    yield "admin_review_escalated", "typical", admin(escalated)
    yield (
        "admin_review_escalated",
        "worst",
        admin(at_due(started(*many_held(data, 300, True), on_no_decision="escalate"))),
    )
    yield "admin_break_glass_not_justified", "typical", admin(unjustified, 0, r=glass_request)
    yield "admin_break_glass_not_justified", "worst", admin(worst_judged, 0, r=worst_request)


def worst_reviewers(data: TemplateData) -> Reviewed:
    """60 reviewers with hostile names, two to an item (the policy's owners are only two
    people, so the items are handed to them here, as an escalation would): half of them
    decide, the rest stay silent."""
    world, held = many_held(data, 120, hostile=True)
    r = started(world, held)
    # Holders h0..h119 review one another, never their own access.
    people = [f"h{60 + i}@example.com" for i in range(60)]
    items = tuple(
        i.evolve(reviewers=(people[i.index % 60], people[(i.index + 1) % 60]))
        for i in r.items
        if i.index < 60
    ) + tuple(i for i in r.items if i.index >= 60)
    r = replace(r, items=items)
    for item in r.items[:60:2]:
        r = r.decide(item.index, item.reviewers[0], "revoke", data.hostile.reason)
    return r


def many_groups(data: TemplateData) -> tuple[World, list[HeldAccess]]:
    """40 groups with hostile names, three holders each, nobody deciding."""
    world, held = many_held(data, 120, hostile=True)
    return world, [replace(a, group=f"{a.group} {i % 40}") for i, a in enumerate(held)]
