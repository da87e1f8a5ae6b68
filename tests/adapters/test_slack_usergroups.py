"""The slack_usergroups connector against the local Slack Web API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.usergroups import SlackUserGroups
from adapters.static.directory import StaticDirectory
from engine.policy import Policy
from engine.ports import ConnectorError, ConnectorFailure
from storage.database import Database
from storage.locks import NamedLocks
from tests.fakes.slack_api import TOKEN, FakeSlack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    for i in range(30):
        slack.add_user(f"U{i:03d}", f"user{i}@example.com")
    slack.add_user("U0ALICE", "alice@example.com")
    slack.add_usergroup("S1", ["U000"])
    yield slack
    await slack.stop()


def connector(
    fake: FakeSlack, policy: Policy, database: Database, token: str = TOKEN
) -> SlackUserGroups:
    client = AsyncWebClient(token=token, base_url=fake.api_url)
    return SlackUserGroups(client, StaticDirectory(lambda: policy), NamedLocks(database).hold)


async def test_grant_and_revoke_are_idempotent(
    fake: FakeSlack, policy: Policy, database: Database
) -> None:
    groups = connector(fake, policy, database)
    await groups.grant("alice@example.com", "S1")  # slack_id from the directory
    await groups.grant("alice@example.com", "S1")
    assert fake.usergroups["S1"]["users"] == ["U000", "U0ALICE"]
    assert await groups.is_granted("alice@example.com", "S1")
    await groups.revoke("alice@example.com", "S1")
    await groups.revoke("alice@example.com", "S1")
    assert fake.usergroups["S1"]["users"] == ["U000"]
    assert not await groups.is_granted("alice@example.com", "S1")


async def test_concurrent_grants_never_drop_a_member(
    fake: FakeSlack, policy: Policy, database: Database
) -> None:
    # Two connectors with their own locks objects, as two replicas would have.
    a, b = connector(fake, policy, database), connector(fake, policy, database)
    emails = [f"user{i}@example.com" for i in range(1, 21)]  # found by users.lookupByEmail
    await asyncio.gather(*((a if i % 2 else b).grant(e, "S1") for i, e in enumerate(emails)))
    assert sorted(fake.usergroups["S1"]["users"]) == sorted(
        ["U000"] + [f"U{i:03d}" for i in range(1, 21)]
    )
    await asyncio.gather(*((a if i % 2 else b).revoke(e, "S1") for i, e in enumerate(emails[:10])))
    assert sorted(fake.usergroups["S1"]["users"]) == sorted(
        ["U000"] + [f"U{i:03d}" for i in range(11, 21)]
    )


async def test_last_member_out_disables_and_next_grant_enables(
    fake: FakeSlack, policy: Policy, database: Database
) -> None:
    groups = connector(fake, policy, database)
    await groups.revoke("user0@example.com", "S1")
    assert fake.usergroups["S1"]["enabled"] is False
    await groups.grant("alice@example.com", "S1")
    assert fake.usergroups["S1"] == {"users": ["U0ALICE"], "enabled": True}
    assert await groups.members("S1") == ["alice@example.com"]


async def test_failures_are_typed(fake: FakeSlack, policy: Policy, database: Database) -> None:
    with pytest.raises(ConnectorError) as missing_group:
        await connector(fake, policy, database).grant("alice@example.com", "S404")
    assert missing_group.value.failure is ConnectorFailure.NO_SUCH_GROUP
    with pytest.raises(ConnectorError) as missing_user:
        await connector(fake, policy, database).grant("nobody@example.com", "S1")
    assert missing_user.value.failure is ConnectorFailure.NO_SUCH_USER
    with pytest.raises(ConnectorError) as bad_token:
        await connector(fake, policy, database, token="xoxb-wrong").grant("user1@example.com", "S1")
    assert bad_token.value.failure is ConnectorFailure.AUTH
    assert "xoxb" not in str(bad_token.value)
    await fake.stop()
    with pytest.raises(ConnectorError) as down:
        await connector(fake, policy, database).grant("alice@example.com", "S1")
    assert down.value.failure is ConnectorFailure.UNREACHABLE and down.value.failure.retryable
