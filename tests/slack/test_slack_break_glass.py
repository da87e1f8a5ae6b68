"""Break-glass end to end through ``/slack/events``: the form offers it where the resource
does, access lands at once, the admins and each owner hear who, what, why and until when,
and the limit (the example allows 2 in 30 days) sends the next one to the approvers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from engine.access_request import Status
from storage.tables import AuditRow, OutboxRow, RequestRow
from tests.fakes.slack_driver import has_action, view_block
from tests.slack.conftest import SlackWorld

JUSTIFICATION = "Primary is down, INC-77: failing over by hand"
OWNER_ALERT = "Break-glass access to a resource you own"
LIMIT = "Break-glass limit reached (2 in 30d): your request goes to the approvers"


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"]) + (message.get("text") or "")


async def _count(world: SlackWorld, model: type) -> int:
    async with world.components.database.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _break_glass(world: SlackWorld, **kw: Any) -> tuple[int, str]:
    return await world.request(
        "U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-77", break_glass=True, **kw
    )


def _errors(body: str) -> dict[str, str]:
    reply = json.loads(body)
    assert reply["response_action"] == "errors", reply
    return dict(reply["errors"])


async def test_break_glass_grants_at_once_and_alerts_the_admins_and_each_owner(
    slack: SlackWorld,
) -> None:
    await slack.command("U0ALICE", "prod-db-admin")
    form = slack.last_view()
    assert view_block(form, "break_glass")["element"]["type"] == "checkboxes"
    # Ticking the box brings the form back with break-glass's durations: 1h at most.
    await slack.check("U0ALICE", form, "break_glass")
    ticked = slack.fake.called("views.update")[-1]["view"]
    duration = view_block(ticked, "duration")["element"]
    assert duration["initial_option"]["value"] == "1h"
    assert [o["value"] for o in duration["options"]] == ["15m", "30m", "1h"]
    assert view_block(ticked, "break_glass")["element"]["initial_options"]

    status, body = await slack.submit(
        "U0ALICE",
        slack.last_view(),
        {
            "resource": "prod-db-admin",
            "break_glass": "true",
            "justification": JUSTIFICATION,
            "ticket": "INC-77",
        },
    )
    assert status == 200 and "errors" not in body
    await slack.drain()

    [request] = await slack.components.store.find()
    assert request.status is Status.ACTIVE and request.break_glass
    assert request.approval_mode == "break_glass" and not request.decisions
    assert request.expires_at is not None and request.granted_at is not None
    assert request.expires_at - request.granted_at == request.duration
    # Granted at once: the connector put Alice in the group, nobody was asked.
    assert "U0ALICE" in slack.fake.usergroups["S0DBADMIN"]["users"]
    assert slack.dms("U0BOB") == [] and slack.dms("U0SAM") == []

    # The admin channel, loudly: who, what, why, until when.
    alerts = [_text(m) for m in slack.fake.messages_in("C0ADMINS")]
    [alert] = [a for a in alerts if "Break-glass access" in a and "Review required" in a]
    for expected in ("<@U0ALICE>", "Production database (admin)", "for 1h, until ", "INC-77"):
        assert expected in alert, expected
    assert JUSTIFICATION in alert
    # Each owner (group:dba) in a DM of their own, and then the review card that asks
    # whether it was justified; the requester gets none of those.
    for owner in ("U0DORA", "U0DAN"):
        [dm] = [_text(m) for m in slack.dms(owner) if OWNER_ALERT in _text(m)]
        assert "<@U0ALICE>" in dm and JUSTIFICATION in dm
        assert "until " in dm
        [review] = [_text(m) for m in slack.dms(owner) if OWNER_ALERT not in _text(m)]
        assert "Was this emergency access justified?" in review
    assert all(OWNER_ALERT not in _text(m) for m in slack.dms("U0ALICE"))
    assert any("Break-glass: no one approved this" in _text(m) for m in slack.dms("U0ALICE"))


async def test_a_too_long_break_glass_and_one_without_a_ticket_are_refused_on_their_field(
    slack: SlackWorld,
) -> None:
    status, body = await _break_glass(slack, duration="2h")
    assert status == 200
    errors = _errors(body)
    assert set(errors) == {"duration"}
    assert "1h is the longest break-glass access" in errors["duration"]

    status, body = await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, break_glass=True)
    errors = _errors(body)
    assert set(errors) == {"ticket"} and "needs a ticket id" in errors["ticket"]

    status, body = await slack.request(
        "U0ALICE", "prod-db-admin", "now!", ticket="INC-77", break_glass=True
    )
    assert "at least 15 characters" in _errors(body)["justification"]
    assert await _count(slack, RequestRow) == 0 and await _count(slack, OutboxRow) == 0


async def test_the_third_break_glass_in_30_days_goes_to_the_approvers_and_says_why(
    slack: SlackWorld,
) -> None:
    for _ in range(2):
        status, body = await _break_glass(slack)
        assert status == 200 and "errors" not in body
        await slack.drain()
        slack.clock.advance(timedelta(minutes=10))
    assert [r.break_glass for r in await slack.components.store.find()] == [True, True]

    status, body = await _break_glass(slack)
    assert status == 200 and "errors" not in body
    await slack.drain()
    third = (await slack.components.store.find())[0]  # the newest
    assert third.status is Status.PENDING and not third.break_glass
    assert third.break_glass_refused == "limit"
    # The requester is told why, in the confirmation that can still cancel it ...
    confirmation = slack.card_for("U0ALICE", "cancel")
    assert LIMIT in confirmation["text"] and "Break-glass limit reached" in _text(confirmation)
    # ... and the first stage's approver decides, knowing it was asked as break-glass.
    card = slack.card_for("U0BOB")
    assert has_action(card["blocks"], "approve")
    assert "Asked as break-glass" in _text(card)
    assert "asked for this 2 times in the last 90 days" in _text(card)
    # The owners heard of the two break-glass grants only (each also asks for its review).
    assert sum(OWNER_ALERT in _text(m) for m in slack.dms("U0DORA")) == 2
    assert sum("emergency access justified" in _text(m) for m in slack.dms("U0DORA")) == 2
    async with slack.components.database.transaction() as session:
        rows = await session.execute(
            select(AuditRow.details).where(
                AuditRow.request_id == third.id, AuditRow.action == "requested"
            )
        )
        details = json.loads(rows.scalar_one())
    assert details["break_glass"] is True and details["break_glass_refused"] == "limit"
    assert details["break_glass_limit"] == "2/30d" and details["recent"] == 2


async def test_no_break_glass_where_the_resource_has_none_and_a_forged_one_is_refused(
    slack: SlackWorld,
) -> None:
    await slack.command("U0ERIN", "ci-admin")
    form = slack.last_view()
    assert "break_glass" not in {b.get("block_id") for b in form["blocks"]}
    forged = {"break_glass": {"type": "checkboxes", "selected_options": [{"value": "true"}]}}
    status, body = await slack.submit(
        "U0ERIN",
        form,
        {"resource": "ci-admin", "justification": "Rotate the CI runners' credentials"},
        forged=forged,
    )
    assert status == 200
    errors = _errors(body)
    assert set(errors) == {"resource"} and "has no break-glass access" in errors["resource"]
    assert await _count(slack, RequestRow) == 0
