"""End to end through ``/api/messages``: Teams activities in, Bot Connector calls out, real
storage. The Teams twin of tests/slack/test_slack_flows.py, plus what only Teams has
(card refresh, stored conversations, installs)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from engine.access_request import Status
from message_templates import render_json
from storage.conversations import TeamsConversations
from storage.tables import AuditRow, DecisionRow, OutboxRow, RequestRow
from tests.fakes.teams_driver import (
    TeamsUser,
    actions,
    card_text,
    find_action,
    has_action,
    input_values,
    inputs,
    shown,
)
from tests.teams.conftest import ADMIN_CHANNEL, GENERAL, TeamsWorld

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
CARD = "application/vnd.microsoft.card.adaptive"
TEXT = "application/vnd.microsoft.activity.message"


async def _only_request(world: TeamsWorld) -> str:
    found = await world.components.store.find()
    assert len(found) == 1, found
    return found[0].id


async def _count(world: TeamsWorld, model: type, *where: object) -> int:
    async with world.components.database.transaction() as session:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)  # type: ignore[arg-type]
        return int((await session.execute(query)).scalar_one())


def _card(body: Any) -> dict[str, Any]:
    """The card an invoke answered with (it replaces the clicked one)."""
    assert isinstance(body, dict) and body["type"] == CARD, body
    assert body["statusCode"] == 200
    return body["value"]  # type: ignore[no-any-return]


def _said(body: Any) -> str:
    """The text an invoke answered with (the card stays as it was)."""
    assert isinstance(body, dict) and body["type"] == TEXT, body
    return str(body["value"])


def _replaced(message: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The message as the clicker now sees it, after an invoke answered with ``card``."""
    return {**message, "card": card}


async def test_three_stage_approval_to_grant(teams: TeamsWorld) -> None:
    await teams.install_all()
    status, body = await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-42")
    # The form is replaced by what it filed; the confirmation is a message of its own.
    assert status == 200 and "Waiting for approval" in shown(_card(body))
    await teams.drain()
    rid = await _only_request(teams)

    # The requester hears what they asked for, who decides now, and can cancel.
    confirmation = teams.card_for("alice", "cancel")
    assert "Bob Baker" in card_text(confirmation["card"])
    # Stage 1 only: the manager is asked; the owners and admins are not asked yet.
    bob_card = teams.card_for("bob")
    assert teams.dms("dora") == [] and teams.dms("sam") == []
    # Teams fetches each current approver's own view of the card.
    (bob_id,) = bob_card["card"]["refresh"]["userIds"]
    assert bob_id.endswith(str(teams.bob.aad))  # "8:orgid:<AAD id>", a Teams user MRI

    status, body = await teams.driver.execute(teams.bob, bob_card, "approve")
    assert status == 200 and not has_action(_card(body), "approve")
    await teams.drain()
    latest = teams.dms("bob")[-1]
    assert not has_action(latest["card"], "approve") and latest["updates"] >= 1
    dora_card = teams.card_for("dora")
    teams.card_for("dan")
    assert teams.dms("sam") == []

    await teams.driver.execute(teams.dora, dora_card, "approve")
    await teams.drain()
    assert not has_action(teams.dms("dan")[-1]["card"], "approve"), "stale card left with buttons"
    await teams.driver.execute(teams.sara, teams.card_for("sara"), "approve")
    await teams.drain()

    request = await teams.components.clearance.get(rid)
    assert request.status is Status.ACTIVE
    assert request.granted_at is not None and request.expires_at is not None
    assert request.expires_at == request.granted_at + request.duration
    assert ("alice@example.com", "S0DBADMIN") in teams.grants.memberships
    assert any("granted" in (m["summary"] or "").lower() for m in teams.dms("alice"))
    assert teams.fake.messages_in(ADMIN_CHANNEL), "the admin feed got nothing"
    # Every copy of every approval card now shows the outcome, with no buttons left.
    for name in ("bob", "dora", "dan", "sam", "sara"):
        for message in teams.dms(name):
            assert not has_action(message["card"], "approve")
            assert "refresh" not in (message["card"] or {}), "a decided card still refreshes"
    # Alice's confirmation followed the request to its end.
    assert not has_action(teams.dms("alice")[1]["card"], "cancel")


