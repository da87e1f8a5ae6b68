"""``clearance serve`` as an operator starts it, against the local Slack Web API server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.policy_loading import load_policy
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.serve_process import serving, until
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action
from tests.fakes.slapd import free_port


def card(fake: FakeSlack, user: str, action: str) -> dict | None:
    for message in reversed(fake.dms_to(user)):
        try:
            find_action(message["blocks"], action)
        except AssertionError:
            continue
        return message
    return None


async def test_serve_runs_a_request_to_a_grant(db_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy)
    fake = FakeSlack()
    await fake.start()
    for person in load_policy(policy).document.directory.people:
        if person.slack_id:
            fake.add_user(person.slack_id, person.email, person.name)
    fake.add_usergroup("S0CIADMIN", [])
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CLEARANCE_POLICY": str(policy),
        "PORT": str(port),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "CLEARANCE_TICK_SECONDS": "0.2",
    }
    try:
        async with (
            serving(env, tmp_path / "serve.log") as base,
            SlackDriver(f"{base}/slack/events", fake.url + "/response") as driver,
        ):
            status, _ = await driver.command("U0ALICE", "ci-admin", trigger_id="t-serve")
            assert status == 200
            await until(lambda: "t-serve" in fake.view_by_trigger, "the request form to open")
            form = fake.views[fake.view_by_trigger["t-serve"]]
            status, body = await driver.submit(
                "U0ALICE",
                form,
                {"resource": "ci-admin", "justification": "Rotate CI runner secrets"},
            )
            assert status == 200 and "errors" not in body, body
            # Bob owns ci-admin (resource_owner) and is in group:platform: he is asked.
            await until(lambda: card(fake, "U0BOB", "approve") is not None, "Bob's approval card")
            await driver.click("U0BOB", card(fake, "U0BOB", "approve"), "approve")  # type: ignore[arg-type]
            await until(lambda: fake.usergroups["S0CIADMIN"]["users"] == ["U0ALICE"], "the grant")
            await until(
                lambda: any(
                    "ends" in str(m["blocks"]) or "until" in str(m["blocks"])
                    for m in fake.dms_to("U0ALICE")
                ),
                "the granted DM",
            )
            # The wrong secret is refused by the running server too.
            status, _ = await driver.command("U0ALICE", "ci-admin", secret="forged")
            assert status == 401
    finally:
        await fake.stop()
