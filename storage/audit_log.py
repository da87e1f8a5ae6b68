"""The audit log: appending sealed events under the chain's head, reading them back in order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from engine.audit import GENESIS_HASH, AuditEvent, seal
from engine.transitions import AuditRecord
from storage.database import Database
from storage.tables import AuditHeadRow, AuditRow


async def append(
    session: AsyncSession, records: Iterable[AuditRecord], at: datetime
) -> list[AuditEvent]:
    """Seal and add events in the caller's transaction, holding the head row's lock."""
    records = list(records)
    if not records:
        return []
    head = (
        await session.execute(
            select(AuditHeadRow).where(col(AuditHeadRow.id) == 1).with_for_update()
        )
    ).scalar_one_or_none()
    if head is None:
        head = AuditHeadRow(id=1, seq=0, hash=GENESIS_HASH)
        session.add(head)
    sealed: list[AuditEvent] = []
    seq, prev = head.seq, head.hash
    for record in records:
        event = seal(
            seq,
            prev,
            at,
            record.action,
            record.actor,
            record.request_id,
            record.resource_id,
            record.policy_version,
            record.details,
        )
        session.add(_row(event))
        sealed.append(event)
        seq, prev = event.seq, event.hash
    head.seq, head.hash = seq, prev
    return sealed


def _row(event: AuditEvent) -> AuditRow:
    return AuditRow(
        seq=event.seq,
        at=event.at,
        action=event.action,
        actor=event.actor,
        request_id=event.request_id,
        resource_id=event.resource_id,
        policy_version=event.policy_version,
        details=json.dumps(
            event.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        at=row.at,
        action=row.action,
        actor=row.actor,
        request_id=row.request_id,
        resource_id=row.resource_id,
        policy_version=row.policy_version,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class AuditLog:
    """Reads the chain for verification, export and per-request history."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def record(self, records: Iterable[AuditRecord], at: datetime) -> list[AuditEvent]:
        """Append events that belong to no request transition (policy loaded, admin command)."""
        async with self.database.transaction() as session:
            return await append(session, records, at)

    async def events(
        self,
        since: datetime | None = None,
        request_id: str | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[AuditEvent]:
        """Events in chain order, fetched in batches so a long trail never sits in memory."""
        last = 0
        while True:
            query = (
                select(AuditRow)
                .where(col(AuditRow.seq) > last)
                .order_by(col(AuditRow.seq))
                .limit(batch)
            )
            if since is not None:
                query = query.where(col(AuditRow.at) >= since)
            if request_id is not None:
                query = query.where(col(AuditRow.request_id) == request_id)
            async with self.database.transaction() as session:
                rows = (await session.execute(query)).scalars().all()
            if not rows:
                return
            for row in rows:
                yield _event(row)
            last = rows[-1].seq

    async def head(self) -> tuple[int, str] | None:
        async with self.database.transaction() as session:
            head = await session.get(AuditHeadRow, 1)
            return (head.seq, head.hash) if head else None
