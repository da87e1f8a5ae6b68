"""One contract, every Entitlements connector, each against its real (or locally served) system.

Membership is read back from the server itself, not through the connector under test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import ldap3
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ldap.connection import LdapClient, LdapSettings
from adapters.ldap.entitlements import LdapGroups
from adapters.scim.client import ScimClient, ScimSettings
from adapters.scim.entitlements import ScimGroups
from adapters.slack.usergroups import SlackUserGroups
from adapters.static.directory import StaticDirectory
from engine.policy_loading import parse_policy
from engine.ports import ConnectorError, ConnectorFailure, Entitlements
from storage.database import Database
from storage.locks import NamedLocks
from tests.fakes.scim_server import TOKEN as SCIM_TOKEN
from tests.fakes.scim_server import ScimServer
from tests.fakes.slack_api import TOKEN as SLACK_TOKEN
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slapd import ADMIN_DN, ADMIN_PASSWORD, GROUPS, PEOPLE, PLACEHOLDER, Slapd

EMAILS = ["alice@example.com", "bob@example.com"] + [f"user{i}@example.com" for i in range(12)]
_names = itertools.count(1)


@dataclass
class Case:
    """A connector, a way to make a fresh group, and the server's own view of a group."""

    connector: Entitlements
    new_group: Callable[[], str]
    actual: Callable[[str], set[str]]
    broken: Callable[[], Entitlements]  # same server, wrong credentials
    stop: Callable[[], None]
    start: Callable[[], None]


def ldap_case(slapd: Slapd) -> Case:
    env = {"LDAP_PW": ADMIN_PASSWORD}
    settings = LdapSettings(
        url=slapd.url,
        bind_dn=ADMIN_DN,
        password_env="LDAP_PW",
        users_base=PEOPLE,
        groups_base=GROUPS,
        placeholder_member=PLACEHOLDER,
    )

    def new_group() -> str:
        name = f"contract{next(_names)}"
        conn = slapd.admin()
        assert conn.add(
            f"cn={name},{GROUPS}", ["groupOfNames"], {"cn": name, "member": [PLACEHOLDER]}
        )
        conn.unbind()
        return name

    def actual(group: str) -> set[str]:
        conn = slapd.admin()
        out = set()
        for dn in slapd.members(group):
            conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["mail"])
            out.add(str(conn.entries[0].mail.value))
        conn.unbind()
        return out

    return Case(
        LdapGroups(LdapClient(settings, env)),
        new_group,
        actual,
        lambda: LdapGroups(LdapClient(settings, {"LDAP_PW": "wrong"})),
        slapd.stop,
        slapd.start,
    )


def scim_case(scim: ScimServer) -> Case:
    settings = ScimSettings(url=scim.base, token_env="SCIM_TOKEN", timeout=2)
    by_id = {v: k for k, v in scim.ids.items()}

    def new_group() -> str:
        name = f"contract{next(_names)}"
        return scim.add_group(name, [])

    def actual(group_id: str) -> set[str]:
        members = scim.call("GET", f"/Groups/{group_id}").get("members") or []
        return {by_id[m["value"]] for m in members}

    def stop() -> None:
        scim.process.send_signal(19) if scim.process else None  # SIGSTOP: a hung server

    def start() -> None:
        scim.process.send_signal(18) if scim.process else None  # SIGCONT

    return Case(
        ScimGroups(ScimClient(settings, {"SCIM_TOKEN": SCIM_TOKEN})),
        new_group,
        actual,
        lambda: ScimGroups(
            ScimClient(ScimSettings(url=scim.base, token_env="T", timeout=2), {"T": "wrong"})
        ),
        stop,
        start,
    )


