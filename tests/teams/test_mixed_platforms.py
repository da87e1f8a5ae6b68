"""One deployment serving Slack and Teams at once: the same engine, policy and database.

A request made in Slack goes to an approver who is only on Teams; the decision reaches the
requester in Slack; a person on both platforms gets (and sees updated) cards on both.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.app import Components, build, start
from bot.server import web_app
from engine.access_request import Status
from engine.policy_loading import load_policy
from tests.fakes.clock import ManualClock
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver
from tests.fakes.slack_driver import has_action as slack_has_action
from tests.fakes.teams_connector import FakeConnector
from tests.fakes.teams_driver import TeamsDriver, TeamsUser, has_action, shown
from tests.slack.conftest import GROUPS
from tests.teams.conftest import ADMIN_CHANNEL, teams_settings, teams_users

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"


@dataclass
class Both:
    slack: FakeSlack
    teams: FakeConnector
    slack_driver: SlackDriver
    teams_driver: TeamsDriver
    components: Components
    users: dict[str, TeamsUser]

    def teams_dms(self, name: str) -> list[dict]:
        return self.teams.messages_in(self.users[name].chat)


@pytest.fixture
def bob_on_teams_only(policy_path: Path) -> Path:
    """Bob has no slack_id, and the Slack workspace does not know his email."""
    policy_path.write_text(re.sub(r"slack_id: U0BOB,\s*", "", policy_path.read_text()))
    return policy_path


@pytest.fixture
async def both(db_url: str, bob_on_teams_only: Path, clock: ManualClock) -> AsyncIterator[Both]:
    policy_path = bob_on_teams_only
    slack = FakeSlack()
    await slack.start()
    for person in load_policy(policy_path).document.directory.people:
        if person.slack_id:
            slack.add_user(person.slack_id, person.email, person.name)
    for group in GROUPS:
        slack.add_usergroup(group, ["U0CAROL"])
    teams = FakeConnector()
    await teams.start()
    users = teams_users(policy_path)
    for person in load_policy(policy_path).document.directory.people:
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
        yield Both(slack, teams, slack_driver, teams_driver, components, users)
    await server.close()
    await components.close()
    await slack.stop()
    await teams.stop()


async def _settle(both: Both) -> None:
    assert both.components.slack is not None
    await both.components.slack.idle()


async def test_a_slack_request_approved_on_teams(both: Both) -> None:
    for name in ("bob", "dora", "sam"):
        status, _ = await both.teams_driver.install(both.users[name])
        assert status == 200
    # Alice asks in Slack.
    await both.slack_driver.command("U0ALICE", "prod-db-admin")
    await _settle(both)
    view = list(both.slack.views.values())[-1]
    status, body = await both.slack_driver.submit(
        "U0ALICE",
        view,
        {"resource": "prod-db-admin", "justification": JUSTIFICATION, "ticket": "INC-1"},
    )
    assert status == 200 and "errors" not in body
    await _settle(both)
    await both.components.dispatcher.drain()
    rid = (await both.components.store.find())[0].id

    # Bob, on Teams only, gets the approval card there and approves it there.
    bob_card = both.teams_dms("bob")[-1]
    assert has_action(bob_card["card"], "approve") and rid in shown(bob_card["card"])
    status, _ = await both.teams_driver.execute(both.users["bob"], bob_card, "approve")
    assert status == 200
    await both.components.dispatcher.drain()
    # Alice hears of Bob's decision in Slack; her Slack confirmation is updated in place.
    alice = both.slack.dms_to("U0ALICE")
    assert any("Bob Baker" in (m.get("text") or "") for m in alice[1:]), alice
    assert alice[0]["updates"] >= 1

    # Dora is on both platforms: one card on each, and deciding on Slack updates both.
    assert has_action(both.teams_dms("dora")[-1]["card"], "approve")
    slack_card = both.slack.dms_to("U0DORA")[-1]
    assert slack_has_action(slack_card["blocks"], "approve")
    await both.slack_driver.click("U0DORA", slack_card, "approve")
    await _settle(both)
    await both.components.dispatcher.drain()
    assert not has_action(both.teams_dms("dora")[-1]["card"], "approve")
    assert both.teams_dms("dora")[-1]["updates"] >= 1

    # Sam finishes on Teams; the grant lands in the Slack user group.
    await both.teams_driver.execute(both.users["sam"], both.teams_dms("sam")[-1], "approve")
    await both.components.dispatcher.drain()
    request = await both.components.clearance.get(rid)
    assert request.status is Status.ACTIVE
    assert "U0ALICE" in both.slack.usergroups["S0DBADMIN"]["users"]
    # Both admin feeds heard of it.
    assert both.slack.messages_in("C0ADMINS") and both.teams.messages_in(ADMIN_CHANNEL)
