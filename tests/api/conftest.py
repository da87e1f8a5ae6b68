"""A running Clearance with its API, a local OIDC issuer, a fake Slack workspace, slapd for
the grants and a receiver for callbacks: the world a pipeline's request goes through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import Components, build, start
from bot.server import web_app
from bot.settings import Settings
from tests.fakes.clock import ManualClock
from tests.fakes.oidc_issuer import OidcIssuer
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action
from tests.fakes.slapd import ADMIN_DN, GROUPS, PEOPLE, PLACEHOLDER, Slapd

SUBJECT = "repo:acme/payments:ref:refs/heads/main"
CALLBACK_SECRET = "callback-secret-for-tests"
LDAP_PASSWORD_ENV = "API_LDAP_PASSWORD"
PEOPLE_ = [
    {
        "mail": "alice@example.com",
        "name": "Alice Archer",
        "slack_id": "U0ALICE",
        "manager": "bob@example.com",
    },
    {
        "mail": "bob@example.com",
        "name": "Bob Baker",
        "slack_id": "U0BOB",
        "manager": "carol@example.com",
    },
    {"mail": "carol@example.com", "name": "Carol Chen", "slack_id": "U0CAROL"},
    {"mail": "dora@example.com", "name": "Dora Diaz", "slack_id": "U0DORA"},
    {"mail": "sam@example.com", "name": "Sam Singh", "slack_id": "U0SAM"},
    {"mail": "svc-deploy@example.com", "name": "Deploy service account"},
]


@pytest.fixture(scope="session")
def api_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(Path(tmp_path_factory.mktemp("api-slapd")))
    server.start()
    server.seed(
        [{k: v for k, v in p.items() if k != "slack_id"} for p in PEOPLE_],
        {"prod-deploy": [], "staging-deploy": []},
    )
    yield server
    server.stop()


def api_policy(issuer: str, callback: str, slapd: Slapd) -> str:
    people = "\n".join(
        f"    - {{email: {p['mail']}, name: {p['name']}"
        + (f", manager: {p['manager']}" if p.get("manager") else "")
        + (f", slack_id: {p['slack_id']}" if p.get("slack_id") else "")
        + "}"
        for p in PEOPLE_
    )
    return f"""
admins: {{channel: C0ADMINS, users: [sam@example.com]}}
directory:
  people:
{people}
  groups:
    dba: [dora@example.com]
    platform: [bob@example.com, alice@example.com]
connectors:
  corp-ldap:
    type: ldap
    url: {slapd.url}
    bind_dn: "{ADMIN_DN}"
    password_env: {LDAP_PASSWORD_ENV}
    users_base: "{PEOPLE}"
    groups_base: "{GROUPS}"
    placeholder_member: "{PLACEHOLDER}"
    identity: clearance-bot@example.com
resources:
  - id: prod-deploy-role
    name: Production deploy role
    risk: high
    owners: [group:dba]
    grant: {{connector: corp-ldap, group: prod-deploy}}
    duration: {{default: 1h, max: 4h}}
    requesters: [workload:deploy-pipeline, group:platform]
    approval: [manager, resource_owner]
  - id: staging-deploy
    name: Staging deploy role
    risk: low
    grant: {{connector: corp-ldap, group: staging-deploy}}
    duration: {{default: 1h, max: 4h}}
    requesters: [group:platform]
    approval: auto
workloads:
  - id: deploy-pipeline
    issuer: {issuer}
    audience: clearance
    subject: "{SUBJECT}"
    claims: {{repository_owner: acme}}
    owner: bob@example.com
    principal: svc-deploy@example.com
    resources: [prod-deploy-role]
    callback_url: {callback}
    rate_limit: 20/1m
api:
  callback_hosts: [127.0.0.1]
"""


@dataclass
class Receiver:
    """Where a workload's callbacks land: every POST, with its headers."""

    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.posts]


@dataclass
class ApiWorld:
    components: Components
    server: TestServer
    issuer: OidcIssuer
    slapd: Slapd
    fake: FakeSlack
    driver: SlackDriver
    receiver: Receiver
    clock: ManualClock
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def token(self, **kw: Any) -> str:
        claims = {"repository_owner": "acme", "repository": "acme/payments", **kw.pop("claims", {})}
        return self.issuer.issue(kw.pop("subject", SUBJECT), claims=claims, **kw)

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if raw is not None:
            kwargs: dict[str, Any] = {"data": raw}
        elif body is not None:
            kwargs = {"json": body}
        else:
            kwargs = {}
        async with self.session.request(method, self.url(path), headers=sent, **kwargs) as response:
            text = await response.text()
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            return response.status, data, dict(response.headers)

    async def settle(self) -> int:
        assert self.components.slack is not None
        await self.components.slack.idle()
        return await self.components.dispatcher.drain()

    async def approve(self, user_id: str) -> None:
        for message in reversed(self.fake.dms_to(user_id)):
            try:
                find_action(message["blocks"], "approve")
            except AssertionError:
                continue
            status, _ = await self.driver.click(user_id, message, "approve")
            assert status == 200
            await self.settle()
            return
        raise AssertionError(f"{user_id} has no approval card")


@pytest.fixture
async def api(
    db_url: str,
    tmp_path: Path,
    clock: ManualClock,
    oidc_issuer: OidcIssuer,
    api_slapd: Slapd,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ApiWorld]:
    from tests.fakes.slapd import ADMIN_PASSWORD

    monkeypatch.setenv(LDAP_PASSWORD_ENV, ADMIN_PASSWORD)
    receiver = Receiver()
    hook = web.Application()
    hook.router.add_post("/hook", receiver.handle)
    hook_server = TestServer(hook, host="127.0.0.1")
    await hook_server.start_server()
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(
        api_policy(oidc_issuer.url, str(hook_server.make_url("/hook")), api_slapd)
    )
    fake = FakeSlack()
    await fake.start()
    for p in PEOPLE_:
        if p.get("slack_id"):
            fake.add_user(p["slack_id"], p["mail"], p["name"])
    settings = Settings(
        database_url=db_url,
        clearance_policy=policy_path,
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.api_url,
        clearance_callback_secret=CALLBACK_SECRET,
    )
    components = build(settings, clock=clock)
    await start(components)
    server = TestServer(web_app(components))
    await server.start_server()
    driver = SlackDriver(str(server.make_url("/slack/events")), fake.url + "/response")
    async with driver, aiohttp.ClientSession() as session:
        yield ApiWorld(
            components, server, oidc_issuer, api_slapd, fake, driver, receiver, clock, session
        )
    await server.close()
    await components.close()
    await fake.stop()
    await hook_server.close()
    for group in ("prod-deploy", "staging-deploy"):
        _empty(api_slapd, group)


def _empty(slapd: Slapd, group: str) -> None:
    """Leave the session's slapd as the next test expects it: nobody in the group."""
    import ldap3

    conn = slapd.admin()
    conn.modify(f"cn={group},{GROUPS}", {"member": [(ldap3.MODIFY_REPLACE, [PLACEHOLDER])]})
    conn.unbind()
