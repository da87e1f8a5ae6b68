"""Fuzzing both chat routes through the real HTTP server, on both databases.

From a fixed seed, correctly signed Slack payloads (a command, a click on every action
the bot has, every modal submission, the events it takes) and Teams activities (messages,
card actions, installs) are mutated — a key dropped, a value of another type, an empty
list, text that cannot be stored, a body cut short — and sent to ``/slack/events`` and
``/api/messages``. Whatever arrives:

- no answer is a 5xx, and the log holds no traceback and no error;
- a refused delivery (4xx) changes nothing (requests, audit events, outbox jobs);
- every seed is chosen to change nothing when it goes through either (the clicker may not
  decide, the justification is too short, the review does not exist), so no delivery may
  change anything — except an admin command, which is audited: one event, no more.

``CLEARANCE_FUZZ_SEED`` and ``CLEARANCE_FUZZ_COUNT`` replay or widen a run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from bot.app import Components, build, start
from bot.server import web_app
from engine.policy_loading import load_policy
from storage.tables import AuditRow, OutboxRow, RequestRow
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.clock import ManualClock
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver
from tests.fakes.teams_connector import FakeConnector
from tests.fakes.teams_driver import TeamsDriver, TeamsUser
from tests.slack.conftest import GROUPS
from tests.teams.conftest import ADMIN_CHANNEL, teams_settings, teams_users

SEED = int(os.environ.get("CLEARANCE_FUZZ_SEED", "15"))
COUNT = int(os.environ.get("CLEARANCE_FUZZ_COUNT", "300"))
SLACK_SHARE = 0.75  # of COUNT; the rest are Teams activities
JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
FORM = "application/x-www-form-urlencoded"
# What a Teams turn may fail on by design: the Bot Connector refusing or not answering a
# reply (a mutated conversation or activity id). Anything else failing is a bug.
CONNECTOR_ERRORS = {"ErrorResponseException", "HttpOperationError", "ClientConnectorError"}

# Replacement values a mutation draws from: other types, empties, text that cannot be
# stored, too much text, look-alike ids. None is a valid justification or a real id.
ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    " ",
    [],
    {},
    [None],
    {"id": 5},
    "x",
    "U0NOBODY",
    "R-NOSUCH:1",
    "a\x00b",
    "\ud800",
    "ok\udfff",
    "x" * 5000,
    "<@U0SAM> <!channel>",
    "../../etc",
]


_COUNTED = (RequestRow, AuditRow, OutboxRow)


@dataclass
class Seed:
    """One delivery to mutate: where it goes and whether it may write an audit event."""

    name: str
    body: dict[str, Any]
    route: str  # "command" (a form), "interactive" (payload=JSON), "event" (JSON), "teams"
    audited: bool = False  # an admin command: audited even when refused


@dataclass
class World:
    components: Components
    slack: FakeSlack
    teams: FakeConnector
    slack_driver: SlackDriver
    teams_driver: TeamsDriver
    users: dict[str, TeamsUser]
    request_id: str

    async def settle(self) -> None:
        assert self.components.slack is not None
        await self.components.slack.idle()

    async def counts(self) -> tuple[int, int, int]:
        """Requests, audit events and outbox jobs, in one query."""
        query = select(*(select(func.count()).select_from(m).scalar_subquery() for m in _COUNTED))
        async with self.components.database.transaction() as session:
            requests, audit, outbox = (await session.execute(query)).one()
        return int(requests), int(audit), int(outbox)


@pytest.fixture
async def world(db_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    policy_path = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy_path)
    people = load_policy(policy_path).document.directory.people
    slack = FakeSlack()
    await slack.start()
    for person in people:
        if person.slack_id:
            slack.add_user(person.slack_id, person.email, person.name)
    for group in GROUPS:
        slack.add_usergroup(group, ["U0CAROL"])
    teams = FakeConnector()
    await teams.start()
    users = teams_users(policy_path)
    for person in people:
        user = users[person.email.split("@")[0]]
        teams.add_member(user.id, user.aad, person.email, person.name)
    settings = teams_settings(
        db_url,
        policy_path,
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
    )
    components = build(settings, clock=clock)
    await start(components)
    server = TestServer(web_app(components))
    await server.start_server()
    slack_driver = SlackDriver(str(server.make_url("/slack/events")), slack.url + "/response")
    teams_driver = TeamsDriver(str(server.make_url("/api/messages")), teams.url)
    async with slack_driver, teams_driver:
        for name in ("alice", "bob", "sam"):
            assert (await teams_driver.install(users[name]))[0] == 200
        # One pending request, so that ids in the seeds are real ones.
        await slack_driver.command("U0ALICE", "prod-db-admin")
        assert components.slack is not None
        await components.slack.idle()
        view = list(slack.views.values())[-1]
        values = {"resource": "prod-db-admin", "justification": JUSTIFICATION, "ticket": "INC-1"}
        status, body = await slack_driver.submit("U0ALICE", view, values)
        assert status == 200 and "errors" not in body
        await components.slack.idle()
        await components.dispatcher.drain()
        request_id = (await components.store.find())[0].id
        yield World(components, slack, teams, slack_driver, teams_driver, users, request_id)
    await server.close()
    await components.close()
    await slack.stop()
    await teams.stop()


# --- the seeds ----------------------------------------------------------------------------


async def _views(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request form and a deny form as Slack holds them (opened by Alice)."""
    driver = world.slack_driver
    await driver.command("U0ALICE", "prod-db-admin")
    await world.settle()
    form = list(world.slack.views.values())[-1]
    await driver.click_value("U0ALICE", "deny", f"{world.request_id}:1")
    await world.settle()
    deny = list(world.slack.views.values())[-1]
    assert form["callback_id"] == "request_form" and deny["callback_id"] == "deny_form"
    return form, deny


