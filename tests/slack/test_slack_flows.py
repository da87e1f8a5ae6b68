"""End to end through ``/slack/events``: signed requests in, Web API calls out, real storage."""

from __future__ import annotations

import asyncio
import json
import time

from sqlalchemy import func, select

from engine.access_request import Status
from storage.tables import AuditRow, DecisionRow, OutboxRow, RequestRow
from tests.fakes.slack_driver import has_action
from tests.slack.conftest import SlackWorld

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"


async def _only_request(world: SlackWorld) -> str:
    found = await world.components.store.find()
    assert len(found) == 1, found
    return found[0].id


async def _count(world: SlackWorld, model: type, *where: object) -> int:
    async with world.components.database.transaction() as session:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)  # type: ignore[arg-type]
        return int((await session.execute(query)).scalar_one())


def _text(message: dict) -> str:
    return json.dumps(message["blocks"]) + (message.get("text") or "")


async def test_three_stage_approval_to_grant(slack: SlackWorld) -> None:
    status, body = await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-42")
    assert status == 200 and "errors" not in body
    await slack.drain()
    rid = await _only_request(slack)

    # The requester hears what they asked for, who decides now, and can cancel. Bob is known
    # to Slack, so he is named by a mention (which Slack renders as his current name).
    confirmation = slack.card_for("U0ALICE", "cancel")
    assert "<@U0BOB>" in _text(confirmation)
    # Stage 1 only: the manager is asked; the owners and admins are not asked yet.
    assert has_action(slack.card_for("U0BOB")["blocks"], "approve")
    assert slack.dms("U0DORA") == [] and slack.dms("U0SAM") == []

    await slack.click("U0BOB", slack.card_for("U0BOB"), "approve")
    await slack.drain()
    bob_card = slack.dms("U0BOB")[-1]
    assert not has_action(bob_card["blocks"], "approve") and bob_card["updates"] >= 1
    dora_card = slack.card_for("U0DORA")
    slack.card_for("U0DAN")
    assert slack.dms("U0SAM") == []

    await slack.click("U0DORA", dora_card, "approve")
    await slack.drain()
    dan_card = slack.dms("U0DAN")[-1]
    assert not has_action(dan_card["blocks"], "approve"), "stale card left with buttons"
    await slack.click("U0SARA", slack.card_for("U0SARA"), "approve")
    await slack.drain()

    request = await slack.components.clearance.get(rid)
    assert request.status is Status.ACTIVE
    assert request.expires_at == request.granted_at + request.duration
    # The grant landed in the Slack user group and kept the member who was already there.
    assert slack.fake.usergroups["S0DBADMIN"]["users"] == ["U0CAROL", "U0ALICE"]
    assert any("granted" in _text(m).lower() for m in slack.dms("U0ALICE"))
    assert slack.fake.messages_in("C0ADMINS"), "the admin feed got nothing"
    # Every copy of every approval card now shows the outcome, with no buttons left.
    for uid in ("U0BOB", "U0DORA", "U0DAN", "U0SAM", "U0SARA"):
        for message in slack.dms(uid):
            assert not has_action(message["blocks"], "approve")


