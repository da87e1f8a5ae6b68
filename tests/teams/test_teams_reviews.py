"""Access reviews end to end through ``/api/messages``: a campaign's cards in reviewers'
chats, Keep / Revoke / Keep all as Action.Execute (the reason typed in place), each answered
with the card as it now is, removals through the connector, the admin channel's summary;
and the review of break-glass access. The Teams twin of tests/slack/test_slack_reviews.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import yaml
from sqlalchemy import func, select

from engine.access_request import Status
from engine.drafts import RequestDraft
from engine.review_items import Campaign, ReviewItem
from storage.tables import AuditRow
from tests.fakes.teams_driver import has_action, inputs, shown
from tests.teams.conftest import ADMIN_CHANNEL, TeamsWorld

REVIEWS = [
    {
        "id": "quarterly-db",
        "resources": ["prod-db-admin", "staging-db-read"],
        "reviewer": "resource_owner",
        "due": "7d",
        "on_no_decision": "revoke",
    }
]
JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
CARD = "application/vnd.microsoft.card.adaptive"
TEXT = "application/vnd.microsoft.activity.message"


def _card(body: Any) -> dict[str, Any]:
    """The card an invoke answered with (it replaces the clicked one)."""
    assert isinstance(body, dict) and body["type"] == CARD, body
    return body["value"]  # type: ignore[no-any-return]


def _said(body: Any) -> str:
    """The text an invoke answered with (the card stays as it was)."""
    assert isinstance(body, dict) and body["type"] == TEXT, body
    return str(body["value"])


async def _campaign(teams: TeamsWorld) -> Campaign:
    """Alice, Erin and Bob hold staging through Clearance, Carol is a bare member of both
    groups: a campaign over both, its cards sent."""
    policy = yaml.safe_load(teams.policy_path.read_text())
    teams.policy_path.write_text(yaml.safe_dump({**policy, "reviews": REVIEWS}))
    teams.components.policies.reload()
    await teams.install_all()
    for name in ("alice", "erin", "bob"):
        status, _ = await teams.request(name, "staging-db-read", "Checking yesterday's import")
        assert status == 200
    await teams.drain()
    teams.grants.memberships |= {
        ("carol@example.com", "S0DBADMIN"),
        ("carol@example.com", "S0STAGINGRO"),
    }
    campaign = await teams.components.reviews.start("quarterly-db", "sam@example.com")
    await teams.drain()
    return campaign


async def _items(teams: TeamsWorld, campaign: Campaign) -> dict[tuple[str, str], ReviewItem]:
    found = await teams.components.reviews.store.items(campaign.id)
    return {(i.access.principal.split("@")[0], i.access.resource_id): i for i in found}


def _review_cards(teams: TeamsWorld, name: str) -> list[dict[str, Any]]:
    return [m for m in teams.dms(name) if "Please review who has access" in shown(m["card"])]


async def _decisions(teams: TeamsWorld) -> int:
    async with teams.components.database.transaction() as session:
        query = select(func.count()).where(AuditRow.action == "review_item_decided")
        return int((await session.execute(query)).scalar_one())


async def test_a_reviewer_keeps_revokes_and_keeps_the_rest_and_the_admins_hear(
    teams: TeamsWorld,
) -> None:
    campaign = await _campaign(teams)
    items = await _items(teams, campaign)
    assert len(items) == 5
    [message] = _review_cards(teams, "dora")
    assert len(_review_cards(teams, "dan")) == 1
    assert _review_cards(teams, "alice") == [] and _review_cards(teams, "sam") == []
    assert "0 of 5** of your items decided" in shown(message["card"])

    def at(who: str, resource: str = "staging-db-read") -> dict[str, Any]:
        return {"index": items[who, resource].index}

    # Keep, low risk: decided at once, answered with the card as it now is.
    status, body = await teams.driver.execute(teams.dora, message, "review_keep", where=at("bob"))
    assert status == 200 and "1 of 5** of your items decided" in shown(_card(body))
    # Keep, high risk: the reason is typed in place (Decide…).
    carol_prod = items["carol", "prod-db-admin"].index
    reason_key = f"reason_{carol_prod}"
    assert reason_key in inputs(message["card"])
    status, body = await teams.driver.execute(
        teams.dora,
        message,
        "review_keep",
        {reason_key: "On the DBA on-call rota"},
        where=at("carol", "prod-db-admin"),
    )
    assert status == 200 and "2 of 5** of your items decided" in shown(_card(body))
    # Revoke a Clearance grant and a bare membership, each with its reason.
    for who, reason in (("alice", "Moved to the data team"), ("carol", "Not a DBA any more")):
        key = f"reason_{items[who, 'staging-db-read'].index}"
        status, body = await teams.driver.execute(
            teams.dora, message, "review_revoke", {key: reason}, where=at(who)
        )
        assert status == 200 and _card(body)
    await teams.drain()

    items = await _items(teams, campaign)
    assert items["carol", "prod-db-admin"].reason == "On the DBA on-call rota"
    assert items["alice", "staging-db-read"].outcome == "revoked"
    assert items["carol", "staging-db-read"].outcome == "revoked"
    request_id = items["alice", "staging-db-read"].access.request_id
    assert request_id is not None
    request = await teams.components.clearance.get(request_id)
    assert request.status is Status.REVOKED
    assert request.end_reason == f"access review {campaign.id}: Moved to the data team"
    revoked = [m for m in teams.dms("alice") if "revoked" in (m["summary"] or "")]
    assert revoked and "Moved to the data team" in shown(revoked[-1]["card"])
    memberships = teams.grants.memberships
    assert ("alice@example.com", "S0STAGINGRO") not in memberships
    assert ("carol@example.com", "S0STAGINGRO") not in memberships
    assert ("carol@example.com", "S0DBADMIN") in memberships  # kept
    assert ("erin@example.com", "S0STAGINGRO") in memberships

    # The card in the chat followed every decision; Keep all remaining keeps Erin's.
    message = _review_cards(teams, "dora")[0]
    assert message["updates"] >= 1 and "4 of 5** of your items" in shown(message["card"])
    status, body = await teams.driver.execute(teams.dora, message, "review_keep_all")
    assert status == 200 and "This review is closed" in shown(_card(body))
    await teams.drain()
    assert (await teams.components.reviews.get(campaign.id)).status == "closed"
    for name in ("dora", "dan"):
        [card] = _review_cards(teams, name)
        assert "This review is closed" in shown(card["card"])
        assert not has_action(card["card"], "review_keep")
    posts = [shown(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL) if m.get("card")]
    [summary] = [p for p in posts if f"({campaign.id}) is closed" in p]
    assert "5 items: 5 decided by a reviewer, 3 kept, 2 revoked, 0 defaulted" in summary
    assert "Dora Diaz — decided 5 (kept 3, revoked 2)" in summary


async def test_someone_elses_click_a_double_click_and_a_missing_reason_change_nothing(
    teams: TeamsWorld,
) -> None:
    campaign = await _campaign(teams)
    items = await _items(teams, campaign)
    bob = items["bob", "staging-db-read"]
    message = _review_cards(teams, "dora")[0]
    before = await _decisions(teams)

    # Erin is no reviewer: Dora's Keep sent as Erin is refused, the card stays.
    forged = teams.driver.press(teams.erin, message, "review_keep", where={"index": bob.index})
    status, body = await teams.driver.post(forged)
    assert status == 200 and "You are not a reviewer of this item" in _said(body)
    # Bob on his own access: refused as well.
    status, body = await teams.driver.post(
        teams.driver.invoke_activity(
            teams.bob, "review_keep", {"campaign_id": campaign.id, "index": bob.index}
        )
    )
    assert "cannot review your own access" in _said(body)
    # A Revoke without a reason asks for it, with the error under the input.
    carol = items["carol", "staging-db-read"].index
    status, body = await teams.driver.execute(
        teams.dora, message, "review_revoke", {f"reason_{carol}": "  "}, where={"index": carol}
    )
    form = _card(body)
    assert "reason" in inputs(form) and "Please give a reason for revoking" in shown(form)
    assert await _decisions(teams) == before

    # Dora double-clicks (and the channel redelivers it): one decision.
    click = teams.driver.press(teams.dora, message, "review_keep", where={"index": bob.index})
    results = await asyncio.gather(teams.driver.post(click), teams.driver.post(click))
    results.append(await teams.driver.post(click))
    assert await _decisions(teams) == before + 1
    answers = [body for _, body in results]
    assert sum(a["type"] == CARD for a in answers) == 1
    assert all(
        "already decided by dora@example.com" in _said(a) for a in answers if a["type"] == TEXT
    )

    # The reason form, sent with a reason, decides; answered with the review card.
    status, body = await teams.driver.execute(
        teams.dora, {**message, "card": form}, "review_revoke", {"reason": "Not a DBA any more"}
    )
    assert "Please review who has access" in shown(_card(body))
    assert (await _items(teams, campaign))["carol", "staging-db-read"].verdict == "revoke"


async def test_status_shows_what_waits_for_review_and_opens_it(teams: TeamsWorld) -> None:
    campaign = await _campaign(teams)
    await teams.driver.say(teams.dora, "status")
    home = teams.last_card("dora")
    text = shown(home["card"])
    assert "To review" in text and campaign.id in text and "**5** items wait for you" in text
    status, body = await teams.driver.execute(teams.dora, home, "review_open")
    assert status == 200 and "Please review who has access" in shown(_card(body))
    # Someone with nothing in it is refused and learns nothing.
    forged = teams.driver.press(teams.erin, home, "review_open")
    status, body = await teams.driver.post(forged)
    assert "not a reviewer" in _said(body)
    await teams.driver.say(teams.erin, "status")
    assert "No access review waits for you" in shown(teams.last_card("erin")["card"])


async def test_break_glass_is_reviewed_by_the_owners_and_not_justified_alerts_the_admins(
    teams: TeamsWorld,
) -> None:
    await teams.install_all()
    draft = RequestDraft(
        requester="alice@example.com",
        resource_id="prod-db-admin",
        justification=JUSTIFICATION,
        ticket="INC-77",
        break_glass=True,
    )
    request = await teams.components.clearance.submit(draft)
    await teams.drain()
    campaign = await teams.components.reviews.store.campaign_for_request(request.id)
    assert campaign is not None and campaign.kind == "break_glass"

    def cards(name: str) -> list[dict[str, Any]]:
        return [m for m in teams.dms(name) if "emergency access justified" in shown(m["card"])]

    [dora_card], [_] = cards("dora"), cards("dan")
    assert cards("alice") == []
    for expected in ("Alice Archer took **break-glass** access", "INC-77", JUSTIFICATION):
        assert expected in shown(dora_card["card"]), expected

    status, body = await teams.driver.execute(
        teams.dora, dora_card, "review_revoke", {"reason_0": "A read replica would do"}
    )
    assert status == 200 and "Not justified** by Dora Diaz" in shown(_card(body))
    await teams.drain()
    posts = [shown(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL) if m.get("card")]
    [alert] = [p for p in posts if "Break-glass access not justified" in p]
    assert "Dora Diaz judged the **break-glass** access of Alice Archer" in alert
    assert "A read replica would do" in alert and request.id in alert
    assert (await teams.components.clearance.get(request.id)).status is Status.ACTIVE
    for message in (*cards("dora"), *cards("dan")):
        assert "Not justified** by Dora Diaz" in shown(message["card"])
        assert not has_action(message["card"], "review_revoke")
    forged = teams.driver.invoke_activity(
        teams.dan, "review_keep", {"campaign_id": campaign.id, "index": 0, "reason_0": "fine"}
    )
    status, body = await teams.driver.post(forged)
    assert "already decided by dora@example.com" in _said(body)


async def test_a_reviewer_who_cannot_be_reached_is_reported_to_the_admins(
    teams: TeamsWorld,
) -> None:
    policy = yaml.safe_load(teams.policy_path.read_text())
    teams.policy_path.write_text(yaml.safe_dump({**policy, "reviews": REVIEWS}))
    teams.components.policies.reload()
    await teams.install_all()
    await teams.driver.uninstall(teams.dan)  # Dan removed the app: no way to reach him
    teams.grants.memberships.add(("carol@example.com", "S0DBADMIN"))
    campaign = await teams.components.reviews.start("quarterly-db", "sam@example.com")
    await teams.drain()
    assert len(_review_cards(teams, "dora")) == 1 and teams.dms("dan") == []
    posts = [shown(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL) if m.get("card")]
    [alert] = [p for p in posts if "dan@example.com could not be reached" in p]
    assert campaign.id in alert and "1 item waits for them" in alert