async def test_denial_at_stage_two_tells_everyone(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-7")
    await teams.drain()
    await teams.driver.execute(teams.bob, teams.card_for("bob"), "approve")
    await teams.drain()
    # Deny sits in a ShowCard with the reason input; its Execute sends the reason along.
    dora_card = teams.card_for("dora")
    assert find_action(dora_card["card"], "deny")["data"] == {
        "request_id": await _only_request(teams),
        "stage": 1,
    }
    status, body = await teams.driver.execute(
        teams.dora, dora_card, "deny", {"reason": "Use the read replica"}
    )
    assert status == 200 and "Use the read replica" in card_text(_card(body))
    await teams.drain()
    request = await teams.components.clearance.get(await _only_request(teams))
    assert request.status is Status.DENIED and request.end_reason == "Use the read replica"
    assert any("Use the read replica" in card_text(m["card"]) for m in teams.dms("alice"))
    assert not has_action(teams.dms("dan")[-1]["card"], "approve")
    assert teams.dms("sam") == []  # stage 3 never started
    assert teams.grants.memberships == set()


async def test_deny_without_reason_asks_for_one(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-7")
    await teams.drain()
    bob_card = teams.card_for("bob")
    status, body = await teams.driver.execute(teams.bob, bob_card, "deny", {"reason": "  "})
    assert status == 200
    deny_form = _card(body)  # the reason is asked for again, with the error under the field
    assert inputs(deny_form)["reason"]["type"] == "Input.Text"
    assert "Please give a reason" in card_text(deny_form)
    rid = await _only_request(teams)
    assert (await teams.components.clearance.get(rid)).status is Status.PENDING
    assert await _count(teams, DecisionRow) == 0

    status, body = await teams.driver.execute(
        teams.bob, _replaced(bob_card, deny_form), "deny", {"reason": "Not during the freeze"}
    )
    assert status == 200 and not has_action(_card(body), "approve")
    assert (await teams.components.clearance.get(rid)).status is Status.DENIED


async def test_self_approval_is_refused_even_with_a_forged_action(teams: TeamsWorld) -> None:
    await teams.install_all()
    # Erin has no teams_id: Clearance knows her by the email Teams' roster gives.
    status, body = await teams.request("erin", "ci-admin", "Rotate the CI runners' credentials")
    assert status == 200 and _card(body)
    await teams.drain()
    rid = await _only_request(teams)
    # Erin is in group:platform but, as the requester, is never asked.
    assert all(not has_action(m["card"], "approve") for m in teams.dms("erin"))
    forged = teams.driver.invoke_activity(teams.erin, "approve", {"request_id": rid, "stage": 0})
    status, body = await teams.driver.post(forged)
    assert status == 200 and "own request" in _said(body)
    await teams.drain()
    assert await _count(teams, DecisionRow) == 0


async def test_strangers_execute_on_someone_elses_card_changes_nothing(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-9")
    await teams.drain()
    audit_before = await _count(teams, AuditRow)
    # Dan sends the Approve of Bob's card (stage 1 is Bob's alone).
    forged = teams.driver.press(teams.dan, teams.card_for("bob"), "approve")
    status, body = await teams.driver.post(forged)
    # Told only that they cannot decide it: not who can, nor anything of the request.
    said = _said(body)
    assert status == 200 and "You cannot decide this request." in said
    assert "bob@example.com" not in said
    # A stranger's refresh shows them nothing of the request either.
    status, body = await teams.driver.refresh(teams.erin, teams.card_for("bob"))
    assert status == 200 and JUSTIFICATION not in json.dumps(body)
    request = await teams.components.clearance.get(await _only_request(teams))
    assert request.stage is not None and request.stage.index == 0
    assert await _count(teams, DecisionRow) == 0
    assert await _count(teams, AuditRow) == audit_before


async def test_two_approvers_of_one_stage_clicking_at_once(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-11")
    await teams.drain()
    await teams.driver.execute(teams.bob, teams.card_for("bob"), "approve")
    await teams.drain()
    dora, dan = teams.card_for("dora"), teams.card_for("dan")
    results = await asyncio.gather(
        teams.driver.execute(teams.dora, dora, "approve"),
        teams.driver.execute(teams.dan, dan, "approve"),
    )
    assert [status for status, _ in results] == [200, 200]
    await teams.drain()
    assert await _count(teams, DecisionRow, DecisionRow.stage == 1) == 1
    # Stage 3 was started once: each admin got exactly one card.
    assert len(teams.dms("sam")) == 1 and len(teams.dms("sara")) == 1


async def test_double_click_and_retry_give_one_transition(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-12")
    await teams.drain()
    click = teams.driver.press(teams.bob, teams.card_for("bob"), "approve")
    results = await asyncio.gather(teams.driver.post(click), teams.driver.post(click))
    results.append(await teams.driver.post(click))  # the channel redelivers it later
    for status, body in results:
        # Every answer is the card as it now is: decided, no buttons, never a 500.
        assert status == 200 and not has_action(_card(body), "approve")
    await teams.drain()
    assert await _count(teams, DecisionRow) == 1
    assert len(teams.dms("dora")) == 1 and len(teams.dms("dan")) == 1


async def test_form_errors_appear_on_the_field_and_write_nothing(teams: TeamsWorld) -> None:
    await teams.install_all("alice")
    status, body = await teams.request("alice", "prod-db-admin", "too short", ticket="nope")
    assert status == 200
    form = _card(body)  # the form again, the typed values kept, each error under its field
    text = card_text(form)
    assert "at least 15 characters" in text and "nope" in text
    assert input_values(form)["justification"] == "too short"
    assert input_values(form)["ticket"] == "nope"
    assert has_action(form, "submit_request")
    # Sending the same form again (nothing fixed) is refused the same way, not swallowed.
    again = teams.card_for("alice", "submit_request")
    status, body = await teams.driver.execute(
        teams.alice, again, "submit_request", input_values(form)
    )
    assert status == 200 and "at least 15 characters" in card_text(_card(body))
    assert await _count(teams, RequestRow) == 0
    assert await _count(teams, OutboxRow) == 0


async def test_choosing_a_resource_updates_the_form(teams: TeamsWorld) -> None:
    await teams.install_all("alice")
    await teams.driver.say(teams.alice, "request access")
    form = teams.card_for("alice", "open_form")
    assert set(input_values(form["card"])) <= {"resource"}
    assert not has_action(form["card"], "submit_request")
    # Adaptive Cards have no change event: "Next" asks for the chosen resource's form.
    status, body = await teams.driver.execute(
        teams.alice, form, "open_form", {"resource": "prod-db-admin"}
    )
    chosen = _card(body)
    assert {"duration", "justification", "ticket"} <= set(card_text(chosen).split('"'))
    assert find_action(chosen, "submit_request")["data"] == {"form_resource": "prod-db-admin"}
    # Choosing another resource in that form and pressing Request shows its form instead.
    status, body = await teams.driver.execute(
        teams.alice,
        _replaced(form, chosen),
        "submit_request",
        {"resource": "staging-db-read", "justification": "Checking yesterday's import"},
    )
    assert status == 200
    staging = _card(body)
    assert find_action(staging, "submit_request")["data"] == {"form_resource": "staging-db-read"}
    assert input_values(staging)["justification"] == "Checking yesterday's import"
    assert await _count(teams, RequestRow) == 0


async def test_a_form_submitted_twice_makes_one_request(teams: TeamsWorld) -> None:
    await teams.install_all("alice")
    await teams.driver.say(teams.alice, "request access staging-db-read")
    form = teams.card_for("alice", "submit_request")
    inputs = {"resource": "staging-db-read", "justification": "Checking yesterday's import"}
    click = teams.driver.press(teams.alice, form, "submit_request", inputs)
    first = await teams.driver.post(click)
    again = await teams.driver.post(click)
    assert first == again and "staging" in shown(_card(first[1])).lower()
    assert await _count(teams, RequestRow) == 1


async def test_a_submitted_form_is_replaced_by_what_it_filed(teams: TeamsWorld) -> None:
    await teams.install_all("alice")
    await teams.driver.say(teams.alice, "request access prod-db-admin")
    form = teams.card_for("alice", "submit_request")
    # A refused submission first: the form comes back with the error under the field.
    status, body = await teams.driver.execute(
        teams.alice, form, "submit_request", {"justification": "short"}
    )
    assert "at least" in card_text(_card(body)) and has_action(_card(body), "submit_request")
    typed = {"resource": "prod-db-admin", "justification": JUSTIFICATION, "ticket": "INC-3"}
    status, body = await teams.driver.execute(teams.alice, form, "submit_request", typed)
    assert status == 200
    rid = await _only_request(teams)
    # The form is replaced in place: what it filed, no inputs, no button, no old error.
    submitted = _card(body)
    assert rid in shown(submitted) and "Production database" in shown(submitted)
    assert [a for a in actions(submitted) if a["type"] != "Action.OpenUrl"] == []
    assert inputs(submitted) == {} and "refresh" not in submitted
    assert "at least" not in card_text(submitted)
    # The old card's data sent again, as it was or edited, files nothing new: the answer
    # is the same submitted card.
    edited = {**typed, "justification": "Another reason, another request", "ticket": "INC-4"}
    for values in (typed, edited):
        status, body = await teams.driver.execute(teams.alice, form, "submit_request", values)
        assert status == 200 and _card(body) == submitted
    assert await _count(teams, RequestRow) == 1
    await teams.drain()
    assert len([m for m in teams.dms("alice") if has_action(m["card"], "cancel")]) == 1


async def test_user_text_is_inert_on_cards(teams: TeamsWorld) -> None:
    await teams.install_all()
    evil = "Need it <at>Sam Singh</at> now [click here](https://evil.example) **urgent** & more"
    await teams.request("alice", "prod-db-admin", evil, ticket="INC-13")
    await teams.drain()
    text = card_text(teams.card_for("bob")["card"])
    assert "<at>" not in text and "[click here](https" not in text and "**urgent**" not in text
    # Stored exactly as typed: escaping is for display only.
    request = await teams.components.clearance.get(await _only_request(teams))
    assert request.justification == evil


async def test_cancel_updates_every_card(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-14")
    await teams.drain()
    confirmation = dict(teams.card_for("alice", "cancel"))  # as first shown
    status, body = await teams.driver.execute(teams.alice, confirmation, "cancel")
    assert status == 200 and not has_action(_card(body), "cancel")
    await teams.drain()
    request = await teams.components.clearance.get(await _only_request(teams))
    assert request.status is Status.CANCELLED
    assert not has_action(teams.dms("bob")[-1]["card"], "approve")
    assert not has_action(teams.fake.messages_in(confirmation["conversation"])[1]["card"], "cancel")
    # Cancelling again (a stale card) answers with the card as it is, nothing changes.
    status, body = await teams.driver.execute(teams.alice, confirmation, "cancel")
    assert status == 200 and not has_action(_card(body), "cancel")


async def test_status_shows_what_waits_for_me(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-15")
    await teams.drain()
    rid = await _only_request(teams)
    await teams.driver.say(teams.bob, "status")
    home = teams.last_card("bob")
    assert (
        home["reply_to"] and has_action(home["card"], "approve") and rid in card_text(home["card"])
    )
    await teams.driver.say(teams.alice, "my requests")
    assert "Production database" in card_text(teams.last_card("alice")["card"])
    # Deny from the home card asks for the reason (no error yet: none was typed).
    status, body = await teams.driver.execute(teams.bob, home, "deny")
    assert "Please give a reason" not in card_text(_card(body)) and rid in card_text(_card(body))
    # Approve from the home card: decided, and the home card is shown again.
    status, body = await teams.driver.execute(teams.bob, home, "approve")
    assert status == 200
    again = _card(body)
    assert "Waiting for your decision" in card_text(again) and not has_action(again, "approve")
    assert await _count(teams, DecisionRow) == 1


async def test_admin_commands_only_for_admins_in_the_admin_channel(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-16")
    await teams.drain()
    rid = await _only_request(teams)

    await teams.driver.mention(teams.alice, ADMIN_CHANNEL, f"revoke {rid} because")
    assert "not a Clearance admin" in card_text(teams.fake.messages_in(ADMIN_CHANNEL)[-1]["card"])
    await teams.driver.mention(teams.sam, GENERAL, "pending")
    assert "only in the admin channel" in card_text(teams.fake.messages_in(GENERAL)[-1]["card"])
    assert (await teams.components.clearance.get(rid)).status is Status.PENDING

    await teams.driver.mention(teams.sam, ADMIN_CHANNEL, "pending")
    reply = teams.fake.messages_in(ADMIN_CHANNEL)[-1]
    assert rid in shown(reply["card"]) and reply["reply_to"], "not a threaded reply"
    await teams.driver.mention(teams.sam, ADMIN_CHANNEL, f"revoke {rid.lower()} no longer needed")
    await teams.drain()
    assert (await teams.components.clearance.get(rid)).status is Status.REVOKED
    assert await _count(teams, AuditRow, AuditRow.action == "admin_command") == 4


async def test_a_redelivered_admin_command_runs_once(teams: TeamsWorld) -> None:
    await teams.install_all("sam")
    activity = teams.driver.mention_activity(teams.sam, ADMIN_CHANNEL, "policy")
    for _ in range(3):
        status, _ = await teams.driver.post(activity)
        assert status == 200
    assert len(teams.fake.messages_in(ADMIN_CHANNEL)) == 1


async def test_reload_refuses_a_broken_policy_and_keeps_the_old(teams: TeamsWorld) -> None:
    await teams.install_all()
    before = teams.components.policies.current.version
    teams.policy_path.write_text(teams.policy_path.read_text().replace("max: 4h", "max: forever"))
    await teams.driver.mention(teams.sam, ADMIN_CHANNEL, "reload")
    reply = card_text(teams.fake.messages_in(ADMIN_CHANNEL)[-1]["card"])
    assert "Reload refused" in reply and "policy.yaml:" in reply and "forever" in reply
    assert teams.components.policies.current.version == before
    status, body = await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-17")
    assert status == 200 and not has_action(_card(body), "submit_request")  # filed


async def test_unknown_teams_user_gets_a_clear_answer(teams: TeamsWorld) -> None:
    ghost = TeamsUser("29:1ghost", "99999999-0000-4000-8000-000000000000", "Ghost")
    teams.fake.add_member(ghost.id, ghost.aad, "ghost@elsewhere.example", "Ghost")
    await teams.driver.install(ghost)
    status, _ = await teams.driver.say(ghost, "request access prod-db-admin")
    assert status == 200
    assert "does not know who you are" in card_text(teams.fake.messages_in(ghost.chat)[-1]["card"])
    forged = teams.driver.invoke_activity(ghost, "approve", {"request_id": "R-X", "stage": 0})
    status, body = await teams.driver.post(forged)
    assert status == 200 and "does not know who you are" in _said(body)
    assert await _count(teams, RequestRow) == 0


async def test_refresh_gives_each_approver_their_own_view(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-18")
    await teams.drain()
    card = teams.card_for("bob")
    status, body = await teams.driver.refresh(teams.bob, card)
    assert status == 200 and has_action(_card(body), "approve")
    status, body = await teams.driver.refresh(teams.alice, card)  # the requester: no buttons
    assert status == 200 and not has_action(_card(body), "approve")
    await teams.driver.execute(teams.bob, card, "approve")
    status, body = await teams.driver.refresh(teams.bob, card)
    assert status == 200 and not has_action(_card(body), "approve")


async def test_someone_without_the_bot_is_reported_to_the_admins(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.driver.uninstall(teams.bob)  # Bob removed the app: no way to reach him
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-19")
    await teams.drain()
    assert teams.dms("bob") == []
    alerts = [card_text(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL)]
    assert any("bob@example.com could not be reached" in a for a in alerts), alerts
    # Someone who blocked the bot since (403) is skipped and reported the same way.
    await teams.driver.install(teams.bob)
    teams.fake.blocked.add(teams.bob.chat)
    await teams.components.clearance.revoke(await _only_request(teams), "alice@example.com")
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-20")
    await teams.drain()
    alerts = [card_text(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL)]
    assert sum("bob@example.com could not be reached" in a for a in alerts) == 2


async def test_reminder_then_done_ends_access(teams: TeamsWorld) -> None:
    await teams.install_all()
    status, body = await teams.request("alice", "staging-db-read", "Checking yesterday's import")
    await teams.drain()
    rid = await _only_request(teams)
    granted = teams.card_for("alice", "done")
    assert "granted" in granted["summary"].lower()
    teams.clock.advance(timedelta(hours=3, minutes=1))  # 4h default: the 1h reminder is due
    await teams.drain()
    reminder = teams.card_for("alice", "extend")
    assert has_action(reminder["card"], "done")
    status, body = await teams.driver.execute(teams.alice, reminder, "done")
    assert status == 200 and "ended" in _said(body)
    await teams.drain()
    assert (await teams.components.clearance.get(rid)).status is Status.REVOKED
    assert ("alice@example.com", "S0STAGINGRO") not in teams.grants.memberships
    status, body = await teams.driver.execute(teams.alice, granted, "done")  # again: refused
    assert status == 200 and _said(body)


async def test_extend_without_self_service_opens_a_prefilled_request(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-21")
    await teams.drain()
    for name in ("bob", "dora", "sam"):
        await teams.driver.execute(teams.users[name], teams.card_for(name), "approve")
        await teams.drain()
    teams.clock.advance(timedelta(minutes=50))
    await teams.drain()
    reminder = teams.card_for("alice", "extend")
    status, body = await teams.driver.execute(teams.alice, reminder, "extend")
    assert status == 200 and "Production database" in _said(body)
    form = teams.last_card("alice")  # a new message: the reminder stays as it was
    assert find_action(form["card"], "submit_request")["data"] == {"form_resource": "prod-db-admin"}
    assert input_values(form["card"])["justification"].startswith("Extension of R-")


async def test_request_again_opens_the_form_for_the_same_resource(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-22")
    await teams.drain()
    await teams.driver.execute(teams.bob, teams.card_for("bob"), "deny", {"reason": "No."})
    await teams.drain()
    notice = teams.card_for("alice", "rerequest")
    status, body = await teams.driver.execute(teams.alice, notice, "rerequest")
    assert status == 200 and _said(body)
    form = teams.last_card("alice")
    assert find_action(form["card"], "submit_request")["data"] == {"form_resource": "prod-db-admin"}


async def test_extend_with_self_service_adds_time_at_once(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "staging-db-read", "Checking yesterday's import")
    await teams.drain()
    rid = await _only_request(teams)
    ends = (await teams.components.clearance.get(rid)).expires_at
    assert ends is not None
    teams.clock.advance(timedelta(hours=3, minutes=1))
    await teams.drain()
    status, body = await teams.driver.execute(
        teams.alice, teams.card_for("alice", "extend"), "extend"
    )
    assert status == 200 and "extended" in _said(body).lower()
    request = await teams.components.clearance.get(rid)
    assert request.expires_at == ends + timedelta(hours=4)
    await teams.drain()
    assert "extended" in teams.last_card("alice")["summary"].lower()


async def test_installs_are_remembered_and_removals_forgotten(teams: TeamsWorld) -> None:
    conversations = TeamsConversations(teams.components.database)
    await teams.driver.install(teams.bob)
    stored = await conversations.personal(teams.bob.aad)
    assert stored is not None and stored.conversation_id == teams.bob.chat
    assert stored.email == "bob@example.com"  # from the roster: found by email as well
    assert await conversations.personal(None, "bob@example.com") == stored
    await teams.driver.add_to_team(teams.sam, ADMIN_CHANNEL)
    team = await conversations.get(ADMIN_CHANNEL)
    assert team is not None and team.kind == "channel" and team.team_id == ADMIN_CHANNEL
    # The admin feed goes to the team's channel through that conversation.
    await teams.components.notifier.chats["teams"].post_admins(
        render_json("teams", "error", {"message": "hello admins"})
    )
    assert "hello admins" in shown(teams.fake.messages_in(ADMIN_CHANNEL)[-1]["card"])

    await teams.driver.uninstall(teams.bob)
    assert await conversations.personal(teams.bob.aad) is None
    removed = teams.driver.install_activity(teams.sam)
    removed.update(
        conversation={"id": ADMIN_CHANNEL, "conversationType": "channel", "isGroup": True},
        membersAdded=[],
        membersRemoved=[{"id": removed["recipient"]["id"]}],
    )
    status, _ = await teams.driver.post(removed)
    assert status == 200 and await conversations.get(ADMIN_CHANNEL) is None


async def test_a_waiting_stage_reminds_its_approvers_on_teams(teams: TeamsWorld) -> None:
    await teams.install_all()
    await teams.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-12")
    await teams.drain()
    rid = await _only_request(teams)
    request = await teams.components.clearance.get(rid)
    assert request.stage is not None and len(teams.dms("bob")) == 1
    teams.clock.set(request.stage.started_at + timedelta(hours=4))  # halfway to the 8h timeout
    await teams.drain()
    first, again = teams.dms("bob")
    assert "Reminder" in card_text(again["card"]) and "Reminder" not in card_text(first["card"])
    assert has_action(again["card"], "approve")
    posts = [card_text(m["card"]) for m in teams.fake.messages_in(ADMIN_CHANNEL) if "card" in m]
    assert any("Waiting for approval" in text and "Bob Baker" in text for text in posts)
    # Approving on the reminder decides the stage; every copy then shows the outcome.
    status, _ = await teams.driver.execute(teams.bob, again, "approve")
    assert status == 200
    await teams.drain()
    assert (await teams.components.clearance.get(rid)).stage.index == 1  # type: ignore[union-attr]
    for message in teams.dms("bob"):
        assert not has_action(message["card"], "approve")
