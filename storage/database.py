"""The database connection: an async engine and transactions alike on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import StaticPool


class Database:
    """One database, reached through an async engine; ``transaction()`` is the only way in.

    SQLite allows one writer at a time, so every SQLite transaction starts with
    ``BEGIN IMMEDIATE`` (no lock upgrades that fail half-way) and transactions of this
    process queue on a lock instead of spinning on the busy timeout.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
            if self.url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
            # Keep open every connection the pool may hold. The default (5, plus 10 overflow
            # closed on return) made a dispatcher running 16 jobs at once open and close a
            # PostgreSQL connection for most jobs (bench/expiry_storm.py). Same cap: 15.
            kwargs["pool_size"] = 15
            kwargs["max_overflow"] = 0
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._lock: asyncio.Lock | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with (
            self._serialized(),
            AsyncSession(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def _serialized(self) -> AbstractAsyncContextManager[Any]:
        if not self.is_sqlite:
            return nullcontext()
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
