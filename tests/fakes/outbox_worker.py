"""A dispatcher process for concurrency tests: drains one kind of outbox row and reports.

    python -m tests.fakes.outbox_worker DATABASE_URL KIND OUTFILE START_AT_EPOCH

Each handled row id is written to OUTFILE (one per line) once the drain is over.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bot.clock import SystemClock
from bot.dispatcher import Dispatcher
from storage.database import Database
from storage.outbox import Outbox, OutboxItem


async def main(url: str, kind: str, start_at: float) -> list[int]:
    database = Database(url)
    handled: list[int] = []

    async def handle(item: OutboxItem) -> None:
        handled.append(item.id)
        await asyncio.sleep(0.001)  # some work, so the two processes overlap

    dispatcher = Dispatcher(Outbox(database), SystemClock(), batch=25)
    dispatcher.register(kind, handle)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await dispatcher.drain(max_rounds=10_000)
    await database.dispose()
    return handled


if __name__ == "__main__":
    rows = asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[4])))
    Path(sys.argv[3]).write_text("\n".join(str(i) for i in rows))
