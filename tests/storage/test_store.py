"""The request store on SQLite and PostgreSQL: schema, round trips, atomic saves, locking."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.pool import NullPool

from engine import access, lifecycle
from engine.access_request import AccessRequest, Status
from engine.audit import GENESIS_HASH
from engine.directory import DirectorySnapshot, snapshot_from_policy
from engine.drafts import RequestDraft
from engine.policy import Policy
from engine.transitions import Transition
from storage import audit_log
from storage.audit_log import AuditLog
from storage.database import Database
from storage.migrate import current_revision, head_revision, sync_url
from storage.repository import StaleRequest, Store
from storage.tables import OutboxRow, metadata
from tests.fakes.clock import ManualClock

TABLES = {"requests", "decisions", "grants", "audit_events", "audit_head", "outbox"}
ALICE = "alice@example.com"
CHAIN = ("bob@example.com", "dora@example.com", "sam@example.com")


def prod_draft(requester: str = ALICE, duration: str = "2h") -> RequestDraft:
    return RequestDraft(
        requester=requester,
        resource_id="prod-db-admin",
        justification="Investigating INC-42 on the primary cluster",
        ticket="INC-42",
        duration=duration,
    )


async def counts(database: Database) -> dict[str, int]:
    """Rows per table, to prove that something was (or was not) written."""
    async with database.transaction() as session:
        return {
            table: int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
            for table in sorted(TABLES)
        }


def datetimes_in(value: object) -> Iterator[datetime]:
    """Every datetime inside a request, its stages and its decisions."""
    if isinstance(value, datetime):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from datetimes_in(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from datetimes_in(item)


class Flow:
    """Drives one request through the engine and the store, as the use cases would."""

    def __init__(self, store: Store, policy: Policy, clock: ManualClock) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.directory: DirectorySnapshot = snapshot_from_policy(policy)

    async def save(self, transition: Transition) -> AccessRequest:
        return await self.store.save(transition, self.clock.now())

    async def submit(self, request_id: str, draft: RequestDraft | None = None) -> AccessRequest:
        t = lifecycle.submit(
            draft or prod_draft(), self.policy, self.directory, self.clock.now(), request_id
        )
        return await self.save(t)

    def decide(self, request: AccessRequest, approver: str, outcome: str = "approve") -> Transition:
        return lifecycle.decide(
            request,
            self.policy,
            self.directory,
            approver,
            outcome,  # type: ignore[arg-type]
            self.clock.now(),
            reason=f"checked by {approver}",
        )

    async def approve_all(self, request: AccessRequest) -> AccessRequest:
        for approver in CHAIN:
            request = await self.save(self.decide(request, approver))
        return request

    async def approve_rest(self, request: AccessRequest) -> AccessRequest:
        for approver in CHAIN[len(request.stages) - 1 :]:
            request = await self.save(self.decide(request, approver))
        return request

    async def grant(self, request: AccessRequest) -> AccessRequest:
        version = self.policy.version
        request = await self.save(access.provisioning_started(request, self.clock.now(), version))
        resource = self.policy.resource(request.resource_id)
        assert resource is not None
        return await self.save(
            access.grant_confirmed(request, self.clock.now(), version, resource.reminders)
        )


@pytest.fixture
def flow(database: Database, policy: Policy, clock: ManualClock) -> Flow:
    return Flow(Store(database), policy, clock)


# --- schema ------------------------------------------------------------------------------


def test_migrations_create_every_table_and_match_the_models(db_url: str) -> None:
    engine = create_engine(sync_url(db_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
            assert diff == [], f"models and migrations disagree: {diff}"
            head = conn.execute(text("SELECT id, seq, hash FROM audit_head")).all()
            assert [tuple(r) for r in head] == [(1, 0, GENESIS_HASH)]
            if conn.dialect.name == "sqlite":
                # Already WAL before any process serves from it: two first connections
                # racing to switch a fresh file fail with "database is locked".
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    assert current_revision(db_url) == head_revision()


# --- round trip ---------------------------------------------------------------------------


async def test_request_round_trips_through_every_step(
    flow: Flow, database: Database, clock: ManualClock
) -> None:
    clock.advance(timedelta(microseconds=123457))  # sub-second precision must survive
    request = await flow.submit("R-ROUNDTRIP")
    assert request.version == 1
    assert await flow.store.load(request.id) == request

    for approver in CHAIN:
        clock.advance(timedelta(minutes=7, microseconds=11))
        request = await flow.save(flow.decide(request, approver))
        loaded = await flow.store.load(request.id)
        assert loaded == request
    assert request.status is Status.APPROVED
    assert [(d.stage, d.approver) for d in request.decisions] == [
        (0, "bob@example.com"),
        (1, "dora@example.com"),
        (2, "sam@example.com"),
    ]

    clock.advance(timedelta(seconds=3))
    request = await flow.grant(request)
    loaded = await flow.store.load(request.id)
    assert loaded == request
    assert loaded is not None
    assert loaded.status is Status.ACTIVE
    assert loaded.version == 6  # submit, three decisions, provisioning, grant
    assert loaded.granted_at == clock.now()
    assert loaded.expires_at == clock.now() + timedelta(hours=2)
    assert len(loaded.stages) == 3
    assert [s.approvers for s in loaded.stages] == [
        ("bob@example.com",),
        ("dora@example.com", "dan@example.com"),
        ("sam@example.com", "sara@example.com"),
    ]
    found = list(datetimes_in(loaded))
    assert len(found) == 9  # created, 3 stage starts, 3 decisions, granted, expires
    for value in found:
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value
    grants = await flow.store.active_grants()
    assert [(g.request_id, g.principal, g.expires_at) for g in grants] == [
        (request.id, ALICE, loaded.expires_at)
    ]
    assert (await counts(database))["decisions"] == 3


# --- atomicity ----------------------------------------------------------------------------


async def test_a_failing_save_writes_nothing_at_all(
    flow: Flow, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = AuditLog(database)
    existing = await flow.submit("R-EXISTING")
    before, head_before = await counts(database), await audit.head()
    seen: list[int] = []

    async def append_then_fail(session, records, at):  # type: ignore[no-untyped-def]
        # Push the request, decision and outbox rows into the transaction first, so the
        # rollback (not a lucky ordering) is what keeps them out.
        await session.flush()
        seen.append(
            int((await session.execute(select(func.count()).select_from(OutboxRow))).scalar_one())
        )
        raise RuntimeError("disk full while sealing the audit chain")

    monkeypatch.setattr(audit_log, "append", append_then_fail)
    new = lifecycle.submit(
        prod_draft(), flow.policy, flow.directory, flow.clock.now(), "R-NEVERSAVED"
    )
    with pytest.raises(RuntimeError, match="disk full"):
        await flow.save(new)
    with pytest.raises(RuntimeError, match="disk full"):
        await flow.save(flow.decide(existing, "bob@example.com"))
    monkeypatch.undo()

    assert len(seen) == 2 and all(n > before["outbox"] for n in seen)  # rows were in flight
    assert await counts(database) == before
    assert await audit.head() == head_before
    assert await flow.store.load("R-NEVERSAVED") is None
    assert await flow.store.load(existing.id) == existing  # same version, no decision

    # The store still works afterwards, and from the state before the failure.
    saved = await flow.save(flow.decide(existing, "bob@example.com"))
    assert saved.version == 2
    assert (await counts(database))["decisions"] == 1


# --- optimistic locking -------------------------------------------------------------------


async def test_two_saves_from_the_same_version_only_the_first_lands(
    flow: Flow, database: Database
) -> None:
    request = await flow.submit("R-LOCKING")
    request = await flow.save(flow.decide(request, "bob@example.com"))
    first = await flow.store.load(request.id)
    second = await flow.store.load(request.id)
    assert first is not None and second is not None and first == second

    await flow.save(flow.decide(first, "dora@example.com"))
    before = await counts(database)
    with pytest.raises(StaleRequest):
        await flow.save(flow.decide(second, "dan@example.com"))
    assert await counts(database) == before

    stored = await flow.store.load(request.id)
    assert stored is not None
    assert [(d.stage, d.approver) for d in stored.decisions if d.stage == 1] == [
        (1, "dora@example.com")
    ]
    assert stored.version == first.version + 1
    assert len(stored.stages) == 3  # the admins' stage started once


async def test_a_replayed_decision_and_a_reused_id_are_stale(
    flow: Flow, database: Database
) -> None:
    request = await flow.submit("R-REPLAY")
    decided = flow.decide(request, "bob@example.com")
    await flow.save(decided)
    before = await counts(database)
    with pytest.raises(StaleRequest):
        await flow.save(decided)  # a platform retry of the very same transition
    with pytest.raises(StaleRequest):
        await flow.submit("R-REPLAY")  # an id collision on submit
    assert await counts(database) == before


# --- queries ------------------------------------------------------------------------------


async def test_find_awaiting_and_active_grants(flow: Flow, clock: ManualClock) -> None:
    alice_prod = await flow.submit("R-ALICEPROD")
    clock.advance(timedelta(minutes=1))
    erin_prod = await flow.submit("R-ERINPROD", prod_draft("erin@example.com"))
    clock.advance(timedelta(minutes=1))
    staging = await flow.submit(
        "R-ALICESTAGE",
        RequestDraft(ALICE, "staging-db-read", "Reading staging rows for a bug", duration="1h"),
    )
    assert staging.status is Status.APPROVED

    assert [r.id for r in await flow.store.find()] == [staging.id, erin_prod.id, alice_prod.id]
    assert [r.id for r in await flow.store.find([Status.PENDING])] == [erin_prod.id, alice_prod.id]
    assert [r.id for r in await flow.store.find(requester="Alice@Example.com")] == [
        staging.id,
        alice_prod.id,
    ]
    assert [r.id for r in await flow.store.find(limit=1)] == [staging.id]
    assert await flow.store.find([Status.ACTIVE]) == []

    assert {r.id for r in await flow.store.awaiting("bob@example.com")} == {
        alice_prod.id,
        erin_prod.id,
    }
    assert await flow.store.awaiting("dora@example.com") == []
    alice_prod = await flow.save(flow.decide(alice_prod, "bob@example.com"))
    assert [r.id for r in await flow.store.awaiting("BOB@example.com")] == [erin_prod.id]
    assert [r.id for r in await flow.store.awaiting("dora@example.com")] == [alice_prod.id]
    assert [r.id for r in await flow.store.awaiting("dan@example.com")] == [alice_prod.id]
    assert await flow.store.awaiting(ALICE) == []

    assert await flow.store.active_grants() == []
    staging = await flow.grant(staging)
    alice_prod = await flow.grant(await flow.approve_rest(alice_prod))
    grants = await flow.store.active_grants()
    assert {g.request_id for g in grants} == {staging.id, alice_prod.id}
    only = await flow.store.active_grants("slack-groups", "S0DBADMIN")
    assert [(g.request_id, g.target_group) for g in only] == [(alice_prod.id, "S0DBADMIN")]
    assert await flow.store.active_grants("other-connector") == []

    clock.advance(timedelta(hours=2))
    await flow.save(access.expire(staging, clock.now(), flow.policy.version))
    assert [g.request_id for g in await flow.store.active_grants()] == [alice_prod.id]
