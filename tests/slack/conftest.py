"""A running Clearance (real bolt app over HTTP) against a local Slack Web API server."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.app import Components, build, start
from bot.server import web_app
from bot.settings import Settings
from engine.policy_loading import load_policy
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.clock import ManualClock
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action

GROUPS = ("S0DBADMIN", "S0STAGINGRO", "S0SIGNING", "S0CIADMIN")


@dataclass
class SlackWorld:
    """The bot, the fake workspace and a driver that plays Slack's side."""

    fake: FakeSlack
    driver: SlackDriver
    components: Components
    clock: ManualClock
    policy_path: Path

    async def settle(self) -> None:
        """Wait for the work listeners do after their ack (bolt acks first, as Slack needs)."""
        assert self.components.slack is not None
        await self.components.slack.idle()

    # Each delivery, then the listener's after-ack work, as Slack would see it happen.
    async def click(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.click(*args, **kw)
        await self.settle()
        return result

    async def click_value(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.click_value(*args, **kw)
        await self.settle()
        return result

    async def submit(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.submit(*args, **kw)
        await self.settle()
        return result

    async def command(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.command(*args, **kw)
        await self.settle()
        return result

    async def choose(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.choose(*args, **kw)
        await self.settle()
        return result

    async def check(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.check(*args, **kw)
        await self.settle()
        return result

    async def event(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.event(*args, **kw)
        await self.settle()
        return result

    async def mention(self, *args: Any, **kw: Any) -> tuple[int, str]:
        result = await self.driver.mention(*args, **kw)
        await self.settle()
        return result

    async def drain(self) -> int:
        await self.settle()
        return await self.components.dispatcher.drain()

    def dms(self, user_id: str) -> list[dict[str, Any]]:
        return self.fake.dms_to(user_id)

    def card_for(self, user_id: str, action_id: str = "approve") -> dict[str, Any]:
        """The latest DM to ``user_id`` that carries a button ``action_id``."""
        for message in reversed(self.dms(user_id)):
            try:
                find_action(message["blocks"], action_id)
            except AssertionError:
                continue
            return message
        raise AssertionError(f"{user_id} has no message with a {action_id} button")

    def last_view(self) -> dict[str, Any]:
        opened = self.fake.called("views.open")
        assert opened, "no modal was opened"
        return list(self.fake.views.values())[-1]

    async def request(
        self,
        user_id: str,
        resource: str,
        justification: str,
        ticket: str = "",
        duration: str = "",
        break_glass: bool = False,
    ) -> tuple[int, str]:
        """Type /request-access <resource>, fill the form and submit it (with
        ``break_glass``, tick the emergency box first: the form comes back for it)."""
        status, _ = await self.driver.command(user_id, resource)
        assert status == 200
        await self.settle()
        view = self.last_view()
        values = {"resource": resource, "justification": justification}
        if break_glass:
            status, _ = await self.check(user_id, view, "break_glass")
            assert status == 200
            view = self.last_view()
            values["break_glass"] = "true"
        if ticket:
            values["ticket"] = ticket
        if duration:
            values["duration"] = duration
        result = await self.driver.submit(user_id, view, values)
        await self.settle()
        return result


@pytest.fixture
async def slack(db_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[SlackWorld]:
    policy_path = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy_path)
    fake = FakeSlack()
    await fake.start()
    for person in load_policy(policy_path).document.directory.people:
        if person.slack_id:
            fake.add_user(person.slack_id, person.email, person.name)
    for group in GROUPS:
        fake.add_usergroup(group, ["U0CAROL"])  # someone who holds it outside Clearance
    settings = Settings(
        database_url=db_url,
        clearance_policy=policy_path,
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.api_url,
    )
    components = build(settings, clock=clock)
    await start(components)
    server = TestServer(web_app(components))
    await server.start_server()
    driver = SlackDriver(str(server.make_url("/slack/events")), fake.url + "/response")
    async with driver:
        yield SlackWorld(fake, driver, components, clock, policy_path)
    await server.close()
    await components.close()
    await fake.stop()
