"""Effects through the real outbox on SQLite and PostgreSQL: every kind comes back typed.

The kinds are read from the registry, so a new effect kind fails here until it has a
sample below and round-trips.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from engine.effects import (
    EFFECT_TYPES,
    Deprovision,
    Effect,
    ExpireAt,
    NotifyAdmins,
    NotifyAdminsOfReview,
    NotifyApprovers,
    NotifyPerson,
    NotifyReviewer,
    NudgeAt,
    PostCallback,
    PostDriftReport,
    Provision,
    RefreshCards,
    RefreshReviewCards,
    RemindAt,
    ReviewDueAt,
    ReviewRemindAt,
    RevokeReviewed,
    StartBreakGlassReview,
    TimeoutAt,
    request_of,
)
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from storage.audit_log import AuditLog
from storage.database import Database
from storage.outbox import Outbox, OutboxItem
from storage.repository import Store
from storage.tables import AuditRow, OutboxRow
from tests.conftest import START

RID = "R-EFFECTS1"
DUE = START + timedelta(minutes=5)

# One of each kind, every field set to something other than its default.
SAMPLES: dict[str, Effect] = {
    e.kind: e
    for e in (
        NotifyPerson(
            RID,
            email="alice@example.com",
            template="request_submitted",
            context={"reason": 'Ünïcode <b>& "quotes"</b>'},
            due_at=DUE,
        ),
        NotifyApprovers(RID, stage=2, due_at=DUE),
        NotifyAdmins(RID, template="job_failed", context={"error": "boom"}, due_at=DUE),
        RefreshCards(RID, due_at=DUE),
        Provision(RID, connector="ldap", group="cn=db", principal="alice", due_at=DUE),
        Deprovision(
            RID, connector="ldap", group="cn=db", principal="alice", reason="expired", due_at=DUE
        ),
        ExpireAt(RID, due_at=DUE),
        RemindAt(RID, before="15m", due_at=DUE),
        NudgeAt(RID, stage=1, due_at=DUE),
        TimeoutAt(RID, due_at=DUE),
        PostDriftReport(
            {"policy_version": "v1", "targets": [{"group": "cn=db", "missing": []}]},
            due_at=DUE,
        ),
        NotifyReviewer("C-REVIEW1", reviewer="dora@example.com", nudge=True, due_at=DUE),
        RefreshReviewCards("C-REVIEW1", reviewer="dora@example.com", due_at=DUE),
        NotifyAdminsOfReview("C-REVIEW1", template="review_held", index=3, due_at=DUE),
        RevokeReviewed("C-REVIEW1", index=7, due_at=DUE),
        ReviewRemindAt("C-REVIEW1", due_at=DUE),
        ReviewDueAt("C-REVIEW1", due_at=DUE),
        StartBreakGlassReview(RID, due_at=DUE),
        PostCallback(RID, status="active", due_at=DUE),
    )
}


def sample(kind: str) -> Effect:
    if kind not in SAMPLES:
        pytest.fail(f"effect kind {kind!r} has no sample in {__name__}: add one", pytrace=False)
    return SAMPLES[kind]


async def stored(database: Database) -> list[OutboxRow]:
    async with database.transaction() as session:
        query = select(OutboxRow).order_by(col(OutboxRow.id))
        return list((await session.execute(query)).scalars().all())


async def claim_all(database: Database) -> list[OutboxItem[Effect]]:
    return await Outbox(database).claim(DUE, "worker-t")


@pytest.mark.parametrize("kind", sorted(EFFECT_TYPES))
async def test_every_kind_round_trips_typed(database: Database, kind: str) -> None:
    effect = sample(kind)
    await Outbox(database).add(effect, START)

    [row] = await stored(database)
    assert (row.kind, row.request_id, row.due_at) == (kind, request_of(effect), DUE)
    # The request is named once, by its column; the payload holds the other fields.
    assert json.loads(row.payload) == effect.payload()
    assert "request_id" not in json.loads(row.payload)

    [item] = await claim_all(database)
    assert item.effect == effect
    assert type(item.effect) is EFFECT_TYPES[kind]
    assert (item.id, item.kind, item.request_id, item.due_at) == (
        row.id,
        kind,
        request_of(effect),
        DUE,
    )
    assert item.attempts == 1


@pytest.mark.parametrize("kind", sorted(EFFECT_TYPES))
async def test_rows_written_by_older_versions_still_parse(database: Database, kind: str) -> None:
    effect = sample(kind)
    rid = request_of(effect)
    # Older versions also wrote the request id into the payload; newer ones may add keys.
    old = {**effect.payload(), "from_a_newer_version": [1, 2]}
    if rid is not None:
        old["request_id"] = rid
    async with database.transaction() as session:
        session.add(
            OutboxRow(
                kind=kind, request_id=rid, payload=json.dumps(old), due_at=DUE, created_at=START
            )
        )

    [item] = await claim_all(database)
    assert item.effect == effect


async def test_an_effect_without_a_time_is_due_when_queued(database: Database) -> None:
    await Store(database).enqueue([RefreshCards(RID)], START)

    [item] = await claim_all(database)
    assert item.effect == RefreshCards(RID, due_at=START)
    assert item.due_at == START


async def test_a_row_holding_no_known_effect_is_buried_not_retried(database: Database) -> None:
    def row(kind: str, request_id: str | None, payload: str) -> OutboxRow:
        return OutboxRow(
            kind=kind, request_id=request_id, payload=payload, due_at=START, created_at=START
        )

    async with database.transaction() as session:
        session.add_all(
            [
                row("from_the_future", RID, "{}"),
                row(NotifyPerson.kind, RID, '{"template": "x"}'),  # no email
                row(TimeoutAt.kind, None, "{}"),  # a request's timer naming no request
                row(TimeoutAt.kind, RID, "[]"),
                row(TimeoutAt.kind, RID, "{}"),
            ]
        )

    [item] = await claim_all(database)  # the readable one, not stuck behind the others
    assert item.effect == TimeoutAt(RID, due_at=START)
    found = await stored(database)
    dead = [r for r in found if r.status == "dead"]
    assert len(dead) == 4
    assert all(r.last_error and r.last_error.startswith("unreadable") for r in dead)
    assert await claim_all(database) == []


def failing(rid: str, details: dict[Any, Any]) -> AuditRecord:
    return AuditRecord("job_failed", SYSTEM_ACTOR, rid, None, "v1", details)


async def test_enqueue_commits_the_effects_and_their_audit_together(database: Database) -> None:
    store = Store(database)
    alert = NotifyAdmins(RID, template="job_failed", context={"error": "boom"})

    await store.enqueue([alert], START, audit=[failing(RID, {"kind": "provision"})])
    assert [i.effect for i in await claim_all(database)] == [replace(alert, due_at=START)]
    assert [e.action async for e in AuditLog(database).events(request_id=RID)] == ["job_failed"]

    # An audit record that cannot be sealed (its keys do not sort) rolls the alert back.
    with pytest.raises(TypeError):
        await store.enqueue([alert], START, audit=[failing(RID, {1: "x", "y": 2})])
    async with database.transaction() as session:
        outbox = (await session.execute(select(func.count()).select_from(OutboxRow))).scalar()
        audit = (await session.execute(select(func.count()).select_from(AuditRow))).scalar()
    assert (outbox, audit) == (1, 1)