def _click(world: World, user_id: str, action_id: str, value: str, **more: Any) -> dict[str, Any]:
    driver = world.slack_driver
    return {
        **driver._base("block_actions", user_id),
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "D" + user_id},
        "channel": {"id": "D" + user_id, "name": "directmessage"},
        "response_url": world.slack.response_url("fuzz"),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1.0",
            }
        ],
        **more,
    }


def _in_view(world: World, view: dict[str, Any], block_id: str, value: Any) -> dict[str, Any]:
    payload = _click(world, "U0ALICE", "value", "")
    payload.pop("response_url")
    action = {"type": "static_select", "action_id": "value", "block_id": block_id}
    if block_id == "break_glass":
        action.update(type="checkboxes", selected_options=[{"value": "true"}])
    else:
        action["selected_option"] = {"value": value}
    state = {"resource": {"value": {"type": "static_select", "selected_option": {"value": value}}}}
    return {
        **payload,
        "container": {"type": "view", "view_id": view["id"]},
        "view": {**view, "state": {"values": state}},
        "actions": [action],
    }


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": "T0TEAM",
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": "Ev0",
        "event_time": 1,
        "event": event,
    }


async def _seeds(world: World) -> list[Seed]:
    rid = world.request_id
    form, deny = await _views(world)
    driver = world.slack_driver
    command = {
        "token": "legacy",
        "team_id": "T0TEAM",
        "channel_id": "C0GENERAL",
        "user_id": "U0ALICE",
        "command": "/request-access",
        "text": "prod-db-admin",
        "response_url": world.slack.response_url("cmd"),
        "trigger_id": "t",
    }
    short = {"resource": "prod-db-admin", "justification": "too short", "ticket": "INC-1"}
    slack = [
        Seed("command", command, "command"),
        # Alice may not decide her own request; Bob may not cancel or end hers.
        Seed("approve", _click(world, "U0ALICE", "approve", f"{rid}:1"), "interactive"),
        Seed("deny", _click(world, "U0ALICE", "deny", f"{rid}:1"), "interactive"),
        Seed("cancel", _click(world, "U0BOB", "cancel", rid), "interactive"),
        Seed("done", _click(world, "U0BOB", "done", rid), "interactive"),
        Seed("extend", _click(world, "U0BOB", "extend", rid), "interactive"),
        Seed("rerequest", _click(world, "U0ALICE", "rerequest", "prod-db-admin"), "interactive"),
        Seed("open_form", _click(world, "U0ALICE", "open_form", "staging-db-read"), "interactive"),
        Seed("review_keep", _click(world, "U0BOB", "review_keep", "C-NOPE:0"), "interactive"),
        Seed("review_revoke", _click(world, "U0BOB", "review_revoke", "C-NOPE:0"), "interactive"),
        Seed("review_keep_all", _click(world, "U0BOB", "review_keep_all", "C-NOPE"), "interactive"),
        Seed("choose", _in_view(world, form, "resource", "staging-db-read"), "interactive"),
        Seed("emergency", _in_view(world, form, "break_glass", "prod-db-admin"), "interactive"),
        # Too short to be filed, however it is mutated (odd values are never long enough).
        Seed("submit", driver.submission("U0ALICE", form, short), "interactive"),
        Seed(
            "deny_form",
            driver.submission("U0ALICE", deny, {"reason": "it is mine"}),
            "interactive",
        ),
        Seed(
            "review_reason",
            driver.submission(
                "U0BOB",
                {**deny, "callback_id": "review_reason", "private_metadata": "C-NOPE:0:keep"},
                {"reason": "still needed"},
            ),
            "interactive",
        ),
        Seed("home", _event({"type": "app_home_opened", "user": "U0ALICE"}), "event"),
        Seed(
            "mention",
            _event(
                {
                    "type": "app_mention",
                    "user": "U0ALICE",
                    "text": f"<@UBOT> revoke {rid} no longer needed",
                    "ts": "1.1",
                    "channel": "C0ADMINS",
                }
            ),
            "event",
            audited=True,
        ),
    ]
    teams_driver = world.teams_driver
    alice, bob = world.users["alice"], world.users["bob"]
    said = teams_driver._base("message", alice, teams_driver.personal(alice))
    asked = {**copy.deepcopy(said), "text": "request access prod-db-admin"}
    said["text"] = "status"
    submit = {"resource": "prod-db-admin", "justification": "too short", "form_resource": ""}
    invoke = teams_driver.invoke_activity
    teams = [
        Seed("teams_status", said, "teams"),
        Seed("teams_request", asked, "teams"),
        Seed("teams_install", teams_driver.install_activity(alice), "teams"),
        Seed("teams_approve", invoke(alice, "approve", {"request_id": rid, "stage": 1}), "teams"),
        Seed("teams_cancel", invoke(bob, "cancel", {"request_id": rid}), "teams"),
        Seed("teams_submit", invoke(alice, "submit_request", submit), "teams"),
        Seed(
            "teams_mention",
            teams_driver.mention_activity(alice, ADMIN_CHANNEL, f"revoke {rid} because"),
            "teams",
            audited=True,
        ),
    ]
    return slack + teams


