"""``/slack/events`` under malformed, unstorable and replayed input: the signature is checked
on the raw body before anything is parsed, junk is refused before any database query or
Slack API call, a person's unstorable text is refused under the field it was typed in, and
a replayed form submission files one request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import event, func, select

from storage.tables import AuditRow, OutboxRow, RequestRow
from tests.slack.conftest import SlackWorld

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
FORM = "application/x-www-form-urlencoded"


async def _count(world: SlackWorld, model: type) -> int:
    async with world.components.database.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _state(world: SlackWorld) -> tuple[int, int, int]:
    return (
        await _count(world, RequestRow),
        await _count(world, AuditRow),
        await _count(world, OutboxRow),
    )


@contextmanager
def _queries(world: SlackWorld) -> Iterator[list[str]]:
    """Every SQL statement the bot runs inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = world.components.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


def _click_payload(world: SlackWorld, user: Any, actions: Any, **more: Any) -> dict[str, Any]:
    payload = {
        **world.driver._base("block_actions", "U0BOB"),
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "D0BOB"},
        "channel": {"id": "D0BOB", "name": "directmessage"},
        "response_url": world.fake.response_url("act-x"),
        "actions": actions,
        **more,
    }
    payload["user"] = user
    return payload


async def _form(world: SlackWorld, user_id: str = "U0ALICE") -> dict[str, Any]:
    status, _ = await world.command(user_id, "prod-db-admin")
    assert status == 200
    return world.last_view()


# --- the signature first, then parsing ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("payload=%7Bnot+json", FORM),
        ("payload=%FF%FE", FORM),
        ("[1, 2, 3]", "application/json"),
        ("", FORM),
    ],
)
async def test_garbage_is_401_unsigned_and_400_signed(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture, body: str, content_type: str
) -> None:
    status, _ = await slack.driver.post(body, content_type, secret="not-the-secret")
    assert status == 401
    status, _ = await slack.driver.post(body, content_type)
    assert status == 400
    _no_traceback(caplog)