async def test_denial_at_stage_two_tells_everyone(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-7")
    await slack.drain()
    await slack.click("U0BOB", slack.card_for("U0BOB"), "approve")
    await slack.drain()
    await slack.click("U0DORA", slack.card_for("U0DORA"), "deny")
    view = slack.last_view()
    assert view["callback_id"] == "deny_form"
    status, body = await slack.submit("U0DORA", view, {"reason": "Use the read replica"})
    assert status == 200 and "errors" not in body
    await slack.drain()
    request = await slack.components.clearance.get(await _only_request(slack))
    assert request.status is Status.DENIED
    assert any("Use the read replica" in _text(m) for m in slack.dms("U0ALICE"))
    assert not has_action(slack.dms("U0DAN")[-1]["blocks"], "approve")
    assert slack.dms("U0SAM") == []  # stage 3 never started
    assert slack.fake.usergroups["S0DBADMIN"]["users"] == ["U0CAROL"]


async def test_deny_without_reason_is_refused_inline(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-7")
    await slack.drain()
    await slack.click("U0BOB", slack.card_for("U0BOB"), "deny")
    status, body = await slack.submit("U0BOB", slack.last_view(), {"reason": "  "})
    assert status == 200
    assert json.loads(body)["response_action"] == "errors"
    assert "reason" in json.loads(body)["errors"]
    assert (
        await slack.components.clearance.get(await _only_request(slack))
    ).status is Status.PENDING


async def test_self_approval_is_refused_even_with_a_forged_button(slack: SlackWorld) -> None:
    await slack.request("U0ERIN", "ci-admin", "Rotate the CI runners' credentials")
    await slack.drain()
    rid = await _only_request(slack)
    # Erin is in group:platform but, as the requester, is never asked.
    assert all(not has_action(m["blocks"], "approve") for m in slack.dms("U0ERIN"))
    await slack.click_value("U0ERIN", "approve", f"{rid}:0")
    await slack.drain()
    assert "own request" in json.dumps(slack.fake.responses[-1])
    assert await _count(slack, DecisionRow) == 0


async def test_stranger_clicking_someone_elses_card_changes_nothing(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-9")
    await slack.drain()
    audit_before = await _count(slack, AuditRow)
    # Dan clicks the Approve button of Bob's card (stage 1 is Bob's alone).
    await slack.click("U0DAN", slack.card_for("U0BOB"), "approve")
    await slack.drain()
    refusal = json.dumps(slack.fake.responses[-1])
    assert "You cannot decide this request." in refusal and "bob@example.com" not in refusal
    request = await slack.components.clearance.get(await _only_request(slack))
    assert request.stage is not None and request.stage.index == 0
    assert await _count(slack, DecisionRow) == 0
    assert await _count(slack, AuditRow) == audit_before


async def test_two_approvers_of_one_stage_clicking_at_once(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-11")
    await slack.drain()
    await slack.click("U0BOB", slack.card_for("U0BOB"), "approve")
    await slack.drain()
    dora, dan = slack.card_for("U0DORA"), slack.card_for("U0DAN")
    await asyncio.gather(
        slack.click("U0DORA", dora, "approve"),
        slack.click("U0DAN", dan, "approve"),
    )
    await slack.drain()
    assert await _count(slack, DecisionRow, DecisionRow.stage == 1) == 1
    # Stage 3 was started once: each admin got exactly one card.
    assert len([m for m in slack.dms("U0SAM") if m.get("text")]) == 1
    assert len(slack.dms("U0SARA")) == 1


async def test_double_click_and_retry_give_one_transition(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-12")
    await slack.drain()
    card = slack.card_for("U0BOB")
    await asyncio.gather(
        slack.click("U0BOB", card, "approve"),
        slack.click("U0BOB", card, "approve", headers={"X-Slack-Retry-Num": "1"}),
    )
    await slack.drain()
    assert await _count(slack, DecisionRow) == 1
    assert len(slack.dms("U0DORA")) == 1 and len(slack.dms("U0DAN")) == 1


async def test_forged_replayed_and_stale_requests_are_refused(slack: SlackWorld) -> None:
    status, _ = await slack.command("U0ALICE", "prod-db-admin", secret="wrong-secret")
    assert status == 401
    status, _ = await slack.command("U0ALICE", "prod-db-admin", timestamp=int(time.time()) - 600)
    assert status == 401
    assert slack.fake.called("views.open") == []
    assert await _count(slack, RequestRow) == 0


async def test_form_errors_appear_on_the_field_and_write_nothing(slack: SlackWorld) -> None:
    status, body = await slack.request("U0ALICE", "prod-db-admin", "too short", ticket="nope")
    assert status == 200
    reply = json.loads(body)
    assert reply["response_action"] == "errors"
    assert set(reply["errors"]) == {"justification", "ticket"}
    assert await _count(slack, RequestRow) == 0
    assert await _count(slack, OutboxRow) == 0


async def test_choosing_a_resource_updates_the_form(slack: SlackWorld) -> None:
    await slack.command("U0ALICE")
    view = slack.last_view()
    assert "ticket" not in {b.get("block_id") for b in view["blocks"]}
    await slack.choose("U0ALICE", view, "resource", "prod-db-admin")
    updated = slack.fake.called("views.update")[-1]["view"]
    assert {"duration", "justification", "ticket"} <= {b.get("block_id") for b in updated["blocks"]}


async def test_justification_cannot_mention_or_link(slack: SlackWorld) -> None:
    evil = "Need it now <!channel> <@U0SAM> <https://evil.example|click here> & more"
    await slack.request("U0ALICE", "prod-db-admin", evil, ticket="INC-13")
    await slack.drain()
    card = _text(slack.card_for("U0BOB"))
    assert "<!channel>" not in card and "<@U0SAM>" not in card and "<https://evil" not in card
    assert "&lt;!channel&gt;" in card
    # The text is stored exactly as typed: escaping is for display only.
    request = await slack.components.clearance.get(await _only_request(slack))
    assert request.justification == evil


async def test_cancel_updates_every_card(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-14")
    await slack.drain()
    await slack.click("U0ALICE", slack.card_for("U0ALICE", "cancel"), "cancel")
    await slack.drain()
    assert (
        await slack.components.clearance.get(await _only_request(slack))
    ).status is Status.CANCELLED
    assert not has_action(slack.dms("U0BOB")[-1]["blocks"], "approve")
    assert not has_action(slack.dms("U0ALICE")[0]["blocks"], "cancel")


async def test_app_home_shows_what_waits_for_me(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-15")
    await slack.drain()
    await slack.event(
        {"type": "app_home_opened", "user": "U0BOB", "tab": "home", "channel": "D0BOB"}
    )
    home = slack.fake.home["U0BOB"]
    assert home["type"] == "home" and has_action(home["blocks"], "approve")
    await slack.event(
        {"type": "app_home_opened", "user": "U0ALICE", "tab": "home", "channel": "D0ALICE"}
    )
    assert "prod" in json.dumps(slack.fake.home["U0ALICE"]).lower()


async def test_admin_commands_only_for_admins_in_the_admin_channel(slack: SlackWorld) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-16")
    await slack.drain()
    rid = await _only_request(slack)

    await slack.mention("U0ALICE", "C0ADMINS", f"revoke {rid} because")
    assert "not a Clearance admin" in _text(slack.fake.messages_in("C0ADMINS")[-1])
    await slack.mention("U0SAM", "C0GENERAL", "pending")
    assert "only in the admin channel" in _text(slack.fake.messages_in("C0GENERAL")[-1])
    assert (await slack.components.clearance.get(rid)).status is Status.PENDING

    await slack.mention("U0SAM", "C0ADMINS", "pending")
    reply = slack.fake.messages_in("C0ADMINS")[-1]
    assert rid in _text(reply) and reply["thread_ts"]
    await slack.mention("U0SAM", "C0ADMINS", f"revoke {rid.lower()} no longer needed")
    await slack.drain()
    assert (await slack.components.clearance.get(rid)).status is Status.REVOKED
    assert await _count(slack, AuditRow, AuditRow.action == "admin_command") == 4


async def test_admin_event_retries_run_once(slack: SlackWorld) -> None:
    for retry in ("", "1", "2"):
        await slack.event(
            {
                "type": "app_mention",
                "user": "U0SAM",
                "text": "<@UBOT> policy",
                "ts": "1.1",
                "channel": "C0ADMINS",
                "event_ts": "1.1",
            },
            event_id="EvSAME",
            headers={"X-Slack-Retry-Num": retry} if retry else None,
        )
    assert len(slack.fake.messages_in("C0ADMINS")) == 1


async def test_reload_refuses_a_broken_policy_and_keeps_the_old(slack: SlackWorld) -> None:
    before = slack.components.policies.current.version
    slack.policy_path.write_text(slack.policy_path.read_text().replace("max: 4h", "max: forever"))
    await slack.mention("U0SAM", "C0ADMINS", "reload")
    reply = _text(slack.fake.messages_in("C0ADMINS")[-1])
    assert "Reload refused" in reply and "policy.yaml:" in reply and "forever" in reply
    assert slack.components.policies.current.version == before
    # A request still works under the old policy.
    status, body = await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-17")
    assert status == 200 and "errors" not in body


async def test_unknown_slack_user_gets_a_clear_answer(slack: SlackWorld) -> None:
    slack.fake.add_user("U0GHOST", "ghost@elsewhere.example")
    status, body = await slack.command("U0GHOST", "prod-db-admin")
    assert status == 200 and "does not know who you are" in body
    assert slack.fake.called("views.open") == []
