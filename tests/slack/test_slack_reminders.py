"""Reminders over Slack, end to end: approvers reminded of a stage that still waits, and
requesters reminded before expiry with their Extend / I'm done buttons."""

from __future__ import annotations

import json
from datetime import timedelta

from engine.access_request import Status
from tests.fakes.slack_driver import has_action
from tests.slack.conftest import SlackWorld

JUSTIFICATION = "Reading staging data for the release check"


def _text(message: dict) -> str:
    return json.dumps(message["blocks"]) + (message.get("text") or "")


async def _granted(slack: SlackWorld, resource: str, **kw: str) -> str:
    status, _ = await slack.request("U0ALICE", resource, JUSTIFICATION, **kw)
    assert status == 200
    await slack.drain()
    [request] = await slack.components.store.find()
    return request.id


async def _approve_prod(slack: SlackWorld) -> None:
    for uid in ("U0BOB", "U0DORA", "U0SARA"):
        await slack.click(uid, slack.card_for(uid), "approve")
        await slack.drain()


async def test_self_service_extend_moves_the_end_until_the_cap(slack: SlackWorld) -> None:
    rid = await _granted(slack, "staging-db-read")
    clearance = slack.components.clearance
    first = await clearance.get(rid)
    assert first.status is Status.ACTIVE and first.expires_at is not None
    assert "U0ALICE" in slack.fake.usergroups["S0STAGINGRO"]["users"]

    # The day-before reminder is skipped (4h grant); the hour-before one carries Extend.
    slack.clock.set(first.expires_at - timedelta(hours=1))
    await slack.drain()
    reminder = slack.card_for("U0ALICE", "extend")
    forms = len(slack.fake.called("views.open"))
    await slack.click("U0ALICE", reminder, "extend")
    await slack.drain()
    extended = await clearance.get(rid)
    assert extended.expires_at == first.expires_at + timedelta(hours=4)
    assert extended.self_extended == timedelta(hours=4)
    assert any("extended" in _text(m).lower() for m in slack.dms("U0ALICE"))
    assert any("extended" in _text(m).lower() for m in slack.fake.messages_in("C0ADMINS"))
    assert len(slack.fake.called("views.open")) == forms, "no form: the time was simply added"

    # The old end passes: the access stays, the group keeps Alice.
    slack.clock.set(first.expires_at + timedelta(minutes=1))
    await slack.drain()
    assert (await clearance.get(rid)).status is Status.ACTIVE
    assert "U0ALICE" in slack.fake.usergroups["S0STAGINGRO"]["users"]

    # A second Extend uses the rest of the 8h cap; a third opens a new request instead.
    opened = len(slack.fake.called("views.open"))
    await slack.click("U0ALICE", reminder, "extend")
    capped = await clearance.get(rid)
    assert capped.expires_at == first.expires_at + timedelta(hours=8)
    await slack.click("U0ALICE", reminder, "extend")
    assert (await clearance.get(rid)).expires_at == capped.expires_at
    assert len(slack.fake.called("views.open")) == opened + 1
    form = slack.last_view()
    assert "staging-db-read" in json.dumps(form) and rid in json.dumps(form)

    # At the final end the access is removed and Alice is told.
    assert capped.expires_at is not None
    slack.clock.set(capped.expires_at)
    await slack.drain()
    ended = await clearance.get(rid)
    assert ended.status is Status.EXPIRED and ended.deprovisioned_at is not None
    assert "U0ALICE" not in slack.fake.usergroups["S0STAGINGRO"]["users"]


async def test_extend_without_self_service_opens_a_prefilled_request(slack: SlackWorld) -> None:
    rid = await _granted(slack, "prod-db-admin", ticket="INC-42")
    await _approve_prod(slack)
    granted = await slack.components.clearance.get(rid)
    assert granted.status is Status.ACTIVE and granted.expires_at is not None
    slack.clock.set(granted.expires_at - timedelta(minutes=15))
    await slack.drain()
    reminder = slack.card_for("U0ALICE", "extend")
    opened = len(slack.fake.called("views.open"))
    await slack.click("U0ALICE", reminder, "extend")
    assert len(slack.fake.called("views.open")) == opened + 1
    form = json.dumps(slack.last_view())
    assert "prod-db-admin" in form and f"Extension of {rid}" in form
    # Nothing changed on the grant itself: more time goes through the approval chain.
    assert (await slack.components.clearance.get(rid)).expires_at == granted.expires_at


async def test_only_the_requester_can_extend_and_im_done_revokes_now(slack: SlackWorld) -> None:
    rid = await _granted(slack, "staging-db-read")
    before = await slack.components.clearance.get(rid)
    forms = len(slack.fake.called("views.open"))
    status, _ = await slack.click_value("U0BOB", "extend", rid)
    assert status == 200
    after = await slack.components.clearance.get(rid)
    assert after.expires_at == before.expires_at and after.self_extended == timedelta(0)
    assert len(slack.fake.called("views.open")) == forms, "Bob must not get Alice's form"
    refusal = slack.fake.responses[-1]
    assert refusal["response_type"] == "ephemeral"
    assert "Only the requester can extend" in json.dumps(refusal)

    await slack.click("U0ALICE", slack.card_for("U0ALICE", "done"), "done")
    await slack.drain()
    done = await slack.components.clearance.get(rid)
    assert done.status is Status.REVOKED and done.deprovisioned_at is not None
    assert "U0ALICE" not in slack.fake.usergroups["S0STAGINGRO"]["users"]


async def test_a_waiting_stage_reminds_its_approvers_and_tells_the_admins(
    slack: SlackWorld,
) -> None:
    rid = await _granted(slack, "prod-db-admin", ticket="INC-42")
    request = await slack.components.clearance.get(rid)
    assert request.stage is not None and request.pending_deadline is not None
    started = request.stage.started_at
    assert len(slack.dms("U0BOB")) == 1

    # Halfway to the 8h timeout nobody has decided: Bob gets the card again, as a reminder.
    assert request.pending_deadline - started == timedelta(hours=8)
    slack.clock.set(started + timedelta(hours=4))
    await slack.drain()
    first, again = slack.dms("U0BOB")
    assert "Reminder" in _text(again) and "Reminder" not in _text(first)
    waiting = [m for m in slack.fake.messages_in("C0ADMINS") if "Waiting for approval" in _text(m)]
    assert len(waiting) == 1 and "<@U0BOB>" in _text(waiting[0])
    audit = [e async for e in slack.components.audit.events(request_id=rid)]
    [reminded] = [e for e in audit if e.action == "approvers_reminded"]
    assert reminded.details == {"stage": 0, "approvers": ["bob@example.com"]}

    # A decision on the reminder updates both copies; the next stage's reminder is its own.
    await slack.click("U0BOB", again, "approve")
    await slack.drain()
    for message in slack.dms("U0BOB"):
        assert not has_action(message["blocks"], "approve") and message["updates"] >= 1
    slack.clock.advance(timedelta(hours=1))
    await slack.drain()
    assert len(slack.dms("U0DORA")) == 1, "stage 2 started an hour ago: no reminder yet"
