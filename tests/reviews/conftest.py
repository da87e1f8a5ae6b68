"""A whole Clearance (bot.app.build) with a reviews: section, on SQLite and PostgreSQL.

Grants land in an in-memory connector (tests/fakes/entitlements.py) standing in for the
Slack user groups; no chat is configured, so the dispatcher runs fulfilment and review
jobs and leaves the messages queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import Components, build, start
from bot.settings import Settings
from engine.drafts import RequestDraft
from engine.review_items import Campaign
from tests.fakes.clock import ManualClock
from tests.fakes.entitlements import MemoryEntitlements

ADMIN = "sam@example.com"
OWNERS = ("dora@example.com", "dan@example.com")
PEOPLE = ("alice", "erin", "bob", "frank", "gina", "hugo")

POLICY = """\
admins: {channel: C0ADMINS, users: [sam@example.com]}
directory:
  people:
    - {email: alice@example.com, name: Alice, manager: bob@example.com}
    - {email: erin@example.com, name: Erin, manager: bob@example.com}
    - {email: bob@example.com, name: Bob}
    - {email: frank@example.com, name: Frank, manager: bob@example.com}
    - {email: gina@example.com, name: Gina, manager: bob@example.com}
    - {email: hugo@example.com, name: Hugo, manager: bob@example.com}
    - {email: dora@example.com, name: Dora}
    - {email: dan@example.com, name: Dan}
    - {email: sam@example.com, name: Sam}
  groups:
    dba: [dora@example.com, dan@example.com]
connectors:
  groups: {type: slack_usergroups, identity: clearance-bot@example.com}
resources:
  - id: prod-db
    name: Production database
    risk: high
    owners: [group:dba]
    grant: {connector: groups, group: S0PROD}
    duration: {default: 1h, max: 4h}
    approval: [resource_owner]
    break_glass: {max: 1h, review_within: 24h}
  - id: wiki
    name: Wiki admin
    risk: low
    owners: [group:dba]
    grant: {connector: groups, group: S0WIKI}
    duration: {default: 1d, max: 30d}
    approval: auto
reviews:
  - id: quarterly
    reviewer: resource_owner
    every: 90d
    due: 7d
    on_no_decision: revoke
  - id: guarded
    resources: [prod-db]
    reviewer: resource_owner
    due: 7d
    max_revocations: 1
  - id: grants-only
    resources: [wiki]
    scope: [grants]
    reviewer: manager
    due: 3d
    on_no_decision: keep
"""


@dataclass
class ReviewWorld:
    components: Components
    groups: MemoryEntitlements
    clock: ManualClock
    database_url: str
    policy_path: Path

    async def drain(self) -> int:
        return await self.components.dispatcher.drain()

    async def grant(self, who: str, resource: str = "wiki", **draft: object) -> str:
        """A request that is granted through the real path (auto approval, provision)."""
        request = await self.components.clearance.submit(
            RequestDraft(
                requester=who,
                resource_id=resource,
                justification="Editing the runbooks for the migration",
                **draft,  # type: ignore[arg-type]
            )
        )
        await self.drain()
        return request.id

    async def start(self, review: str = "quarterly") -> Campaign:
        campaign = await self.components.reviews.start(review, ADMIN)
        await self.drain()
        return campaign


def member(name: str) -> str:
    return f"{name}@example.com"


@asynccontextmanager
async def replica(
    db_url: str, policy_path: Path, clock: ManualClock, groups: MemoryEntitlements
) -> AsyncIterator[Components]:
    """One process of Clearance on the database (its own engine and pool)."""
    settings = Settings(database_url=db_url, clearance_policy=policy_path)
    components = build(
        settings, clock=clock, factories={"slack_usergroups": lambda _name, _config: groups}
    )
    await start(components)
    try:
        yield components
    finally:
        await components.close()


@pytest.fixture
async def world(db_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[ReviewWorld]:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(POLICY)
    groups = MemoryEntitlements()
    async with replica(db_url, policy_path, clock, groups) as components:
        yield ReviewWorld(components, groups, clock, db_url, policy_path)
