"""A running Clearance serving ``/api/messages`` against a local Bot Connector server."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
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
from tests.fakes.entitlements import MemoryEntitlements
from tests.fakes.teams_connector import APP_ID, TENANT, FakeConnector, SigningKeys
from tests.fakes.teams_driver import TeamsDriver, TeamsUser, find_action

ADMIN_CHANNEL = "19:admins@thread.tacv2"
GENERAL = "19:general@thread.tacv2"


def teams_users(policy_path: Path) -> dict[str, TeamsUser]:
    """A Teams account for everyone in the policy's directory, by first name.

    People without a teams_id (Erin) get an AAD id the directory does not know: Clearance
    finds them by the email the roster gives.
    """
    users = {}
    for person in load_policy(policy_path).document.directory.people:
        first = person.email.split("@")[0]
        aad = person.teams_id or f"ffffffff-0000-4000-8000-{first.encode().hex()[:12]:0>12}"
        users[first] = TeamsUser(id=f"29:1{first}", aad=aad, name=person.name)
    return users


@dataclass
class TeamsWorld:
    """The bot, the fake tenant and a driver that plays the Bot Framework channel."""

    fake: FakeConnector
    driver: TeamsDriver
    components: Components
    clock: ManualClock
    policy_path: Path
    users: dict[str, TeamsUser]
    grants: MemoryEntitlements

    def __getattr__(self, name: str) -> Any:
        # world.alice, world.bob, ...: the Teams accounts of the directory's people
        users = self.__dict__.get("users") or {}
        if name in users:
            return users[name]
        raise AttributeError(name)

    async def drain(self) -> int:
        return await self.components.dispatcher.drain()

    async def install_all(self, *names: str) -> None:
        """These people installed the bot (all people when none are named)."""
        for name in names or tuple(self.users):
            status, _ = await self.driver.install(self.users[name])
            assert status == 200

    def dms(self, name: str) -> list[dict[str, Any]]:
        return self.fake.messages_in(self.users[name].chat)

    def card_for(self, name: str, verb: str = "approve") -> dict[str, Any]:
        """The latest message to ``name`` whose card has an Action.Execute ``verb``."""
        for message in reversed(self.dms(name)):
            try:
                find_action(message["card"] or {}, verb)
            except AssertionError:
                continue
            return message
        raise AssertionError(f"{name} has no card with a {verb} action")

    def last_card(self, name: str) -> dict[str, Any]:
        messages = self.dms(name)
        assert messages, f"{name} got no message"
        return messages[-1]

    async def request(
        self,
        name: str,
        resource: str,
        justification: str,
        ticket: str = "",
        duration: str = "",
        break_glass: bool = False,
    ) -> tuple[int, Any]:
        """Say "request access <resource>", fill the form the bot sends and submit it. With
        ``break_glass``, the emergency toggle is on: the first Request brings the form back
        for break-glass (its cap as the duration), and its Request submits."""
        user = self.users[name]
        status, _ = await self.driver.say(user, f"request access {resource}")
        assert status == 200
        form = self.card_for(name, "submit_request")
        inputs = {"resource": resource, "justification": justification}
        if ticket:
            inputs["ticket"] = ticket
        if break_glass:
            inputs["break_glass"] = "true"
            status, body = await self.driver.execute(user, form, "submit_request", inputs)
            assert status == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
            form = {**form, "card": body["value"]}  # the clicked card, replaced in place
        if duration:
            inputs["duration"] = duration
        return await self.driver.execute(user, form, "submit_request", inputs)


def teams_settings(db_url: str, policy_path: Path, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "clearance_policy": policy_path,
        "teams_allow_unauthenticated": True,
        "teams_tenant_id": TENANT,
    }
    values.update(more)
    return Settings(**values)


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, path)
    return path


@pytest.fixture
def signing_keys() -> Iterator[SigningKeys]:
    keys = SigningKeys()
    yield keys
    keys.close()


async def _world(
    settings: Settings,
    clock: ManualClock,
    policy_path: Path,
    keys: SigningKeys | None = None,
    **build_kw: Any,
) -> AsyncIterator[TeamsWorld]:
    fake = FakeConnector(token=build_kw.pop("connector_token", None))
    await fake.start()
    users = teams_users(policy_path)
    for person in load_policy(policy_path).document.directory.people:
        user = users[person.email.split("@")[0]]
        fake.add_member(user.id, user.aad, person.email, person.name)
    grants = MemoryEntitlements()
    components = build(
        settings,
        clock=clock,
        factories={"slack_usergroups": lambda _name, _config: grants},
        **build_kw,
    )
    await start(components)
    server = TestServer(web_app(components))
    await server.start_server()
    driver = TeamsDriver(str(server.make_url("/api/messages")), fake.url, keys)
    async with driver:
        yield TeamsWorld(fake, driver, components, clock, policy_path, users, grants)
    await server.close()
    await components.close()
    await fake.stop()


@pytest.fixture
async def teams(db_url: str, policy_path: Path, clock: ManualClock) -> AsyncIterator[TeamsWorld]:
    """Teams in local-development mode (TEAMS_ALLOW_UNAUTHENTICATED): no token checks."""
    async for world in _world(teams_settings(db_url, policy_path), clock, policy_path):
        yield world


@pytest.fixture
async def teams_auth(
    db_url: str, policy_path: Path, clock: ManualClock, signing_keys: SigningKeys
) -> AsyncIterator[TeamsWorld]:
    """Teams as in production: an app id, every request token-checked against the keys
    published at TEAMS_OPENID_METADATA_URL, outgoing calls with the bot's token."""
    from tests.fakes.teams_connector import BOT_TOKEN, FixedTokenCredentials

    settings = teams_settings(
        db_url,
        policy_path,
        teams_allow_unauthenticated=False,
        teams_app_id=APP_ID,
        teams_app_password="not-used-in-tests",
        teams_openid_metadata_url=signing_keys.metadata_url,
    )
    async for world in _world(
        settings,
        clock,
        policy_path,
        signing_keys,
        teams_credentials=FixedTokenCredentials(),
        connector_token=BOT_TOKEN,
    ):
        yield world
