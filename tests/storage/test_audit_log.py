"""The stored audit chain verifies, and any edit, deletion or reordering in SQL is caught."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from bot.usecases import Clearance
from engine.audit import AuditEvent, ChainReport, verify_chain
from engine.drafts import RequestDraft
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from storage.audit_log import AuditLog
from storage.database import Database
from tests.fakes.clock import ManualClock

CHAIN = ("bob@example.com", "dora@example.com", "sam@example.com")


async def events_of(audit: AuditLog) -> list[AuditEvent]:
    return [e async for e in audit.events(batch=4)]  # small batches: paging is exercised too


async def verify(audit: AuditLog) -> ChainReport:
    return verify_chain(await events_of(audit), await audit.head())


async def approved_request_trail(clearance: Clearance) -> str:
    request = await clearance.submit(
        RequestDraft(
            requester="alice@example.com",
            resource_id="prod-db-admin",
            justification="Rotating credentials after INC-7",
            ticket="INC-7",
        )
    )
    for approver in CHAIN:
        await clearance.decide(request.id, approver, "approve")
    await clearance.record(
        AuditRecord("policy_loaded", SYSTEM_ACTOR, None, None, clearance.policy.version, {})
    )
    return request.id


async def sql(database: Database, *statements: str) -> None:
    async with database.transaction() as session:
        for statement in statements:
            await session.execute(text(statement))


async def test_events_written_by_use_cases_verify(clearance: Clearance, clock: ManualClock) -> None:
    request_id = await approved_request_trail(clearance)
    events = await events_of(clearance.audit)
    actions = [e.action for e in events]
    assert actions == [
        "requested",
        "stage_started",
        "approved",
        "stage_completed",
        "stage_started",
        "approved",
        "stage_completed",
        "stage_started",
        "approved",
        "stage_completed",
        "fully_approved",
        "policy_loaded",
    ]
    assert [e.seq for e in events] == list(range(1, 13))
    assert all(e.request_id == request_id for e in events[:-1])
    assert all(e.at == clock.now() for e in events)
    report = verify_chain(events, await clearance.audit.head())
    assert report.ok and report.checked == 12
    assert await clearance.audit.head() == (12, events[-1].hash)
    assert [e.seq async for e in clearance.audit.events(request_id=request_id)] == list(
        range(1, 12)
    )


COLUMNS = (
    "seq, at, action, actor, request_id, resource_id, policy_version, details, prev_hash, hash"
)
SELECT_ALL = f"SELECT {COLUMNS} FROM audit_events ORDER BY seq"
INSERT_ROW = (
    f"INSERT INTO audit_events ({COLUMNS}) VALUES (:seq, :at, :action, :actor, :request_id, "
    ":resource_id, :policy_version, :details, :prev_hash, :hash)"
)

TAMPERS: dict[str, tuple[Callable[[Database], Awaitable[None]], int]] = {
    "edit_details": (
        lambda db: sql(
            db,
            'UPDATE audit_events SET details = \'{"reason":"looked fine to me"}\' WHERE seq = 6',
        ),
        6,
    ),
    "edit_actor": (
        lambda db: sql(db, "UPDATE audit_events SET actor = 'mallory@example.com' WHERE seq = 3"),
        3,
    ),
    "delete_middle": (lambda db: sql(db, "DELETE FROM audit_events WHERE seq = 5"), 5),
    "swap_seq": (
        lambda db: sql(
            db,
            "UPDATE audit_events SET seq = -1 WHERE seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE seq = 8",
            "UPDATE audit_events SET seq = 8 WHERE seq = -1",
        ),
        4,
    ),
    "delete_last": (lambda db: sql(db, "DELETE FROM audit_events WHERE seq = 12"), 12),
}


async def test_tampering_in_sql_is_detected_at_the_first_bad_event(
    clearance: Clearance, database: Database
) -> None:
    await approved_request_trail(clearance)
    assert (await verify(clearance.audit)).ok
    async with database.transaction() as session:
        original = [dict(r) for r in (await session.execute(text(SELECT_ALL))).mappings()]

    for name, (change, first_bad) in TAMPERS.items():
        await change(database)
        report = await verify(clearance.audit)
        assert not report.ok, name
        assert report.first_bad_seq == first_bad, (name, report)
        assert report.checked == first_bad - 1, (name, report)
        assert report.reason, name

        # Put the untouched rows back for the next tamper; the chain verifies again.
        async with database.transaction() as session:
            await session.execute(text("DELETE FROM audit_events"))
            await session.execute(text(INSERT_ROW), original)
        assert (await verify(clearance.audit)).ok, f"restoring after {name}"


async def test_concurrent_appends_from_two_processes_keep_one_chain(
    db_url: str, database: Database, clock: ManualClock
) -> None:
    other = Database(db_url)  # a second replica: its own engine and connection pool
    try:
        logs = (AuditLog(database), AuditLog(other))

        async def append(i: int) -> None:
            record = AuditRecord(
                "admin_command", f"admin{i % 2}@example.com", None, None, "v1", {"n": i}
            )
            await logs[i % 2].record([record, record], clock.now())

        await asyncio.gather(*(append(i) for i in range(60)))
    finally:
        await other.dispose()

    audit = AuditLog(database)
    events = await events_of(audit)
    report = verify_chain(events, await audit.head())
    assert report.ok, report
    assert report.checked == 120
    assert [e.seq for e in events] == list(range(1, 121))
    # Each call's two events are adjacent: one transaction held the head for both.
    assert all(events[k].details == events[k + 1].details for k in range(0, 120, 2))
    assert sorted(events[k].details["n"] for k in range(0, 120, 2)) == list(range(60))
