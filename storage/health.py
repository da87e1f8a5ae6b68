"""What readiness and metrics read from the database: a few cheap queries, nothing else.

A scrape every few seconds from every replica must not load the database, so each query
is a count or minimum over an index (``requests.status``, ``outbox (status, due_at)``, the
one-row audit head) or a group-by over a small table; finished outbox rows, which only
ever grow, are not counted at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from storage.database import Database
from storage.tables import AuditHeadRow, DecisionRow, OutboxRow, RequestRow

# Outbox rows still of interest: waiting to run, or given up on (kept for inspection).
OPEN_OUTBOX_STATUSES = ("pending", "dead")


@dataclass(frozen=True)
class OutboxGroup:
    """The open outbox rows of one kind and status, and when the earliest fell due."""

    kind: str
    status: str
    rows: int
    oldest_due: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """The database's side of the metrics, read in one transaction."""

    requests: dict[str, int]  # status -> requests
    decisions: dict[str, int]  # outcome -> decisions
    outbox: list[OutboxGroup]
    audit_head_seq: int


class Health:
    """Readiness checks and metric values straight from the database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def revision(self) -> str | None:
        """The schema revision the database is at (None: no schema). Raises when the
        database cannot be reached."""
        try:
            async with self.database.transaction() as session:
                value = (
                    await session.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one_or_none()
        except DBAPIError as exc:
            if _no_such_table(exc):
                return None
            raise
        return str(value) if value is not None else None

    async def snapshot(self, now: datetime) -> Snapshot:
        async with self.database.transaction() as session:
            requests = (
                await session.execute(
                    select(col(RequestRow.status), func.count()).group_by(col(RequestRow.status))
                )
            ).all()
            decisions = (
                await session.execute(
                    select(col(DecisionRow.outcome), func.count()).group_by(
                        col(DecisionRow.outcome)
                    )
                )
            ).all()
            outbox = (
                await session.execute(
                    select(
                        col(OutboxRow.kind),
                        col(OutboxRow.status),
                        func.count(),
                        # The earliest due_at among rows already due: how late the queue runs.
                        func.min(col(OutboxRow.due_at)).filter(col(OutboxRow.due_at) <= now),
                    )
                    .where(col(OutboxRow.status).in_(OPEN_OUTBOX_STATUSES))
                    .group_by(col(OutboxRow.kind), col(OutboxRow.status))
                )
            ).all()
            head = await session.get(AuditHeadRow, 1)
        return Snapshot(
            requests={str(s): int(n) for s, n in requests},
            decisions={str(o): int(n) for o, n in decisions},
            outbox=[
                OutboxGroup(str(kind), str(status), int(n), _aware(oldest))
                for kind, status, n, oldest in outbox
            ],
            audit_head_seq=head.seq if head else 0,
        )


def _aware(value: object) -> datetime | None:
    """min() over a UTC column, as an aware datetime whatever the driver returned."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns the stored text for an aggregate
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _no_such_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "no such table" in message or "does not exist" in message
