"""Break-glass end to end through ``/api/messages``, the Teams twin of
tests/slack/test_slack_break_glass.py: the form offers it where the resource does (a
toggle; the form comes back for break-glass before anything is granted), access lands at
once, the admins and each owner hear who, what, why and until when, and the limit (the
example allows 2 in 30 days) sends the next one to the approvers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from engine.access_request import Status
from storage.tables import AuditRow, RequestRow
from tests.fakes.teams_driver import find_action, has_action, input_values, inputs, shown
from tests.teams.conftest import ADMIN_CHANNEL, TeamsWorld

JUSTIFICATION = "Primary is down, INC-77: failing over by hand"
OWNER_ALERT = "Break-glass access to a resource you own"
LIMIT = "Break-glass limit reached (2 in 30d): your request goes to the approvers"
CARD = "application/vnd.microsoft.card.adaptive"
TEXT = "application/vnd.microsoft.activity.message"


def _card(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and body["type"] == CARD, body
    return body["value"]  # type: ignore[no-any-return]


async def _requests(world: TeamsWorld) -> int:
    async with world.components.database.transaction() as session:
        query = select(func.count()).select_from(RequestRow)
        return int((await session.execute(query)).scalar_one())


def _error_under(card: dict[str, Any], field: str) -> str:
    """The error shown right below input ``field`` ("" when there is none)."""
    body = card["body"]
    at = next(i for i, e in enumerate(body) if e.get("id") == field)
    below = body[at + 1]
    return shown(below) if below.get("color") == "attention" else ""


async def _break_glass(world: TeamsWorld, **kw: Any) -> tuple[int, Any]:
    return await world.request(
        "alice", "prod-db-admin", JUSTIFICATION, ticket="INC-77", break_glass=True, **kw
    )


async def test_break_glass_grants_at_once_and_alerts_the_admins_and_each_owner(
    teams: TeamsWorld,
) -> None:
    await teams.install_all()
    await teams.driver.say(teams.alice, "request access prod-db-admin")
    form = teams.card_for("alice", "submit_request")
    toggle = inputs(form["card"])["break_glass"]
    assert toggle["type"] == "Input.Toggle" and toggle["value"] == "false"

    # Toggled on: the form comes back for break-glass first; nothing is asked for yet.
    typed = {"break_glass": "true", "justification": JUSTIFICATION, "ticket": "INC-77"}
    status, body = await teams.driver.execute(teams.alice, form, "submit_request", typed)
    glass = _card(body)
    assert input_values(glass)["break_glass"] == "true" and input_values(glass)["duration"] == "1h"
    assert input_values(glass)["justification"] == JUSTIFICATION
    assert find_action(glass, "submit_request")["data"] == {
        "form_resource": "prod-db-admin",
        "form_break_glass": "true",
    }
    assert await _requests(teams) == 0

    status, body = await teams.driver.execute(
        teams.alice, {**form, "card": glass}, "submit_request"
    )
    assert status == 200 and "Production database" in shown(_card(body))
    await teams.drain()

    [request] = await teams.components.store.find()
    assert request.status is Status.ACTIVE and request.break_glass
    assert request.approval_mode == "break_glass" and not request.decisions
    assert ("alice@example.com", "S0DBADMIN") in teams.grants.memberships
    assert teams.dms("bob") == [] and teams.dms("sam") == []

    alerts = [shown(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL)]
    [alert] = [a for a in alerts if "Break-glass access" in a and "Review required" in a]
    for expected in ("Alice Archer", "Production database (admin)", "for 1h, until ", "INC-77"):
        assert expected in alert, expected
    assert JUSTIFICATION in alert
    for owner in ("dora", "dan"):
        # The owner alert, and then the review card that asks whether it was justified.
        [dm] = [m for m in teams.dms(owner) if OWNER_ALERT in shown(m["card"])]
        assert JUSTIFICATION in shown(dm["card"])
        [review] = [m for m in teams.dms(owner) if OWNER_ALERT not in shown(m["card"])]
        assert "Was this emergency access justified?" in shown(review["card"])
    assert all(OWNER_ALERT not in shown(m["card"]) for m in teams.dms("alice"))


async def test_a_too_long_break_glass_and_one_without_a_ticket_are_refused_on_their_field(
    teams: TeamsWorld,
) -> None:
    await teams.install_all("alice")
    _, body = await _break_glass(teams, duration="2h")
    form = _card(body)
    assert "1h is the longest break-glass access" in _error_under(form, "duration")
    assert input_values(form)["break_glass"] == "true"  # still asked for as break-glass

    _, body = await teams.request(
        "alice", "prod-db-admin", JUSTIFICATION, ticket="", break_glass=True
    )
    assert "needs a ticket id" in _error_under(_card(body), "ticket")
    assert await _requests(teams) == 0


async def test_the_third_break_glass_in_30_days_goes_to_the_approvers_and_says_why(
    teams: TeamsWorld,
) -> None:
    await teams.install_all()
    for _ in range(2):
        status, body = await _break_glass(teams)
        assert status == 200 and "limit" not in shown(_card(body))
        await teams.drain()
        teams.clock.advance(timedelta(minutes=10))

    status, body = await _break_glass(teams)
    assert status == 200 and LIMIT in shown(_card(body))  # the form's answer says why
    await teams.drain()
    third = (await teams.components.store.find())[0]
    assert third.status is Status.PENDING and third.break_glass_refused == "limit"
    assert LIMIT in teams.card_for("alice", "cancel")["summary"]
    bob_card = teams.card_for("bob")
    assert has_action(bob_card["card"], "approve")
    assert "Asked as break-glass" in shown(bob_card["card"])
    async with teams.components.database.transaction() as session:
        details = json.loads(
            (
                await session.execute(
                    select(AuditRow.details).where(
                        AuditRow.request_id == third.id, AuditRow.action == "requested"
                    )
                )
            ).scalar_one()
        )
    assert details["break_glass_refused"] == "limit" and details["recent"] == 2


async def test_no_break_glass_where_the_resource_has_none_and_a_forged_one_is_refused(
    teams: TeamsWorld,
) -> None:
    await teams.install_all("erin")
    await teams.driver.say(teams.erin, "request access ci-admin")
    form = teams.card_for("erin", "submit_request")
    assert "break_glass" not in inputs(form["card"])
    typed = {"justification": "Rotate the CI runners' credentials", "break_glass": "true"}
    # Sent as a form drawn for break-glass: refused on the resource, nothing written.
    forged = {**typed, "form_break_glass": "true"}
    _, body = await teams.driver.execute(teams.erin, form, "submit_request", forged)
    refused = _card(body)
    assert "has no break-glass access" in _error_under(refused, "resource")
    assert "break_glass" not in inputs(refused)
    # Sent as a toggle that changed: the form as it is for this resource, without one.
    _, body = await teams.driver.execute(teams.erin, form, "submit_request", typed)
    assert "break_glass" not in inputs(_card(body))
    assert await _requests(teams) == 0