async def test_a_request_without_signature_headers_or_with_a_bad_timestamp_is_401(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    assert slack.driver.session is not None
    for headers in (
        {},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"},
    ):
        async with slack.driver.session.post(
            slack.driver.events_url,
            data=b"{",
            headers={"Content-Type": "application/json", **headers},
        ) as resp:
            assert resp.status == 401
    _no_traceback(caplog)


# --- malformed but signed: 400, before any query or Slack API call ----------------------------


def _malformed(world: SlackWorld) -> list[tuple[str, str]]:
    """Correctly signed bodies Slack would never send, one per kind of defect."""
    command = {
        "command": "/request-access",
        "text": "prod-db-admin",
        "user_id": "U0ALICE",
        "trigger_id": "t-1",
        "response_url": world.fake.response_url("cmd-x"),
        "team_id": "T0TEAM",
    }
    button = {"type": "button", "action_id": "approve", "block_id": "b", "value": "R-1:1"}
    typed = {"value": {"type": "plain_text_input", "value": "because"}}
    view: dict[str, Any] = {
        "id": "V1",
        "type": "modal",
        "hash": "h1",
        "callback_id": "request_form",
        "state": {"values": {"justification": typed}},
        "blocks": [{"type": "input", "block_id": "justification"}],
    }
    submission = {**world.driver._base("view_submission", "U0ALICE"), "view": view}
    bodies = [
        urlencode({k: v for k, v in command.items() if k != "trigger_id"}),
        urlencode({k: v for k, v in command.items() if k != "user_id"}),
        urlencode({**command, "user_id": ""}),
    ]
    payloads = [
        _click_payload(world, {"id": "U0BOB"}, []),
        _click_payload(world, {"id": "U0BOB"}, [{"type": "button", "value": "R-1:1"}]),
        _click_payload(world, {"id": "U0BOB"}, ["approve"]),
        _click_payload(world, "U0BOB", [button]),
        _click_payload(world, {"name": "no id"}, [button]),
        _click_payload(world, {"id": "U0BOB"}, [{**button, "value": 12}]),
        _click_payload(world, {"id": "U0BOB"}, [{**button, "value": "R-\ud800"}]),
        _click_payload(world, {"id": "U0BOB"}, [button], response_url=7),
        _click_payload(world, {"id": " "}, [button]),
        # Found by the fuzz test: each raised in bolt or in a listener.
        _click_payload(world, {"id": "U0BOB"}, [button], response_url="<@U0SAM> <!channel>"),
        {**submission, "view": {k: v for k, v in view.items() if k != "type"}},
        {**submission, "view": {**view, "blocks": [{"block_id": {"id": 5}}]}},
        _click_payload(world, {"id": "U0BOB"}, [button], enterprise=5),
        {**submission, "view": {**view, "state": {"values": {"justification": "not an object"}}}},
        {**submission, "view": {**view, "state": {"values": []}}},
        {**submission, "view": {**view, "id": None}},
        {**submission, "view": "request_form"},
        {"type": "block_actions"},
        {"type": 5},
    ]
    bodies += [urlencode({"payload": json.dumps(p)}) for p in payloads]
    events = [
        {"type": "event_callback", "event": "app_mention", "event_id": "Ev1"},
        {"type": "event_callback", "event": {"type": "app_mention", "user": ["U0SAM"]}},
        {"type": "event_callback", "event": {"type": "app_home_opened"}, "event_id": "Ev2"},
        {"type": "url_verification"},
    ]
    return [(b, FORM) for b in bodies] + [(json.dumps(e), "application/json") for e in events]


async def test_malformed_payloads_are_400_before_any_query_or_slack_call(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    before = await _state(slack)
    calls = len(slack.fake.calls)
    with _queries(slack) as queries:
        for body, content_type in _malformed(slack):
            status, answer = await slack.driver.post(body, content_type)
            assert status == 400, (body, answer)
        await slack.settle()
    assert queries == []
    assert len(slack.fake.calls) == calls
    assert await _state(slack) == before
    _no_traceback(caplog)


# --- well-formed, but about nothing there is ---------------------------------------------------


async def test_an_unknown_request_gets_the_refusal_a_person_sees(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    for action in ("approve", "cancel", "done", "extend", "deny"):
        status, _ = await slack.click_value("U0BOB", action, "R-NOSUCH:1")
        assert status == 200
    said = [r["text"] for r in slack.fake.responses]
    assert len(said) == 5 and all("There is no request 'R-NOSUCH" in t for t in said), said
    _no_traceback(caplog)


async def test_a_refusal_with_no_response_url_is_logged_not_raised(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    payload = _click_payload(
        slack,
        {"id": "U0BOB"},
        [{"type": "button", "action_id": "approve", "block_id": "b", "value": "R-NOSUCH:1"}],
    )
    del payload["response_url"]
    status, _ = await slack.driver.interactive(payload)
    await slack.settle()
    assert status == 200
    assert slack.fake.responses == []
    _no_traceback(caplog)


async def test_a_user_slack_does_not_know_is_answered_politely(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = await slack.command("U0NOBODY", "prod-db-admin")
    assert status == 200 and "does not know who you are" in body
    status, _ = await slack.click_value("U0NOBODY", "approve", "R-1:1")
    assert status == 200
    assert "does not know who you are" in slack.fake.responses[-1]["text"]
    _no_traceback(caplog)


async def test_a_refusal_slack_will_not_show_is_one_warning_line(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # Neither Clearance nor Slack knows the user: the home tab saying so cannot be
    # published either (found by the fuzz test: the refusal's own call raised).
    status, _ = await slack.event({"type": "app_home_opened", "user": "U0NOBODY", "tab": "home"})
    assert status == 200
    failed = [r for r in caplog.records if "views.publish failed" in r.getMessage()]
    assert len(failed) == 1 and "user_not_found" in failed[0].getMessage()
    _no_traceback(caplog)


# --- text that cannot be stored ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\ud800", "\x00"], ids=["surrogate", "nul"])
async def test_unstorable_justification_is_refused_under_its_field(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    view = await _form(slack)
    values = {"resource": "prod-db-admin", "justification": JUSTIFICATION + bad, "ticket": "INC-1"}
    before = await _state(slack)
    status, body = await slack.submit("U0ALICE", view, values)
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert "cannot be stored" in answer["errors"]["justification"]
    assert await _state(slack) == before
    _no_traceback(caplog)


async def test_unstorable_deny_reason_is_refused_and_nothing_is_decided(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-7")
    await slack.drain()
    await slack.click("U0BOB", slack.card_for("U0BOB"), "deny")
    before = await _state(slack)
    status, body = await slack.submit("U0BOB", slack.last_view(), {"reason": "no\ud83d"})
    assert status == 200 and "cannot be stored" in json.loads(body)["errors"]["reason"]
    assert await _state(slack) == before
    _no_traceback(caplog)


async def test_unstorable_command_text_is_refused(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = await slack.command("U0ALICE", "prod-db-admin\x00")
    assert status == 200 and "cannot be stored" in body
    assert slack.fake.called("views.open") == []
    _no_traceback(caplog)


async def test_unstorable_admin_command_is_refused_in_its_thread_and_not_run(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await slack.request("U0ALICE", "prod-db-admin", JUSTIFICATION, ticket="INC-8")
    await slack.drain()
    rid = (await slack.components.store.find())[0].id
    before = await _state(slack)
    status, _ = await slack.mention("U0SAM", "C0ADMINS", f"revoke {rid} gone \ud800")
    assert status == 200
    reply = slack.fake.messages_in("C0ADMINS")[-1]
    assert "cannot be stored" in reply["text"] and reply["thread_ts"]
    assert await _state(slack) == before
    _no_traceback(caplog)


# --- a replayed form submission ---------------------------------------------------------------


async def test_a_replayed_submission_files_one_request_and_answers_as_the_first(
    slack: SlackWorld, caplog: pytest.LogCaptureFixture
) -> None:
    view = await _form(slack)
    values = {"resource": "prod-db-admin", "justification": JUSTIFICATION, "ticket": "INC-9"}
    first = await slack.submit("U0ALICE", view, values)
    again = await slack.submit("U0ALICE", view, values)
    retried = await slack.submit("U0ALICE", view, values, headers={"X-Slack-Retry-Num": "1"})
    assert first[0] == 200 and "errors" not in first[1]
    assert again == first and retried == first
    assert await _count(slack, RequestRow) == 1
    await slack.drain()
    assert len([m for m in slack.dms("U0ALICE") if m.get("text")]) == 1
    _no_traceback(caplog)


async def test_a_refused_submission_can_be_corrected_and_sent(slack: SlackWorld) -> None:
    view = await _form(slack)
    short = {"resource": "prod-db-admin", "justification": "too short", "ticket": "INC-9"}
    for _ in range(2):  # the same refusal each time: nothing was filed
        status, body = await slack.submit("U0ALICE", view, short)
        assert status == 200 and json.loads(body)["response_action"] == "errors"
    status, body = await slack.submit("U0ALICE", view, {**short, "justification": JUSTIFICATION})
    assert status == 200 and "errors" not in body
    assert await _count(slack, RequestRow) == 1


async def test_a_command_whose_text_says_payload_is_still_a_command(slack: SlackWorld) -> None:
    # bolt's own parser takes any form mentioning "payload" for interactivity and reads
    # such a command as an empty body; the body bolt gets now is the one parsed here.
    status, _ = await slack.command("U0ALICE", "payload-db")
    assert status == 200
    assert len(slack.fake.called("views.open")) == 1
