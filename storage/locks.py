"""Named locks that hold across processes: a PostgreSQL advisory lock, or a local one on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from storage.database import Database

_LOCAL: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class NamedLocks:
    """``async with locks.hold("slack-group:S0123"):`` serializes work on one name.

    On PostgreSQL the lock is a transaction-scoped advisory lock, so replicas of the bot
    wait for each other; SQLite deployments are single-process and lock in memory.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        # In-process locks are shared by every NamedLocks of this event loop: two
        # connectors built in one process must not race each other either.
        loop_locks = _LOCAL.setdefault(asyncio.get_running_loop(), {})
        local = loop_locks.setdefault(name, asyncio.Lock())
        async with local:
            if not self.database.is_postgres:
                yield
                return
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            async with self.database.engine.connect() as conn, conn.begin():
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield
