"""A review's Revoke lands on the real target system: every connector (slapd, the SCIM
server, the Slack API) loses the member a reviewer revoked, and keeps the one kept."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.static.directory import StaticDirectory
from bot.connectors import Connectors
from bot.dispatcher import Dispatcher
from bot.policy_source import PolicySource
from bot.reviews import Reviews
from bot.usecases import Clearance
from engine.policy_loading import parse_policy
from storage.audit_log import AuditLog
from storage.database import Database
from storage.outbox import Outbox
from storage.repository import Store
from storage.reviews import ReviewStore

# The contract suite's fixture: one case per real connector (slapd, SCIM server, Slack API).
from tests.adapters.test_connector_contract import Case, case  # noqa: F401
from tests.fakes.clock import ManualClock

KEPT, REVOKED = "alice@example.com", "bob@example.com"


def policy_for(group: str) -> str:
    return f"""
admins: {{users: [adm@example.com]}}
directory:
  people:
    - {{email: adm@example.com, name: Adm}}
    - {{email: rev@example.com, name: Rev}}
connectors:
  target: {{type: target}}
resources:
  - id: app
    name: App
    risk: low
    owners: [rev@example.com]
    grant: {{connector: target, group: "{group}"}}
    duration: {{default: 1h, max: 4h}}
    approval: auto
reviews:
  - id: app-review
    reviewer: resource_owner
"""


async def test_a_reviewed_revocation_removes_the_member_from_the_target(
    case: Case,  # noqa: F811 - the imported fixture
    database: Database,
) -> None:
    group = case.new_group()
    for member in (KEPT, REVOKED):
        await case.connector.grant(member, group)
    policy = parse_policy(policy_for(group), "policy.yaml")
    clock = ManualClock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    clearance = Clearance(
        Store(database),
        AuditLog(database),
        PolicySource.fixed(policy),
        StaticDirectory(lambda: policy),
        clock,
    )
    connectors = Connectors({"target": lambda name, cfg: case.connector}, lambda: policy)
    dispatcher = Dispatcher(Outbox(database), clock, worker="review-test")
    reviews = Reviews(clearance, ReviewStore(database), connectors)
    reviews.register(dispatcher, 5)

    campaign = await reviews.start("app-review", "adm@example.com")
    items = {i.access.principal: i for i in await reviews.store.items(campaign.id)}
    assert set(items) == {KEPT, REVOKED} and items[REVOKED].access.holding == "member"
    await reviews.decide(campaign.id, items[KEPT].index, "rev@example.com", "keep")
    await reviews.decide(campaign.id, items[REVOKED].index, "rev@example.com", "revoke", "left")
    await dispatcher.drain()

    assert case.actual(group) == {KEPT}
    assert (await reviews.item(campaign.id, items[REVOKED].index)).outcome == "revoked"
    assert (await reviews.get(campaign.id)).status == "closed"
