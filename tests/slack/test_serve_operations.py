"""``clearance serve`` as a process, watched the way an operator watches it: JSON log
lines, /readyz and /metrics, a clean stop, and no secret anywhere in the log."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from engine.policy_loading import load_policy
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.serve_process import serving, until
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver
from tests.fakes.slapd import free_port

APP_TOKEN = "xapp-1-A0SECRET-0123456789-abcdef"
TEAMS_PASSWORD = "teams~client~secret~value"


async def test_serve_logs_json_without_secrets_and_exposes_its_metrics(
    db_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy)
    fake = FakeSlack()
    await fake.start()
    for person in load_policy(policy).document.directory.people:
        if person.slack_id:
            fake.add_user(person.slack_id, person.email, person.name)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CLEARANCE_POLICY": str(policy),
        "PORT": str(free_port()),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "TEAMS_APP_PASSWORD": TEAMS_PASSWORD,
        "SLACK_API_URL": fake.api_url,
        "CLEARANCE_TICK_SECONDS": "0.2",
        "LOG_FORMAT": "json",
        # The most talkative level: the libraries' own debug lines must not leak either.
        "LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "serve.log"
    try:
        async with (
            serving(env, log_path) as base,
            SlackDriver(f"{base}/slack/events", fake.url + "/response") as driver,
            aiohttp.ClientSession() as http,
        ):
            status, _ = await driver.command("U0ALICE", "ci-admin", trigger_id="t-ops")
            assert status == 200
            await until(lambda: "t-ops" in fake.view_by_trigger, "the request form to open")
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200 and (await response.json())["ready"] is True
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                page = await response.text()
    finally:
        await fake.stop()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
    acked = ("clearance_chat_acks_total", (("platform", "slack"), ("status", "2xx")))
    assert samples[acked] >= 1
    assert samples[("clearance_database_up", ())] == 1

    text = log_path.read_text()
    for secret in (TOKEN, SIGNING_SECRET, APP_TOKEN, TEAMS_PASSWORD):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    assert any(e.get("actor") == "alice@example.com" and e.get("http_request") for e in lines)
    assert any(e["message"].startswith("stopping: waiting up to 20s") for e in lines)
    assert any(e["message"] == "stopped" and e["logger"] == "clearance" for e in lines)