# --- mutations ----------------------------------------------------------------------------

Node = dict[str, Any] | list[Any]


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a payload a mutation may hit (the root excluded)."""
    out = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _places(value, (*path, i))
    return out


def _parent(body: Node, path: tuple[Any, ...]) -> Any:
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    return node


def _mutate(rng: random.Random, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """One to three random changes to a copy of ``body``, and what they were."""
    body = copy.deepcopy(body)
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        places = _places(body)
        if not places:
            break
        path = rng.choice(places)
        parent, key = _parent(body, path), path[-1]
        old = parent[key]
        roll = rng.random()
        if roll < 0.25:
            del parent[key]
            done.append(f"del {path}")
            continue
        if roll < 0.4 and isinstance(old, str):
            new: Any = old + rng.choice(("\x00", "\ud800", "\udc00x", "\u0000\u0000"))
        elif roll < 0.5 and isinstance(old, list):
            new = [] if old else [old]
        elif roll < 0.55 and isinstance(old, dict | list):
            new = json.dumps(old)  # an object sent as a string
        else:
            new = copy.deepcopy(rng.choice(ODD_VALUES))
        parent[key] = new
        done.append(f"{path}={str(new)[:40]!r}")
    return body, "; ".join(done)


def _encode(rng: random.Random, seed: Seed, body: dict[str, Any]) -> tuple[str, str]:
    """The request body for a (mutated) payload, now and then cut short or mangled."""
    if seed.route == "command":
        flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        text = urlencode(flat, encoding="utf-8", errors="surrogatepass")
        content_type = FORM
    elif seed.route == "interactive":
        text = urlencode({"payload": json.dumps(body)})
        content_type = FORM
    else:
        text, content_type = json.dumps(body), "application/json"
    roll = rng.random()
    if roll < 0.04:
        text = text[: rng.randrange(len(text))]
    elif roll < 0.06:
        text = text.replace("=", "", 1)
    elif roll < 0.08:
        text += "&" + text.split("&")[0]  # a field given twice
    return text, content_type


# --- the run ------------------------------------------------------------------------------


async def _send(world: World, seed: Seed, text: str, content_type: str) -> int:
    if seed.route == "teams":
        assert world.teams_driver.session is not None
        async with world.teams_driver.session.post(
            world.teams_driver.endpoint,
            data=text.encode("utf-8", "surrogatepass"),
            headers={"Content-Type": content_type},
        ) as resp:
            await resp.read()
            return resp.status
    status, _ = await world.slack_driver.post(text, content_type)
    await world.settle()
    return status


def _fresh(rng: random.Random, seed: Seed) -> dict[str, Any]:
    """The seed with new one-time ids (a trigger is used once; an event id once)."""
    body = copy.deepcopy(seed.body)
    token = f"{rng.randrange(10**9):09d}"
    if "trigger_id" in body:
        body["trigger_id"] = f"trigger-fuzz-{token}"
    if "event_id" in body:
        body["event_id"] = f"EvFuzz{token}"
    if seed.route == "teams":
        body["id"] = f"f:fuzz{token}"
    return body


def _check_log(records: list[logging.LogRecord], what: str) -> None:
    """No traceback, no error, and no Teams turn that failed on anything but the connector
    in what one delivery logged."""
    handler = logging.Handler()
    with_traceback = [handler.format(r) for r in records if r.exc_info or r.exc_text]
    assert not with_traceback, (what, with_traceback[:3])
    loud = [r.getMessage()[:300] for r in records if r.levelno >= logging.ERROR]
    assert not loud, (what, loud)
    assert not [r for r in records if "Traceback" in r.getMessage()], what
    for record in records:
        found = re.match(r"Teams turn failed \([^)]*\): (\w+):", record.getMessage())
        if found:
            assert found.group(1) in CONNECTOR_ERRORS, (what, record.getMessage())


async def test_mutated_deliveries_never_fail_and_change_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rng = random.Random(SEED)
    seeds = await _seeds(world)
    slack = [s for s in seeds if s.route != "teams"]
    teams = [s for s in seeds if s.route == "teams"]

    # Each seed as it is goes through (a 200) and changes nothing it may not.
    for seed in seeds:
        before = await world.counts()
        text, content_type = _encode(random.Random(0), seed, _fresh(rng, seed))
        logged = len(caplog.records)
        status = await _send(world, seed, text, content_type)
        assert status == 200, seed.name
        _unchanged(seed, before, await world.counts(), f"{seed.name} as it is")
        _check_log(caplog.records[logged:], f"{seed.name} as it is")

    statuses: dict[int, int] = {}
    after = await world.counts()
    for n in range(COUNT):
        seed = rng.choice(slack if n < COUNT * SLACK_SHARE else teams)
        body, change = _mutate(rng, _fresh(rng, seed))
        text, content_type = _encode(rng, seed, body)
        before = after  # nothing else writes while the fuzz runs
        logged = len(caplog.records)
        status = await _send(world, seed, text, content_type)
        statuses[status] = statuses.get(status, 0) + 1
        what = f"#{n} {seed.name}: {change} -> {status}"
        assert status < 500, what
        after = await world.counts()
        if status >= 400:
            assert after == before, f"refused, yet changed: {what}"
        _unchanged(seed, before, after, what)
        _check_log(caplog.records[logged:], what)
    # The run reached both the edge's refusals and the listeners behind it.
    assert statuses.get(400, 0) > COUNT // 10 and statuses.get(200, 0) > COUNT // 10, statuses


def _unchanged(seed: Seed, before: tuple[int, ...], after: tuple[int, ...], what: str) -> None:
    requests, audit, outbox = (a - b for a, b in zip(after, before, strict=True))
    assert requests == 0 and outbox == 0, what
    assert audit <= (1 if seed.audited else 0), what
