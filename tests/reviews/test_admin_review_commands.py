"""The admin commands of access reviews, typed in the admin channel of a whole Clearance:
what each answers, what it changes, and that both chats can lay the reply out."""

from __future__ import annotations

from datetime import timedelta

from bot.admin_commands import AdminReply, help_lines
from engine.drafts import RequestDraft
from message_templates import render_json
from tests.reviews.conftest import ADMIN, ReviewWorld, member


async def admin(world: ReviewWorld, text: str) -> AdminReply:
    reply = await world.components.admin.run(ADMIN, True, text)
    for platform in ("slack", "teams"):  # both lay it out (the templates fail loudly)
        render_json(platform, "admin_reply", reply.data())
    return reply


def text_of(reply: AdminReply) -> str:
    return "\n".join([reply.title, *reply.lines])


async def test_reviews_lists_what_runs_and_start_refuses_a_second(world: ReviewWorld) -> None:
    assert "No access review is running" in text_of(await admin(world, "reviews"))
    for name in ("alice", "erin"):
        world.groups.memberships.add((member(name), "S0PROD"))

    started = await admin(world, "review start quarterly")
    campaign = (await world.components.reviews.store.campaigns())[0]
    assert started.title == f"Review {campaign.id} started"
    assert started.lines == [
        f"{campaign.id} quarterly: 2 items for 2 reviewer(s), due 2026-03-09 09:00 UTC. "
        "The reviewers are asked now."
    ]
    assert campaign.started_by == ADMIN

    again = await admin(world, "review start quarterly")
    assert again.title == "Refused"
    assert again.lines == [
        f"The review 'quarterly' is already running as {campaign.id}; finish or close it first."
    ]
    assert len(await world.components.reviews.store.campaigns()) == 1
    unknown = await admin(world, "review start yearly")
    assert "There is no review 'yearly'" in unknown.lines[0]
    assert "quarterly, guarded, grants-only" in unknown.lines[0]

    await world.components.reviews.decide(campaign.id, 0, "dora@example.com", "keep", "on call")
    listed = await admin(world, "reviews")
    assert listed.lines == [
        f"{campaign.id} quarterly: 1 of 2 decided, 1 undecided, 0 held; due 2026-03-09 09:00 UTC"
    ]
    world.clock.advance(timedelta(days=8))  # overdue, before the due job ran
    assert "overdue since 2026-03-09 09:00 UTC" in text_of(await admin(world, "reviews"))


async def test_review_show_gives_progress_per_reviewer(world: ReviewWorld) -> None:
    for name in ("alice", "erin", "frank"):
        world.groups.memberships.add((member(name), "S0PROD"))
    campaign = await world.start()
    reviews = world.components.reviews
    await reviews.decide(campaign.id, 0, "dora@example.com", "keep", "on call")
    await reviews.decide(campaign.id, 1, "dora@example.com", "revoke", "moved to sales")

    shown = await admin(world, f"review show {campaign.id.lower()}")
    assert shown.title == f"Review {campaign.id} (quarterly)"
    assert shown.lines == [
        f"Open; started 2026-03-02 09:00 UTC by {ADMIN}; due 2026-03-09 09:00 UTC",
        "2 of 3 decided, 1 undecided, 0 held; 1 removal(s) pending, 0 removed",
        "dan@example.com: 0 kept, 0 revoked, 1 undecided",
        "dora@example.com: 1 kept, 1 revoked, 1 undecided",
        "Not decided anything yet: dan@example.com",
    ]
    await world.drain()  # the Revoke is carried out
    assert "0 removal(s) pending, 1 removed" in text_of(
        await admin(world, f"review show {campaign.id}")
    )
    assert (member("erin"), "S0PROD") not in world.groups.memberships

    missing = await admin(world, "review show C-NOPE")
    assert missing.lines == ["There is no review campaign 'C-NOPE'."]
    usage = await admin(world, "review")
    assert usage.lines == [
        "Usage: review start <review> | review show <campaign> | review confirm <campaign>"
    ]


async def test_review_confirm_lets_held_revocations_go_ahead(world: ReviewWorld) -> None:
    for name in ("alice", "erin", "frank"):
        world.groups.memberships.add((member(name), "S0PROD"))
    campaign = await world.start("guarded")  # max_revocations: 1
    not_yet = await admin(world, f"review confirm {campaign.id}")
    assert not_yet.lines == [
        f"The review {campaign.id} has no revocations waiting for confirmation."
    ]

    world.clock.advance(timedelta(days=7))
    await world.drain()  # three default revocations in one group: all held
    assert {m for m, g in world.groups.memberships if g == "S0PROD"} == {
        member(n) for n in ("alice", "erin", "frank")
    }
    listed = text_of(await admin(world, "reviews"))
    assert "0 of 3 decided, 0 undecided, 3 held" in listed
    assert f"revocations held: review confirm {campaign.id}" in listed
    shown = await admin(world, f"review show {campaign.id}")
    assert shown.lines[0].startswith(f"Held: 3 revocations wait for review confirm {campaign.id}")

    confirmed = await admin(world, f"review confirm {campaign.id}")
    assert confirmed.title == f"Revocations of {campaign.id} confirmed"
    assert confirmed.lines == [
        f"{campaign.id}: 3 held revocation(s) go ahead now; the campaign is closed."
    ]
    await world.drain()
    assert not {m for m, g in world.groups.memberships if g == "S0PROD"}
    assert (await world.components.reviews.get(campaign.id)).status == "closed"
    assert "No access review is running" in text_of(await admin(world, "reviews"))


async def test_pending_lists_break_glass_access_until_it_is_reviewed(world: ReviewWorld) -> None:
    clearance = world.components.clearance
    assert (await admin(world, "pending")).lines == ["No request is waiting for approval."]
    request = await clearance.submit(
        RequestDraft(
            requester=member("hugo"),
            resource_id="prod-db",
            justification="Primary is down, failing over by hand",
            break_glass=True,
        )
    )
    await world.drain()  # granted at once; its review opens
    review = await world.components.reviews.store.campaign_for_request(request.id)
    assert review is not None

    pending = await admin(world, "pending")
    assert pending.lines == [
        "Break-glass access waiting for its review (1):",
        f"{review.id}: {member('hugo')} used prod-db ({request.id}); asked: dora@example.com, "
        "dan@example.com; due 2026-03-03 09:00 UTC",
        "No request is waiting for approval.",
    ]
    assert f"{review.id}: break-glass review of {request.id}, not decided yet" in text_of(
        await admin(world, "reviews")
    )

    await world.components.reviews.decide(
        review.id, 0, "dan@example.com", "revoke", "no incident was open"
    )
    assert (await admin(world, "pending")).lines == ["No request is waiting for approval."]


async def test_help_lists_the_review_commands() -> None:
    usages = [line.partition(": ")[0] for line in help_lines()]
    assert {"reviews", "review start <review>", "review show <campaign>"} <= set(usages)
    assert "review confirm <campaign>" in usages
