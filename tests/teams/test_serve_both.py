"""One ``clearance serve`` process serving Slack and Teams together, as an operator runs it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.policy_loading import load_policy
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.serve_process import serving, until
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver
from tests.fakes.slapd import free_port
from tests.fakes.teams_connector import TENANT, FakeConnector
from tests.fakes.teams_driver import TeamsDriver, has_action
from tests.teams.conftest import teams_users


async def test_serve_answers_slack_and_teams_in_one_process(db_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy)
    slack, teams = FakeSlack(), FakeConnector()
    await slack.start()
    await teams.start()
    users = teams_users(policy)
    for person in load_policy(policy).document.directory.people:
        if person.slack_id:
            slack.add_user(person.slack_id, person.email, person.name)
        user = users[person.email.split("@")[0]]
        teams.add_member(user.id, user.aad, person.email, person.name)
    slack.add_usergroup("S0CIADMIN", [])
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CLEARANCE_POLICY": str(policy),
        "PORT": str(port),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "TEAMS_ALLOW_UNAUTHENTICATED": "1",
        "TEAMS_TENANT_ID": TENANT,
        # Work runs on the wake-up after each commit; the idle interval (5 ticks) is long, so
        # the prompt-shutdown check of `serving` sees whether SIGTERM wakes the dispatcher.
        "CLEARANCE_TICK_SECONDS": "4",
    }
    log_path = tmp_path / "serve.log"
    try:
        async with (
            serving(env, log_path) as base,
            SlackDriver(f"{base}/slack/events", slack.url + "/response") as on_slack,
            TeamsDriver(f"{base}/api/messages", teams.url) as on_teams,
        ):
            status, _ = await on_teams.install(users["bob"])
            assert status == 200
            # Alice asks in Slack; Bob decides in Teams; the grant lands.
            status, _ = await on_slack.command("U0ALICE", "ci-admin", trigger_id="t-both")
            assert status == 200
            await until(lambda: "t-both" in slack.view_by_trigger, "the request form to open")
            form = slack.views[slack.view_by_trigger["t-both"]]
            values = {"resource": "ci-admin", "justification": "Rotate CI runner secrets"}
            status, body = await on_slack.submit("U0ALICE", form, values)
            assert status == 200 and "errors" not in body, body

            def bob_card() -> dict | None:
                cards = [
                    m
                    for m in teams.messages_in(users["bob"].chat)
                    if has_action(m["card"], "approve")
                ]
                return cards[-1] if cards else None

            await until(lambda: bob_card() is not None, "Bob's card on Teams")
            status, _ = await on_teams.execute(users["bob"], bob_card(), "approve")  # type: ignore[arg-type]
            assert status == 200
            await until(lambda: slack.usergroups["S0CIADMIN"]["users"] == ["U0ALICE"], "the grant")
    finally:
        await slack.stop()
        await teams.stop()
    # Serving /api/messages without token checks is announced at start.
    assert "WITHOUT any token check" in log_path.read_text()
