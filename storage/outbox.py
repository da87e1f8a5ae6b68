"""The outbox: work written with each state change, claimed and carried out by dispatchers.

Claiming marks rows with a lease. On PostgreSQL the claim skips rows other processes are
claiming (``FOR UPDATE SKIP LOCKED``), so replicas never take the same row; a process that
dies mid-job leaves its lease to run out, and the row is claimed again.

Rows hold typed effects (engine/effects.py): ``outbox_row`` is the one way an effect
becomes a row and ``outbox_item`` the one way a claimed row becomes an effect again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import func, or_, select, update
from sqlmodel import col

from engine.effects import Effect, effect_from_payload, request_of
from storage.database import Database
from storage.tables import OutboxRow

log = logging.getLogger(__name__)

# Covariant (items are read-only): an item of a Provision is also an item of an Effect.
E = TypeVar("E", bound=Effect, covariant=True)


@dataclass(frozen=True)
class OutboxItem(Generic[E]):
    """A claimed row: the effect to carry out, when it fell due and how often it was tried.

    A handler is given the rows of the kind it was registered for, so it may declare the
    effect type of that kind (``OutboxItem[NotifyPerson]``).
    """

    id: int
    effect: E
    due_at: datetime
    attempts: int

    @property
    def kind(self) -> str:
        return self.effect.kind

    @property
    def request_id(self) -> str | None:
        return request_of(self.effect)


def outbox_row(effect: Effect, now: datetime) -> OutboxRow:
    """The row that carries ``effect``: due now unless it says when."""
    return OutboxRow(
        kind=effect.kind,
        request_id=request_of(effect),
        payload=json.dumps(effect.payload(), default=str),
        due_at=effect.due_at or now,
        created_at=now,
    )


def outbox_item(row: OutboxRow) -> OutboxItem[Effect]:
    """The typed effect a row carries. Raises (KeyError, TypeError, ValueError) for a row
    that holds no effect this version knows."""
    payload = json.loads(row.payload)
    if not isinstance(payload, dict):
        raise ValueError(f"payload is not an object: {row.payload[:80]}")
    effect = effect_from_payload(row.kind, row.request_id, payload, row.due_at)
    return OutboxItem(id=row.id or 0, effect=effect, due_at=row.due_at, attempts=row.attempts)


class Outbox:
    """Claim, complete, retry and bury outbox rows."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, effect: Effect, now: datetime) -> None:
        """Queue work that belongs to no request transition (a drift report)."""
        async with self.database.transaction() as session:
            session.add(outbox_row(effect, now))

    async def claim(
        self,
        now: datetime,
        worker: str,
        limit: int = 50,
        lease: timedelta = timedelta(seconds=60),
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxItem[Effect]]:
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
            items = []
            for row in rows:
                row.claimed_until = now + lease
                row.claimed_by = worker
                row.attempts += 1
                try:
                    items.append(outbox_item(row))
                except (KeyError, TypeError, ValueError) as exc:
                    # No handler can run it, and left pending it would be claimed on every
                    # tick: bury it at once, kept for inspection.
                    log.error("outbox %s #%s holds no known effect: %r", row.kind, row.id, exc)
                    row.status = "dead"
                    row.completed_at = now
                    row.claimed_until = None
                    row.last_error = f"unreadable: {exc!r}"
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
