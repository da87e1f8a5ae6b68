"""Access reviews end to end through ``/slack/events``: a campaign's cards in reviewers' DMs,
Keep / Revoke / Keep all through signed clicks and modals, removals through the Slack API
(user groups), the admin channel's summary; and the review of break-glass access.
The Teams twin is tests/teams/test_teams_reviews.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from sqlalchemy import func, select

from engine.access_request import Status
from engine.drafts import RequestDraft
from engine.review_items import Campaign, ReviewItem
from storage.tables import AuditRow
from tests.fakes.slack_driver import has_action
from tests.slack.conftest import SlackWorld

# The one review these tests run (in place of any the example policy has).
REVIEWS = [
    {
        "id": "quarterly-db",
        "resources": ["prod-db-admin", "staging-db-read"],
        "reviewer": "resource_owner",
        "due": "7d",
        "on_no_decision": "revoke",
    }
]
DORA, DAN = "U0DORA", "U0DAN"
JUSTIFICATION = "Investigating INC-42: replication lag on the primary"


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks") or [], ensure_ascii=False) + (message.get("text") or "")


async def _with_reviews(slack: SlackWorld) -> None:
    policy = yaml.safe_load(slack.policy_path.read_text())
    slack.policy_path.write_text(yaml.safe_dump({**policy, "reviews": REVIEWS}))
    slack.components.policies.reload()


async def _campaign(slack: SlackWorld) -> Campaign:
    """Alice, Erin and Bob hold staging through Clearance, Carol is a bare member of both
    groups (the fixture put her there): a campaign over both, its cards sent."""
    await _with_reviews(slack)
    for user in ("U0ALICE", "U0ERIN", "U0BOB"):
        status, body = await slack.request(user, "staging-db-read", "Checking yesterday's import")
        assert status == 200 and "errors" not in body
    await slack.drain()
    campaign = await slack.components.reviews.start("quarterly-db", "sam@example.com")
    await slack.drain()
    return campaign


async def _items(slack: SlackWorld, campaign: Campaign) -> dict[tuple[str, str], ReviewItem]:
    found = await slack.components.reviews.store.items(campaign.id)
    return {(i.access.principal.split("@")[0], i.access.resource_id): i for i in found}


def _review_cards(slack: SlackWorld, user: str) -> list[dict[str, Any]]:
    return [m for m in slack.dms(user) if "Please review who has access" in _text(m)]


async def _decisions(slack: SlackWorld) -> int:
    async with slack.components.database.transaction() as session:
        query = select(func.count()).where(AuditRow.action == "review_item_decided")
        return int((await session.execute(query)).scalar_one())


async def test_a_reviewer_keeps_revokes_and_keeps_the_rest_and_the_admins_hear(
    slack: SlackWorld,
) -> None:
    campaign = await _campaign(slack)
    items = await _items(slack, campaign)
    assert set(items) == {
        ("carol", "prod-db-admin"),
        ("alice", "staging-db-read"),
        ("erin", "staging-db-read"),
        ("bob", "staging-db-read"),
        ("carol", "staging-db-read"),
    }
    # One card each for the DBAs (the owners), listing all five; nobody else is asked.
    [card] = _review_cards(slack, DORA)
    assert len(_review_cards(slack, DAN)) == 1
    assert _review_cards(slack, "U0ALICE") == [] and _review_cards(slack, "U0SAM") == []
    assert "*0 of 5* of your items decided" in _text(card)

    def block(who: str, resource: str = "staging-db-read") -> str:
        return f"review_item_{items[who, resource].index}"

    # Keep, low risk: decided at once.
    await slack.click(DORA, card, "review_keep", block("bob"))
    await slack.drain()
    assert (await _items(slack, campaign))["bob", "staging-db-read"].outcome == "kept"
    card = slack.dms(DORA)[-1]
    assert card["updates"] >= 1 and "*1 of 5* of your items decided" in _text(card)
    assert block("bob") not in _text(card)

    # Keep, high risk: the modal asks why first.
    await slack.click(DORA, card, "review_keep", block("carol", "prod-db-admin"))
    modal = slack.last_view()
    assert modal["callback_id"] == "review_reason" and modal["submit"]["text"] == "Keep"
    status, body = await slack.submit(DORA, modal, {"reason": "On the DBA on-call rota"})
    assert status == 200 and "errors" not in body

    # Revoke a Clearance grant: the modal asks why; the request ends with the review as its
    # reason, Alice is told and leaves the user group.
    await slack.click(DORA, slack.dms(DORA)[-1], "review_revoke", block("alice"))
    modal = slack.last_view()
    assert modal["title"]["text"] == "Revoke access"
    status, body = await slack.submit(DORA, modal, {"reason": "Moved to the data team"})
    assert status == 200 and "errors" not in body
    # Revoke a bare membership: removed through the Slack API.
    await slack.click(DORA, slack.dms(DORA)[-1], "review_revoke", block("carol"))
    await slack.submit(DORA, slack.last_view(), {"reason": "Not a DBA any more"})
    await slack.drain()

    items = await _items(slack, campaign)
    assert items["alice", "staging-db-read"].outcome == "revoked"
    assert items["carol", "staging-db-read"].outcome == "revoked"
    request_id = items["alice", "staging-db-read"].access.request_id
    assert request_id is not None
    request = await slack.components.clearance.get(request_id)
    assert request.status is Status.REVOKED
    assert request.end_reason == f"access review {campaign.id}: Moved to the data team"
    revoked_dm = [m for m in slack.dms("U0ALICE") if "was revoked" in _text(m)]
    assert revoked_dm and "Moved to the data team" in _text(revoked_dm[-1])
    group = slack.fake.usergroups["S0STAGINGRO"]["users"]
    assert "U0ALICE" not in group and "U0CAROL" not in group and "U0ERIN" in group
    assert "U0CAROL" in slack.fake.usergroups["S0DBADMIN"]["users"]  # kept

    # Keep all remaining: Erin's, the last one. The campaign closes; the admins hear.
    card = slack.dms(DORA)[-1]
    assert "(1)" in json.dumps(card["blocks"]) and has_action(card["blocks"], "review_keep_all")
    await slack.click(DORA, card, "review_keep_all")
    await slack.drain()
    assert (await slack.components.reviews.get(campaign.id)).status == "closed"
    assert (await _items(slack, campaign))["erin", "staging-db-read"].outcome == "kept"
    for user in (DORA, DAN):  # every copy says it is over, with no buttons left
        [card] = _review_cards(slack, user)
        assert "This review is closed" in _text(card)
        assert not has_action(card["blocks"], "review_keep")
    [summary] = [_text(m) for m in slack.fake.messages_in("C0ADMINS") if "is *closed*" in _text(m)]
    assert f"quarterly-db* ({campaign.id}) is *closed*" in summary
    assert "5 items: 5 decided by a reviewer, 3 kept, 2 revoked, 0 defaulted" in summary
    assert "<@U0DORA> — decided 5 (kept 3, revoked 2)" in summary
    # Dan decided nothing, but left nothing to the due time either: Dora did it all.
    assert "<@U0DAN> — decided 0 (kept 0, revoked 0)" in summary
    assert "No reviewer left items to the due time" in summary


async def test_someone_elses_click_a_double_click_and_a_closed_review_change_nothing(
    slack: SlackWorld,
) -> None:
    campaign = await _campaign(slack)
    items = await _items(slack, campaign)
    bob = items["bob", "staging-db-read"]
    card = _review_cards(slack, DORA)[0]
    before = await _decisions(slack)

    # Erin is no reviewer: her click on Dora's card is refused to her alone.
    await slack.click("U0ERIN", card, "review_keep", f"review_item_{bob.index}")
    assert "You are not a reviewer of this item" in json.dumps(slack.fake.responses[-1])
    # Bob forges a click on his own access: refused as well.
    await slack.click_value("U0BOB", "review_keep", f"{campaign.id}:{bob.index}")
    assert "cannot review your own access" in json.dumps(slack.fake.responses[-1])
    assert await _decisions(slack) == before
    assert (await _items(slack, campaign))["bob", "staging-db-read"].undecided

    # Dora double-clicks (and Slack retries): one decision; the second is told it is done.
    block = f"review_item_{bob.index}"
    await asyncio.gather(
        slack.click(DORA, card, "review_keep", block),
        slack.click(DORA, card, "review_keep", block, headers={"X-Slack-Retry-Num": "1"}),
    )
    await slack.drain()
    assert await _decisions(slack) == before + 1
    assert "already decided by dora@example.com" in json.dumps(slack.fake.responses[-1])

    # Dan finishes the rest: the review closes, his card has no buttons left, and a click
    # on a closed review is refused (saying who decided the item) and changes nothing.
    for item in items.values():
        if item.index == bob.index:
            continue
        await slack.components.reviews.decide(
            campaign.id, item.index, "dan@example.com", "keep", "still needed"
        )
    await slack.drain()
    assert (await slack.components.reviews.get(campaign.id)).status == "closed"
    assert not has_action(_review_cards(slack, DAN)[0]["blocks"], "review_revoke")
    decided = await _decisions(slack)
    await slack.click_value(DAN, "review_revoke", f"{campaign.id}:{bob.index}")
    assert "already decided by dora@example.com" in json.dumps(slack.fake.responses[-1])
    assert await _decisions(slack) == decided
    assert (await _items(slack, campaign))["bob", "staging-db-read"].outcome == "kept"


async def test_a_revoke_without_a_reason_is_refused_in_the_modal(slack: SlackWorld) -> None:
    campaign = await _campaign(slack)
    items = await _items(slack, campaign)
    carol = items["carol", "staging-db-read"]
    await slack.click(
        DORA, _review_cards(slack, DORA)[0], "review_revoke", f"review_item_{carol.index}"
    )
    status, body = await slack.submit(DORA, slack.last_view(), {"reason": "  "})
    assert status == 200
    reply = json.loads(body)
    assert reply["response_action"] == "errors"
    assert "Please give a reason for revoking this access" in reply["errors"]["reason"]
    assert (await _items(slack, campaign))["carol", "staging-db-read"].undecided


async def test_app_home_shows_what_waits_for_review(slack: SlackWorld) -> None:
    campaign = await _campaign(slack)
    await slack.event({"type": "app_home_opened", "user": DORA, "tab": "home", "channel": "D0D"})
    home = json.dumps(slack.fake.home[DORA])
    assert "To review" in home and campaign.id in home and "*5* items wait for you" in home
    await slack.event(
        {"type": "app_home_opened", "user": "U0ERIN", "tab": "home", "channel": "D0E"}
    )
    assert "No access review waits for you" in json.dumps(slack.fake.home["U0ERIN"])


async def test_break_glass_is_reviewed_by_the_owners_and_not_justified_alerts_the_admins(
    slack: SlackWorld,
) -> None:
    draft = RequestDraft(
        requester="alice@example.com",
        resource_id="prod-db-admin",
        justification=JUSTIFICATION,
        ticket="INC-77",
        break_glass=True,
    )
    request = await slack.components.clearance.submit(draft)
    await slack.drain()
    campaign = await slack.components.reviews.store.campaign_for_request(request.id)
    assert campaign is not None and campaign.kind == "break_glass"

    def cards(user: str) -> list[dict[str, Any]]:
        return [m for m in slack.dms(user) if "emergency access justified" in _text(m)]

    # The owners (the DBAs) are asked, never the one who used it.
    [dora_card], [_] = cards(DORA), cards(DAN)
    assert cards("U0ALICE") == []
    for expected in ("<@U0ALICE> took *break-glass* access", "INC-77", JUSTIFICATION):
        assert expected in _text(dora_card), expected

    await slack.click(DORA, dora_card, "review_revoke")
    modal = slack.last_view()
    assert modal["submit"]["text"] == "Not justified"
    status, body = await slack.submit(DORA, modal, {"reason": "A read replica would do"})
    assert status == 200 and "errors" not in body
    await slack.drain()

    posts = [_text(m) for m in slack.fake.messages_in("C0ADMINS")]
    [alert] = [p for p in posts if "Break-glass access not justified" in p]
    assert "<@U0DORA> judged the *break-glass* access of <@U0ALICE>" in alert
    assert "A read replica would do" in alert and request.id in alert
    # It removes nothing (the access ends at its time); both cards say how it was judged.
    assert (await slack.components.clearance.get(request.id)).status is Status.ACTIVE
    for card in (*cards(DORA), *cards(DAN)):
        assert "*Not justified* by <@U0DORA>" in _text(card)
        assert not has_action(card["blocks"], "review_revoke")
    # Dan's click from the card as it was (a stale copy) is refused: it was decided.
    await slack.click_value(DAN, "review_keep", f"{campaign.id}:0")
    assert "already decided by dora@example.com" in json.dumps(slack.fake.responses[-1])


async def test_half_time_reminds_who_still_has_items(slack: SlackWorld) -> None:
    campaign = await _campaign(slack)
    items = await _items(slack, campaign)
    for item in items.values():  # Dora decides everything but Bob's
        if item.access.principal != "bob@example.com":
            await slack.components.reviews.decide(
                campaign.id, item.index, "dora@example.com", "keep", "still needed"
            )
    slack.clock.set(campaign.started_at + (campaign.due_at - campaign.started_at) / 2)
    await slack.drain()
    for user in (DORA, DAN):
        first, again = _review_cards(slack, user)
        assert "*Reminder*: 1 of your items still wait" in _text(again)
        assert "Reminder" not in _text(first)  # refreshed, as it was sent
