"""Named locks that hold across processes: a PostgreSQL advisory lock, or a local one on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from storage.database import Database


class NamedLocks:
    """``async with locks.hold("slack-group:S0123"):`` serializes work on one name.

    On PostgreSQL the lock is a transaction-scoped advisory lock, so replicas of the bot
    wait for each other; SQLite deployments are single-process and lock in memory.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._local: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        local = self._local.setdefault(name, asyncio.Lock())
        async with local:
            if not self.database.is_postgres:
                yield
                return
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            async with self.database.engine.connect() as conn, conn.begin():
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield
