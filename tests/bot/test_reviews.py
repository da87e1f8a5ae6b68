"""Access-review use cases through the real store on SQLite and PostgreSQL: a campaign from
live data, decisions that remove access through the connector, races, the due time and
break-glass reviews, with the audit chain intact."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select
from sqlmodel import col

from adapters.static.directory import StaticDirectory
from bot.connectors import Connectors
from bot.dispatcher import Dispatcher
from bot.fulfilment import Fulfilment
from bot.policy_source import PolicySource
from bot.reviews import Reviews
from bot.usecases import Clearance
from engine.access_request import Status
from engine.audit import verify_chain
from engine.drafts import RequestDraft
from engine.policy import Policy
from engine.policy_loading import parse_policy
from engine.refusals import Refused
from storage.audit_log import AuditLog
from storage.database import Database
from storage.outbox import Outbox
from storage.repository import Store
from storage.reviews import ReviewStore
from storage.tables import AuditRow, OutboxRow
from tests.conftest import EXAMPLE_POLICY
from tests.fakes.clock import ManualClock
from tests.fakes.entitlements import MemoryEntitlements

ALICE, ERIN = "alice@example.com", "erin@example.com"
GROUP = "S0DBADMIN"
REVIEWS = [
    {
        "id": "prod-quarterly",
        "resources": ["prod-db-admin"],
        "reviewer": "resource_owner",
        "due": "7d",
        "on_no_decision": "revoke",
    }
]


@pytest.fixture
def review_policy() -> Policy:
    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    data["reviews"] = REVIEWS
    return parse_policy(yaml.safe_dump(data), "policy.yaml")


class World:
    def __init__(self, database: Database, policy: Policy, clock: ManualClock) -> None:
        self.memory = MemoryEntitlements()
        self.clearance = Clearance(
            Store(database),
            AuditLog(database),
            PolicySource.fixed(policy),
            StaticDirectory(lambda: policy),
            clock,
        )
        connectors = Connectors({"slack_usergroups": lambda name, cfg: self.memory}, lambda: policy)
        fulfilment = Fulfilment(self.clearance, connectors)
        self.dispatcher = Dispatcher(
            Outbox(database), clock, on_give_up=fulfilment.on_give_up, worker="reviews"
        )
        fulfilment.register(self.dispatcher, 3, 2)
        self.reviews = Reviews(self.clearance, ReviewStore(database), connectors)
        self.reviews.register(self.dispatcher, 2)
        self.clock = clock
        self.database = database

    async def granted(self, requester: str = ALICE) -> str:
        request = await self.clearance.submit(
            RequestDraft(
                requester=requester,
                resource_id="prod-db-admin",
                justification="Investigating INC-42 on the primary cluster",
                ticket="INC-42",
                duration="4h",
            )
        )
        for approver in ("bob@example.com", "dora@example.com", "sam@example.com"):
            await self.clearance.decide(request.id, approver, "approve")
        await self.dispatcher.drain()
        return request.id

    async def actions(self) -> list[str]:
        async with self.database.transaction() as session:
            rows = (await session.execute(select(AuditRow).order_by(col(AuditRow.seq)))).scalars()
            return [r.action for r in rows]

    async def chain_ok(self) -> bool:
        audit = self.clearance.audit
        events = [e async for e in audit.events()]
        return verify_chain(events, await audit.head()).ok


@pytest.fixture
async def world(database: Database, review_policy: Policy, clock: ManualClock) -> World:
    return World(database, review_policy, clock)


async def test_a_campaign_reviews_grants_and_bare_members_and_removes_what_is_revoked(
    world: World,
) -> None:
    rid = await world.granted()
    world.memory.memberships.add((ERIN, GROUP))  # in the group without a grant
    campaign = await world.reviews.start("prod-quarterly", "sam@example.com")
    items = await world.reviews.store.items(campaign.id)
    assert [(i.access.principal, i.access.holding) for i in items] == [
        (ALICE, "grant"),
        (ERIN, "member"),
    ]
    grant = items[0]
    assert grant.access.request_id == rid and grant.access.approvers == (
        "bob@example.com",
        "dora@example.com",
        "sam@example.com",
    )
    assert grant.reviewers == ("dora@example.com", "dan@example.com")
    with pytest.raises(Refused) as again:
        await world.reviews.start("prod-quarterly", "sam@example.com")
    assert again.value.code == "review_already_open"

    await world.reviews.decide(campaign.id, 1, "dan@example.com", "revoke", "left the team")
    await world.reviews.decide(campaign.id, 0, "dora@example.com", "revoke", "no longer on call")
    await world.dispatcher.drain()
    assert (ERIN, GROUP) not in world.memory.memberships
    assert (ALICE, GROUP) not in world.memory.memberships
    request = await world.clearance.get(rid)
    assert request.status is Status.REVOKED and request.deprovisioned_at is not None
    assert request.end_reason == f"access review {campaign.id}: no longer on call"
    done = await world.reviews.store.items(campaign.id)
    assert [i.outcome for i in done] == ["revoked", "revoked"]
    assert (await world.reviews.get(campaign.id)).status == "closed"
    actions = await world.actions()
    assert actions.count("review_item_decided") == 2
    assert actions.count("review_access_removed") == 2 and actions[-1] != "review_started"
    assert "review_closed" in actions and await world.chain_ok()


async def test_two_reviewers_on_one_item_at_once_give_one_decision(world: World) -> None:
    await world.granted()
    campaign = await world.reviews.start("prod-quarterly", "sam@example.com")
    results = await asyncio.gather(
        world.reviews.decide(campaign.id, 0, "dora@example.com", "keep", "still on call"),
        world.reviews.decide(campaign.id, 0, "dan@example.com", "revoke", "not needed"),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(refused) == 1 and refused[0].code == "review_item_decided"
    assert (await world.actions()).count("review_item_decided") == 1
    assert await world.chain_ok()


async def test_strangers_and_double_clicks_change_nothing(world: World) -> None:
    await world.granted()
    campaign = await world.reviews.start("prod-quarterly", "sam@example.com")
    for actor, code in (("erin@example.com", "not_reviewer"), (ALICE, "self_review")):
        with pytest.raises(Refused) as info:
            await world.reviews.decide(campaign.id, 0, actor, "keep", "fine")
        assert info.value.code == code
    assert (await world.reviews.item(campaign.id, 0)).undecided
    await world.reviews.decide(campaign.id, 0, "dora@example.com", "keep", "still on call")
    with pytest.raises(Refused) as info:
        await world.reviews.decide(campaign.id, 0, "dora@example.com", "keep", "still on call")
    assert info.value.code in ("review_item_decided", "review_closed")
    with pytest.raises(Refused) as unknown:
        await world.reviews.decide("C-NOPE", 0, "dora@example.com", "keep", "x")
    assert unknown.value.code == "unknown_campaign"


async def test_at_the_due_time_undecided_access_is_revoked(world: World) -> None:
    await world.granted()
    campaign = await world.reviews.start("prod-quarterly", "sam@example.com")
    world.clock.advance(timedelta(days=7, minutes=1))
    await world.dispatcher.drain()
    item = await world.reviews.item(campaign.id, 0)
    assert item.defaulted and item.verdict == "revoke" and item.outcome == "revoked"
    assert (ALICE, GROUP) not in world.memory.memberships
    assert (await world.reviews.get(campaign.id)).status == "closed"
    assert "review_defaulted" in await world.actions() and await world.chain_ok()


async def test_break_glass_access_opens_its_review_for_the_owners(world: World) -> None:
    request = await world.clearance.submit(
        RequestDraft(
            requester=ALICE,
            resource_id="prod-db-admin",
            justification="Primary is down, INC-77, paging did not reach anyone",
            ticket="INC-77",
            break_glass=True,
        )
    )
    await world.dispatcher.drain()
    assert (ALICE, GROUP) in world.memory.memberships
    campaign = await world.reviews.store.campaign_for_request(request.id)
    assert campaign is not None and campaign.kind == "break_glass"
    item = await world.reviews.item(campaign.id, 0)
    assert ALICE not in item.reviewers and set(item.reviewers) == {
        "dora@example.com",
        "dan@example.com",
    }
    await world.dispatcher.drain()  # a retried job opens no second review
    assert len(await world.reviews.store.campaigns(open_only=False)) == 1
    await world.reviews.decide(campaign.id, 0, "dan@example.com", "revoke", "no incident found")
    assert (await world.reviews.get(campaign.id)).status == "closed"
    assert await world.chain_ok()


async def test_a_revocation_that_keeps_failing_is_retried_and_the_admins_hear(
    world: World,
) -> None:
    world.memory.memberships.add((ERIN, GROUP))
    campaign = await world.reviews.start("prod-quarterly", "sam@example.com")
    world.memory.down = True
    await world.reviews.decide(campaign.id, 0, "dora@example.com", "revoke", "left the team")
    for _ in range(3):  # every retry falls due later: move the clock past its backoff
        await world.dispatcher.drain()
        world.clock.advance(timedelta(hours=1))
    assert (ERIN, GROUP) in world.memory.memberships  # still there: it never gave up ...
    assert (await world.reviews.item(campaign.id, 0)).outcome == "revoking"
    async with world.database.transaction() as session:
        alerts = (
            (
                await session.execute(
                    select(OutboxRow).where(col(OutboxRow.kind) == "notify_admins_review")
                )
            )
            .scalars()
            .all()
        )
    assert any("review_job_failing" in a.payload for a in alerts)  # ... and said so
    assert "job_failing" in await world.actions()
    world.memory.down = False
    world.clock.advance(timedelta(hours=1))
    await world.dispatcher.drain()
    assert (ERIN, GROUP) not in world.memory.memberships
    assert (await world.reviews.item(campaign.id, 0)).outcome == "revoked"
