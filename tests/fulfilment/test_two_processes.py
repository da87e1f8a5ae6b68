"""Two dispatcher processes on one PostgreSQL database never run the same outbox row."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from engine.effects import TimeoutAt
from storage.database import Database
from storage.tables import OutboxRow

ROWS = 1000
KIND = TimeoutAt.kind  # a real effect kind, so each row parses; the worker only counts it


async def test_each_row_is_carried_out_exactly_once(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several replicas need PostgreSQL; SQLite deployments run one process")
    database = Database(db_url)
    now = datetime.now(UTC)
    async with database.transaction() as session:
        await session.execute(
            insert(OutboxRow),
            [
                {
                    "kind": KIND,
                    "request_id": f"R-DRILL{i}",
                    "payload": "{}",
                    "status": "pending",
                    "due_at": now,
                    "attempts": 0,
                    "created_at": now,
                }
                for i in range(ROWS)
            ],
        )
        ids = set((await session.execute(select(OutboxRow.id))).scalars().all())
    start_at = time.time() + 3  # both processes import, then start together
    outs = [tmp_path / f"worker{n}.txt" for n in range(2)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fakes.outbox_worker",
            db_url,
            KIND,
            str(out),
            str(start_at),
        )
        for out in outs
    ]
    for worker in workers:
        assert await asyncio.wait_for(worker.wait(), 120) == 0
    handled = [[int(x) for x in out.read_text().split()] for out in outs]
    everything = handled[0] + handled[1]
    assert len(everything) == ROWS, "a row ran twice or not at all"
    assert set(everything) == ids
    assert handled[0] and handled[1], "one process did all the work: the claims did not interleave"
    async with database.transaction() as session:
        done = (
            await session.execute(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.status == "done")  # type: ignore[arg-type]
            )
        ).scalar_one()
    assert done == ROWS
    await database.dispose()
