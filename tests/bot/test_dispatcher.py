"""The dispatcher and its handlers over a real outbox, with an in-memory connector (and, for
a notification, a chat platform that records what it was sent).

The clock is a ManualClock: grants, reminders, backoff and expiry are checked against
exact times, and "later" is a call to ``advance`` or ``set``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlmodel import col

from bot.chat import Delivered
from bot.connectors import Connectors
from bot.dispatcher import Dispatcher
from bot.fulfilment import Fulfilment
from bot.notifier import Notifier
from bot.usecases import Clearance
from engine.access_request import Status
from engine.directory import Person
from engine.drafts import RequestDraft
from engine.effects import NotifyApprovers
from engine.effects import TimeoutAt as Probe
from engine.policy import Policy
from engine.ports import ConnectorFailure
from storage.chat_log import ChatLog
from storage.database import Database
from storage.outbox import Outbox, OutboxItem, outbox_item
from storage.repository import Store
from storage.tables import AuditRow, OutboxRow
from tests.fakes.clock import ManualClock
from tests.fakes.entitlements import MemoryEntitlements

ALICE = "alice@example.com"
GROUP = "S0DBADMIN"
GRANT_ATTEMPTS = 3
REVOKE_ALERT_EVERY = 2
FULFILMENT_KINDS = {"provision", "deprovision", "expire", "timeout"}


@pytest.fixture
def memory() -> MemoryEntitlements:
    return MemoryEntitlements()


@pytest.fixture
def dispatcher(
    clearance: Clearance,
    database: Database,
    clock: ManualClock,
    policy: Policy,
    memory: MemoryEntitlements,
) -> Dispatcher:
    connectors = Connectors({"slack_usergroups": lambda name, cfg: memory}, lambda: policy)
    fulfilment = Fulfilment(clearance, connectors)
    dispatcher = Dispatcher(
        Outbox(database), clock, on_give_up=fulfilment.on_give_up, worker="worker-a"
    )
    fulfilment.register(dispatcher, GRANT_ATTEMPTS, REVOKE_ALERT_EVERY)
    clearance.wake = dispatcher.wake
    return dispatcher


async def approved(clearance: Clearance, duration: str = "4h", requester: str = ALICE) -> str:
    request = await clearance.submit(
        RequestDraft(
            requester=requester,
            resource_id="prod-db-admin",
            justification="Investigating INC-42 on the primary cluster",
            ticket="INC-42",
            duration=duration,
        )
    )
    for approver in ("bob@example.com", "dora@example.com", "sam@example.com"):
        await clearance.decide(request.id, approver, "approve")
    return request.id


async def rows(
    database: Database, request_id: str | None = None, kind: str | None = None
) -> list[OutboxRow]:
    query = select(OutboxRow).order_by(col(OutboxRow.due_at), col(OutboxRow.id))
    if request_id is not None:
        query = query.where(col(OutboxRow.request_id) == request_id)
    if kind is not None:
        query = query.where(col(OutboxRow.kind) == kind)
    async with database.transaction() as session:
        return list((await session.execute(query)).scalars().all())


async def one_row(database: Database, request_id: str, kind: str) -> OutboxRow:
    found = await rows(database, request_id, kind)
    assert len(found) == 1, [(r.kind, r.status) for r in found]
    return found[0]


async def audit_actions(database: Database, request_id: str) -> list[str]:
    query = (
        select(AuditRow).where(col(AuditRow.request_id) == request_id).order_by(col(AuditRow.seq))
    )
    async with database.transaction() as session:
        return [r.action for r in (await session.execute(query)).scalars().all()]


def untouched(found: Sequence[OutboxRow]) -> bool:
    return all(r.status == "pending" and r.attempts == 0 and r.claimed_by is None for r in found)


# --- the whole life of a grant --------------------------------------------------------------


async def test_grant_reminders_and_expiry(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    clock: ManualClock,
    memory: MemoryEntitlements,
) -> None:
    rid = await approved(clearance, "4h")
    assert memory.memberships == set()  # nothing happens before the dispatcher runs

    granted_at = clock.advance(timedelta(seconds=42))
    assert await dispatcher.drain() == 1  # the provision row; everything else is later
    request = await clearance.get(rid)
    assert request.status is Status.ACTIVE
    assert memory.memberships == {(ALICE, GROUP)}
    assert [(c.op, c.principal, c.group) for c in memory.calls] == [("grant", ALICE, GROUP)]
    assert request.granted_at == granted_at
    assert request.expires_at == granted_at + timedelta(hours=4)
    expires_at = request.expires_at
    assert (await one_row(database, rid, "provision")).status == "done"
    assert [g.request_id for g in await clearance.store.active_grants("slack-groups", GROUP)] == [
        rid
    ]
    assert "granted" in await audit_actions(database, rid)

    reminders = await rows(database, rid, "remind")
    # The request is named by the row's column (rows() selects by it), not in the payload.
    assert [(r.due_at, r.payload) for r in reminders] == [
        (expires_at - timedelta(hours=1), '{"before": "1h"}'),
        (expires_at - timedelta(minutes=15), '{"before": "15m"}'),
    ]
    assert (await one_row(database, rid, "expire")).due_at == expires_at

    # A one-hour grant gets no "1h before" reminder: it would fire at the grant itself.
    short = await approved(clearance, "1h", requester="erin@example.com")
    assert await dispatcher.drain() == 1
    short_expiry = (await clearance.get(short)).expires_at
    assert short_expiry is not None
    assert [r.due_at for r in await rows(database, short, "remind")] == [
        short_expiry - timedelta(minutes=15)
    ]

    clock.set(expires_at - timedelta(seconds=1))
    assert await dispatcher.drain() == 2  # only the short grant: its expiry, then its removal
    assert (await clearance.get(short)).status is Status.EXPIRED
    assert (await clearance.get(rid)).status is Status.ACTIVE
    assert (ALICE, GROUP) in memory.memberships

    ended_at = clock.set(expires_at + timedelta(seconds=1))
    assert await dispatcher.drain() == 2  # expire, then the removal it queued
    request = await clearance.get(rid)
    assert request.status is Status.EXPIRED
    assert request.ended_at == ended_at and request.deprovisioned_at == ended_at
    assert (ALICE, GROUP) not in memory.memberships
    assert memory.calls_of("revoke", ok=True)[-1].principal == ALICE
    assert await clearance.store.active_grants() == []
    trail = await audit_actions(database, rid)
    assert trail[-3:] == ["granted", "expired", "access_removed"]

    # Kinds nobody registered (notifications, reminders) were never claimed or changed.
    assert set(dispatcher.routes) == FULFILMENT_KINDS
    others = [r for r in await rows(database) if r.kind not in FULFILMENT_KINDS]
    assert {r.kind for r in others} >= {"notify", "notify_approvers", "refresh_cards", "remind"}
    assert all(r.due_at <= clock.now() for r in others)  # due, and still left alone
    assert untouched(others)
    fulfilled = {(r.kind, r.status) for r in await rows(database) if r.kind in FULFILMENT_KINDS}
    # The stage timeouts are due 8h after each stage started: not yet.
    assert fulfilled == {
        ("provision", "done"),
        ("expire", "done"),
        ("deprovision", "done"),
        ("timeout", "pending"),
    }


# --- outages ---------------------------------------------------------------------------------


async def test_grant_retries_with_backoff_then_fails_and_alerts(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    clock: ManualClock,
    memory: MemoryEntitlements,
) -> None:
    memory.down = True
    rid = await approved(clearance)
    previous_due: datetime | None = None
    for attempt in range(1, GRANT_ATTEMPTS):
        assert await dispatcher.drain() == 1
        row = await one_row(database, rid, "provision")
        assert row.status == "pending" and row.attempts == attempt
        assert row.last_error is not None and "unreachable" in row.last_error
        delay = row.due_at - clock.now()
        base = timedelta(seconds=2) * 2 ** (attempt - 1)
        assert base * 0.5 <= delay <= base * 1.5, delay  # exponential backoff with jitter
        assert previous_due is None or row.due_at > previous_due
        previous_due = row.due_at
        assert await dispatcher.drain() == 0  # not due yet
        request = await clearance.get(rid)
        assert request.status is Status.PROVISIONING  # never reported as granted
        clock.set(row.due_at)

    # The last attempt, then the first try of the clean-up removal (the target is down).
    assert await dispatcher.drain() == 2
    row = await one_row(database, rid, "provision")
    assert row.status == "dead" and row.attempts == GRANT_ATTEMPTS
    request = await clearance.get(rid)
    assert request.status is Status.FAILED
    assert request.failure is not None and "unreachable" in request.failure
    alerts = await rows(database, rid, "notify_admins")
    assert any('"template": "request_failed"' in r.payload for r in alerts)
    assert "grant_failed" in await audit_actions(database, rid)
    assert len(memory.calls_of("grant", ok=False)) == GRANT_ATTEMPTS
    assert memory.calls_of("grant", ok=True) == []

    memory.down = False  # the outage ends: a failed request stays ungranted
    clock.advance(timedelta(days=1))
    await dispatcher.drain()
    assert memory.memberships == set()
    assert memory.calls_of("grant", ok=True) == []
    # The timed-out attempts might have landed: a clean-up removal ran once it could.
    assert (await one_row(database, rid, "deprovision")).status == "done"
    assert (await clearance.get(rid)).deprovisioned_at is not None

    # A failure retrying cannot fix (bad credentials) gives up at the first attempt; the
    # target refused the change, so there is nothing to take back.
    memory.down, memory.failure = True, ConnectorFailure.AUTH
    rid = await approved(clearance, requester="erin@example.com")
    assert await dispatcher.drain() == 1
    assert (await one_row(database, rid, "provision")).status == "dead"
    failed = await clearance.get(rid)
    assert failed.status is Status.FAILED and failed.deprovisioned_at is not None
    assert await rows(database, rid, "deprovision") == []
    assert (await audit_actions(database, rid)).count("grant_failed") == 1


async def test_removal_keeps_retrying_through_an_outage(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    clock: ManualClock,
    memory: MemoryEntitlements,
) -> None:
    rid = await approved(clearance, "1h")
    await dispatcher.drain()
    expires_at = (await clearance.get(rid)).expires_at
    assert expires_at is not None and memory.memberships == {(ALICE, GROUP)}

    memory.down = True
    clock.set(expires_at + timedelta(hours=6))  # e.g. the bot was down: overdue at start-up
    assert await dispatcher.drain() == 2  # expire succeeds, the removal fails
    request = await clearance.get(rid)
    assert request.status is Status.EXPIRED and request.deprovisioned_at is None

    attempts = GRANT_ATTEMPTS * 3  # well past any give-up limit
    for attempt in range(1, attempts + 1):
        row = await one_row(database, rid, "deprovision")
        assert row.status == "pending" and row.attempts == attempt, (row.status, row.attempts)
        assert row.due_at > clock.now()
        clock.set(row.due_at)
        assert await dispatcher.drain() == 1
    row = await one_row(database, rid, "deprovision")
    assert row.status == "pending"  # never buried
    assert (ALICE, GROUP) in memory.memberships
    alerts = [
        r for r in await rows(database, rid, "notify_admins") if "revoke_failing" in r.payload
    ]
    assert len(alerts) == (attempts + 1) // REVOKE_ALERT_EVERY
    assert (await audit_actions(database, rid)).count("job_failing") == len(alerts)

    memory.down = False
    clock.set(row.due_at)
    assert await dispatcher.drain() == 1
    row = await one_row(database, rid, "deprovision")
    assert row.status == "done" and row.attempts == attempts + 2
    request = await clearance.get(rid)
    assert request.deprovisioned_at == clock.now()
    assert memory.memberships == set()
    assert (await audit_actions(database, rid))[-1] == "access_removed"


async def test_removal_keeps_a_membership_another_grant_still_needs(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    clock: ManualClock,
    memory: MemoryEntitlements,
) -> None:
    short = await approved(clearance, "1h")
    long = await approved(clearance, "4h")
    assert await dispatcher.drain() == 2
    assert memory.memberships == {(ALICE, GROUP)}
    assert len(await clearance.store.active_grants("slack-groups", GROUP)) == 2

    clock.advance(timedelta(minutes=10))
    returned = await clearance.revoke(short, ALICE)  # "I'm done" from the requester
    assert returned.status is Status.REVOKED
    assert await dispatcher.drain() == 1
    short_request = await clearance.get(short)
    assert short_request.deprovisioned_at == clock.now()  # this access has ended ...
    assert memory.memberships == {(ALICE, GROUP)}  # ... but the other grant still needs it
    assert memory.calls_of("revoke") == []
    assert [g.request_id for g in await clearance.store.active_grants()] == [long]

    long_expiry = (await clearance.get(long)).expires_at
    assert long_expiry is not None
    clock.set(long_expiry)
    assert await dispatcher.drain() == 3  # short's stale expiry timer, long's expiry, removal
    assert (await clearance.get(short)).status is Status.REVOKED
    assert (await clearance.get(long)).status is Status.EXPIRED
    assert memory.memberships == set()
    assert len(memory.calls_of("revoke", ok=True)) == 1


async def test_a_revoke_while_the_grant_is_in_flight_keeps_another_grants_membership(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    memory: MemoryEntitlements,
) -> None:
    long = await approved(clearance, "4h")
    assert await dispatcher.drain() == 1
    short = await approved(clearance, "1h")

    async def requester_returns_it() -> None:
        await clearance.revoke(short, ALICE)

    memory.during_grant = requester_returns_it
    await dispatcher.drain()
    assert memory.during_grant is None  # the revoke really landed mid-grant
    short_request = await clearance.get(short)
    assert short_request.status is Status.REVOKED and short_request.granted_at is None
    assert short_request.deprovisioned_at is not None
    assert (await clearance.get(long)).status is Status.ACTIVE
    assert memory.memberships == {(ALICE, GROUP)}  # the active grant keeps its access
    assert memory.calls_of("revoke") == []


async def test_a_removal_keeps_the_membership_a_grant_under_way_just_added(
    clearance: Clearance,
    dispatcher: Dispatcher,
    database: Database,
    policy: Policy,
    memory: MemoryEntitlements,
) -> None:
    old = await approved(clearance, "4h")
    assert await dispatcher.drain() == 1
    new = await approved(clearance, "1h")
    # Another replica's worker, removing the old grant while the new one is in flight.
    other = Fulfilment(
        clearance, Connectors({"slack_usergroups": lambda name, cfg: memory}, lambda: policy)
    )

    async def old_is_returned_and_removed_meanwhile() -> None:
        await clearance.revoke(old, ALICE)
        [row] = await rows(database, old, "deprovision")
        # The row parses to the Deprovision it holds; mypy cannot see the kind.
        await other.deprovision(outbox_item(row))  # type: ignore[arg-type]

    memory.during_grant = old_is_returned_and_removed_meanwhile
    await dispatcher.drain()
    assert memory.during_grant is None  # the removal really ran mid-grant
    assert (await clearance.get(old)).deprovisioned_at is not None
    assert (await clearance.get(new)).status is Status.ACTIVE
    assert memory.memberships == {(ALICE, GROUP)}  # the new grant has its membership
    assert memory.calls_of("revoke") == []


# --- several dispatchers ----------------------------------------------------------------------


async def test_two_dispatchers_run_each_row_exactly_once(
    db_url: str, database: Database, clock: ManualClock
) -> None:
    now = clock.now()
    due = 300
    # Test jobs: rows of a real kind (so they parse), run by a handler that only counts.
    later = [Probe(f"R-LATER{i}", due_at=now + timedelta(minutes=1)) for i in range(20)]
    store = Store(database)
    await store.enqueue([Probe(f"R-PROBE{i}") for i in range(due)], now)
    await store.enqueue(later, now)
    await store.enqueue([Probe("R-OTHER")], now)
    async with database.transaction() as session:
        await session.execute(
            OutboxRow.__table__.update()  # type: ignore[attr-defined]
            .where(col(OutboxRow.request_id) == "R-OTHER")
            .values(kind="not_mine")
        )

    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()

    def handler_for(worker: str):  # type: ignore[no-untyped-def]
        async def handle(item: OutboxItem[Probe]) -> None:
            runs[item.id] += 1
            by_worker[worker] += 1
            await asyncio.sleep(0)  # let the other dispatcher in mid-batch

        return handle

    second = Database(db_url)
    try:
        dispatchers = []
        for worker, db in (("worker-a", database), ("worker-b", second)):
            d = Dispatcher(Outbox(db), clock, batch=3, concurrency=8, worker=worker)
            d.register(Probe.kind, handler_for(worker))
            dispatchers.append(d)
        totals = await asyncio.gather(*(d.drain() for d in dispatchers))
    finally:
        await second.dispose()

    assert sum(totals) == due
    assert len(runs) == due and set(runs.values()) == {1}, runs.most_common(3)
    assert by_worker["worker-a"] > 0 and by_worker["worker-b"] > 0, by_worker
    probes = await rows(database, kind=Probe.kind)
    done = [r for r in probes if r.status == "done"]
    assert {r.id for r in done} == set(runs)
    assert all(r.attempts == 1 for r in done)
    assert {r.claimed_by for r in done} == {"worker-a", "worker-b"}
    pending = [r for r in probes if r.status != "done"]
    assert len(pending) == len(later) and untouched(pending)
    assert untouched(await rows(database, kind="not_mine"))


# --- notifications ----------------------------------------------------------------------------


class RecordingChat:
    """A chat platform that reaches everyone and keeps what it was sent (the Chat port)."""

    platform = "slack"

    def __init__(self) -> None:
        self.direct: list[tuple[str, dict[str, Any]]] = []

    def reaches(self, person: Person) -> bool:
        return True

    async def send_direct(self, person: Person, message: dict[str, Any]) -> Delivered:
        self.direct.append((person.email, message))
        return Delivered(f"D-{person.email}", str(len(self.direct)))

    async def update(self, channel: str, message_id: str, message: dict[str, Any]) -> None:
        pass

    async def post_admins(self, message: dict[str, Any]) -> Delivered | None:
        return None


async def test_an_approval_job_reads_the_requesters_history_once(
    clearance: Clearance, database: Database
) -> None:
    draft = RequestDraft(
        requester=ALICE,
        resource_id="prod-db-admin",
        justification="Investigating INC-42 on the primary cluster",
        ticket="INC-42",
        duration="4h",
    )
    for _ in range(2):
        await clearance.submit(draft)
    request = await clearance.submit(draft)
    await clearance.decide(request.id, "bob@example.com", "approve")
    [item] = [
        i
        for i in map(outbox_item, await rows(database, request.id, "notify_approvers"))
        if isinstance(i.effect, NotifyApprovers) and i.effect.stage == 1
    ]
    chat = RecordingChat()
    notifier = Notifier(clearance, [chat], ChatLog(database))

    history_reads = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal history_reads
        history_reads += "requests.requester =" in statement

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await notifier.notify_approvers(item)  # type: ignore[arg-type]
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)

    # Two approvers, one card each, both telling of the two earlier requests ...
    assert [email for email, _ in chat.direct] == ["dora@example.com", "dan@example.com"]
    assert all(
        "asked for this 2 times in the last 90 days." in json.dumps(m) for _, m in chat.direct
    )
    assert history_reads == 1  # ... read once for the job, not once per card


async def test_an_approval_card_counts_90_days_back_and_says_when_the_last_one_ended(
    clearance: Clearance, database: Database, clock: ManualClock
) -> None:
    draft = RequestDraft(
        requester=ALICE,
        resource_id="prod-db-admin",
        justification="Investigating INC-42 on the primary cluster",
        ticket="INC-42",
    )
    start = clock.now()
    clock.set(start - timedelta(days=100))  # too long ago to count, and it ended long ago
    await clearance.cancel((await clearance.submit(draft)).id, ALICE)
    clock.set(start - timedelta(days=10))
    recent = await clearance.submit(draft)
    ended = clock.advance(timedelta(minutes=5))
    await clearance.cancel(recent.id, ALICE)
    clock.set(start - timedelta(days=1))
    await clearance.submit(draft)  # still waiting: counted, but it has not ended
    await clearance.submit(RequestDraft(ALICE, "staging-db-read", "Another resource entirely"))
    clock.set(start)
    request = await clearance.submit(draft)
    [item] = [
        i
        for i in map(outbox_item, await rows(database, request.id, "notify_approvers"))
        if isinstance(i.effect, NotifyApprovers)
    ]
    chat = RecordingChat()
    await Notifier(clearance, [chat], ChatLog(database)).notify_approvers(item)  # type: ignore[arg-type]
    [(_, card)] = chat.direct
    assert (
        "asked for this 2 times in the last 90 days; the last one ended "
        f"<!date^{int(ended.timestamp())}^" in json.dumps(card)
    )
