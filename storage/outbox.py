"""The outbox: work written with each state change, claimed and carried out by dispatchers.

Claiming marks rows with a lease. On PostgreSQL the claim skips rows other processes are
claiming (``FOR UPDATE SKIP LOCKED``), so replicas never take the same row; a process that
dies mid-job leaves its lease to run out, and the row is claimed again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlmodel import col

from storage.database import Database
from storage.tables import OutboxRow


@dataclass(frozen=True)
class OutboxItem:
    """A claimed row: what to do, for which request, and how often it was tried."""

    id: int
    kind: str
    request_id: str | None
    payload: dict[str, Any]
    due_at: datetime
    attempts: int


class Outbox:
    """Claim, complete, retry and bury outbox rows."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, kind: str, payload: dict[str, Any], now: datetime) -> None:
        """Queue work that belongs to no request (a drift report): due now, run once."""
        async with self.database.transaction() as session:
            session.add(
                OutboxRow(
                    kind=kind,
                    request_id=None,
                    payload=json.dumps(payload, default=str),
                    due_at=now,
                    created_at=now,
                )
            )

    async def claim(
        self,
        now: datetime,
        worker: str,
        limit: int = 50,
        lease: timedelta = timedelta(seconds=60),
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxItem]:
        """Take up to ``limit`` due rows for ``worker`` until ``now + lease``.

        Only ``kinds`` are taken when given: a process without a chat platform configured
        leaves the notifications for one that has it.
        """
        query = (
            select(OutboxRow)
            .where(
                col(OutboxRow.status) == "pending",
                col(OutboxRow.due_at) <= now,
                or_(col(OutboxRow.claimed_until).is_(None), col(OutboxRow.claimed_until) < now),
            )
            .order_by(col(OutboxRow.due_at), col(OutboxRow.id))
            .limit(limit)
        )
        if kinds is not None:
            query = query.where(col(OutboxRow.kind).in_(kinds))
        if self.database.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
            for row in rows:
                row.claimed_until = now + lease
                row.claimed_by = worker
                row.attempts += 1
            items = [
                OutboxItem(
                    id=row.id or 0,
                    kind=row.kind,
                    request_id=row.request_id,
                    payload=json.loads(row.payload),
                    due_at=row.due_at,
                    attempts=row.attempts,
                )
                for row in rows
            ]
        return items

    async def complete(self, item_id: int, now: datetime) -> None:
        await self._set(
            item_id, status="done", completed_at=now, claimed_until=None, last_error=None
        )

    async def retry(self, item_id: int, error: str, due_at: datetime) -> None:
        """Put the row back to run again at ``due_at``."""
        await self._set(
            item_id, due_at=due_at, claimed_until=None, claimed_by=None, last_error=error
        )

    async def bury(self, item_id: int, error: str, now: datetime) -> None:
        """Give up on the row; it stays for inspection."""
        await self._set(
            item_id, status="dead", completed_at=now, claimed_until=None, last_error=error
        )

    async def _set(self, item_id: int, **values: Any) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(OutboxRow).where(col(OutboxRow.id) == item_id).values(**values)
            )

    async def next_due(self) -> datetime | None:
        """When the earliest pending row falls due (None when nothing is pending)."""
        async with self.database.transaction() as session:
            value = (
                await session.execute(
                    select(func.min(col(OutboxRow.due_at))).where(
                        col(OutboxRow.status) == "pending"
                    )
                )
            ).scalar_one_or_none()
        return value if isinstance(value, datetime) else None

    async def counts(self) -> dict[str, int]:
        """Rows per status, for health checks and metrics."""
        async with self.database.transaction() as session:
            rows = (
                await session.execute(
                    select(col(OutboxRow.status), func.count()).group_by(col(OutboxRow.status))
                )
            ).all()
        return {str(status): int(n) for status, n in rows}