async def slack_case(fake: FakeSlack) -> Case:
    policy = parse_policy("resources: []\n")
    ids = {}
    for i, email in enumerate(EMAILS):
        ids[email] = f"U{i:04d}"
        fake.add_user(ids[email], email)
    by_id = {v: k for k, v in ids.items()}
    locks = NamedLocks(Database("sqlite+aiosqlite://"))

    def connector(token: str) -> SlackUserGroups:
        client = AsyncWebClient(token=token, base_url=fake.api_url, timeout=2)
        return SlackUserGroups(client, StaticDirectory(lambda: policy), locks.hold)

    def new_group() -> str:
        name = f"S{next(_names):05d}"
        fake.add_usergroup(name, [])
        fake.usergroups[name]["enabled"] = False
        return name

    def actual(group: str) -> set[str]:
        return {by_id[u] for u in fake.usergroups[group]["users"]}

    def stop() -> None:
        fake.down = True  # Slack answers 503 to every call

    def start() -> None:
        fake.down = False

    return Case(
        connector(SLACK_TOKEN), new_group, actual, lambda: connector("xoxb-wrong"), stop, start
    )


@pytest.fixture(params=["slack_usergroups", "ldap", "scim"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    if request.param == "ldap":
        yield ldap_case(request.getfixturevalue("slapd"))
    elif request.param == "scim":
        yield scim_case(request.getfixturevalue("scim"))
    else:
        fake = FakeSlack()
        await fake.start()
        yield await slack_case(fake)
        await fake.stop()


async def test_grant_twice_is_one_grant(case: Case) -> None:
    group = case.new_group()
    await case.connector.grant("alice@example.com", group)
    await case.connector.grant("alice@example.com", group)
    assert case.actual(group) == {"alice@example.com"}
    assert await case.connector.is_granted("alice@example.com", group)
    assert list(await case.connector.members(group)) == ["alice@example.com"]


async def test_revoke_removes_and_revoking_absent_succeeds(case: Case) -> None:
    group = case.new_group()
    await case.connector.grant("alice@example.com", group)
    await case.connector.grant("bob@example.com", group)
    await case.connector.revoke("alice@example.com", group)
    await case.connector.revoke("alice@example.com", group)
    assert case.actual(group) == {"bob@example.com"}
    await case.connector.revoke("bob@example.com", group)  # the last member
    assert case.actual(group) == set()
    assert not await case.connector.is_granted("bob@example.com", group)


async def test_concurrent_grants_all_land(case: Case) -> None:
    group = case.new_group()
    people = [f"user{i}@example.com" for i in range(12)]
    await asyncio.gather(*(case.connector.grant(p, group) for p in people))
    assert case.actual(group) == set(people)
    await asyncio.gather(*(case.connector.revoke(p, group) for p in people[:6]))
    assert case.actual(group) == set(people[6:])


async def test_unknown_user_and_group_are_typed_failures(case: Case) -> None:
    group = case.new_group()
    with pytest.raises(ConnectorError) as no_user:
        await case.connector.grant("nobody@example.com", group)
    assert no_user.value.failure is ConnectorFailure.NO_SUCH_USER
    assert not no_user.value.failure.retryable
    with pytest.raises(ConnectorError) as no_group:
        await case.connector.grant("alice@example.com", "missing-group-404")
    assert no_group.value.failure in (ConnectorFailure.NO_SUCH_GROUP, ConnectorFailure.REJECTED)
    # Revoking someone the target never knew is "already absent".
    await case.connector.revoke("nobody@example.com", group)


async def test_bad_credentials_fail_as_auth_without_leaking(case: Case) -> None:
    group = case.new_group()
    with pytest.raises(ConnectorError) as denied:
        await case.broken().grant("alice@example.com", group)
    assert denied.value.failure is ConnectorFailure.AUTH
    assert "wrong" not in str(denied.value)


async def test_outage_is_retryable_and_recovers(case: Case) -> None:
    group = case.new_group()
    await case.connector.grant("bob@example.com", group)  # warm: the outage hits a live client
    case.stop()
    try:
        with pytest.raises(ConnectorError) as down:
            await asyncio.wait_for(case.connector.grant("alice@example.com", group), timeout=30)
        assert down.value.failure is ConnectorFailure.UNREACHABLE
        assert down.value.failure.retryable
    finally:
        case.start()
    await case.connector.grant("alice@example.com", group)
    assert case.actual(group) == {"alice@example.com", "bob@example.com"}
