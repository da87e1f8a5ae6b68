"""``/api/messages`` under malformed activities and failing turns: a malformed activity is
400 and changes nothing, typed text that cannot be stored is refused with a clear answer,
and a turn that fails (a reply that cannot be sent) is one log line and an answer that
keeps Teams from redelivering it — never a 500."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage.tables import AuditRow, InboundEventRow, OutboxRow, RequestRow, TeamsConversationRow
from tests.fakes.teams_driver import card_text
from tests.teams.conftest import ADMIN_CHANNEL, TeamsWorld

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
TEXT = "application/vnd.microsoft.activity.message"


async def _state(world: TeamsWorld) -> tuple[int, ...]:
    counts = []
    async with world.components.database.transaction() as session:
        for model in (RequestRow, AuditRow, OutboxRow, TeamsConversationRow, InboundEventRow):
            query = select(func.count()).select_from(model)
            counts.append(int((await session.execute(query)).scalar_one()))
    return tuple(counts)


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


def _without(activity: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(activity)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


def _with(activity: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(activity)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _malformed(world: TeamsWorld) -> list[dict[str, Any]]:
    said = world.driver._base("message", world.alice, world.driver.personal(world.alice))
    said["text"] = "request access prod-db-admin"
    invoke = world.driver.invoke_activity(world.alice, "approve", {"request_id": "R-1"})
    install = world.driver.install_activity(world.alice)
    return [
        _without(said, "conversation"),
        _with(said, 123, "serviceUrl"),
        _with(said, "not a url", "serviceUrl"),
        _without(said, "serviceUrl"),
        _with(said, None, "conversation"),
        _with(said, {"conversationType": "personal"}, "conversation"),
        _with(said, 5, "conversation", "id"),
        # An id goes into the reply's URL and headers (found by the fuzz test).
        _with(said, " ", "conversation", "id"),
        # Not a kind Teams has (found by the fuzz test: it made a 1:1 message a command).
        _with(said, "R-1", "conversation", "conversationType"),
        _with(said, "alice", "from"),
        _with(said, {"name": "no id"}, "from"),
        _with(said, ["text"], "text"),
        _with(said, "a\ud800", "from", "id"),
        _with(said, "x\x00", "conversation", "id"),
        _with(said, "tenant", "channelData"),
        _with(said, {"tenant": "t"}, "channelData"),
        _with(said, "mention", "entities"),
        _with(said, 7, "type"),
        _without(said, "type"),
        _with(said, "not a time", "timestamp"),
        _with(install, ["28:bot"], "membersAdded"),
        _with(install, [{"name": "no id"}], "membersAdded"),
        _with(invoke, "approve", "value"),
        _with(invoke, {"action": "approve"}, "value"),
        _with(invoke, {"action": {"verb": 5, "type": "Action.Execute"}}, "value"),
        _with(invoke, "task/fetch", "name"),
        _with(invoke, None, "name"),
    ]


async def test_malformed_activities_are_400_and_change_nothing(
    teams: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await teams.install_all("alice")
    before = await _state(teams)
    calls = len(teams.fake.calls)
    for activity in _malformed(teams):
        status, body = await teams.driver.post(activity)
        assert status == 400, (activity, body)
    assert await _state(teams) == before
    assert len(teams.fake.calls) == calls
    _no_traceback(caplog)


async def test_a_body_that_is_not_an_activity_is_400(
    teams: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    assert teams.driver.session is not None
    for body in (b"{not json", b"[1]", b'"text"', b"\xff\xfe", b""):
        async with teams.driver.session.post(
            teams.driver.endpoint, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
    _no_traceback(caplog)


async def test_unstorable_typed_text_is_refused_with_a_clear_answer(
    teams: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await teams.install_all("alice", "sam")
    status, _ = await teams.driver.say(teams.alice, "request access prod-db-admin")
    assert status == 200
    form = teams.card_for("alice", "submit_request")
    before = await _state(teams)
    inputs = {"resource": "prod-db-admin", "justification": JUSTIFICATION + "\ud800"}
    status, body = await teams.driver.execute(teams.alice, form, "submit_request", inputs)
    assert status == 200 and body["type"] == TEXT and "cannot be stored" in body["value"]

    status, _ = await teams.driver.say(teams.alice, "status\x00")
    assert status == 200
    assert "cannot be stored" in card_text(teams.last_card("alice")["card"])
    status, _ = await teams.driver.mention(teams.sam, ADMIN_CHANNEL, "revoke R-1 gone \udfff")
    assert status == 200
    assert "cannot be stored" in card_text(teams.fake.messages_in(ADMIN_CHANNEL)[-1]["card"])
    after = await _state(teams)
    # No request, audit event or job (the admin channel is remembered, as any message's is).
    assert after[:3] == before[:3]
    _no_traceback(caplog)


async def test_a_reply_that_cannot_be_sent_is_logged_once_and_not_redelivered(
    teams: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await teams.install_all("alice")
    teams.fake.down = True
    status, _ = await teams.driver.say(teams.alice, "status")
    assert status == 200  # handled: a 5xx would make the channel send it again
    failed = [r for r in caplog.records if "Teams turn failed" in r.getMessage()]
    assert len(failed) == 1 and not failed[0].exc_info
    assert "\n" not in failed[0].getMessage()
    _no_traceback(caplog)


async def test_an_invoke_whose_turn_fails_answers_try_again(
    teams: TeamsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await teams.install_all("alice")
    await teams.driver.say(teams.alice, "request access prod-db-admin")
    form = teams.card_for("alice", "submit_request")
    # The database breaks between the form and its submission (a table is gone).
    async with teams.components.database.transaction() as session:
        await session.execute(text("ALTER TABLE inbound_events RENAME TO inbound_events_gone"))
    inputs = {"resource": "prod-db-admin", "justification": JUSTIFICATION, "ticket": "INC-1"}
    status, body = await teams.driver.execute(teams.alice, form, "submit_request", inputs)
    assert status == 200 and body["type"] == TEXT and "try again" in body["value"]
    assert [r for r in caplog.records if "Teams turn failed" in r.getMessage()]
    _no_traceback(caplog)
