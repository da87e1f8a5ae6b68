"""``clearance serve`` as an operator starts it, against the local Slack Web API server."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from engine.policy import load_policy
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action
from tests.fakes.slapd import free_port


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
    log = (tmp_path / "serve.log").open("wb")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", env=env, stdout=log, stderr=log
    )
    try:

        async def healthy() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/healthz") as response,
                ):
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await until(healthy, "clearance serve to answer /healthz", 60)
        url = f"http://127.0.0.1:{port}/slack/events"
        async with SlackDriver(url, fake.url + "/response") as driver:
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
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 30) == 0, (tmp_path / "serve.log").read_text()
        log.close()
        await fake.stop()
