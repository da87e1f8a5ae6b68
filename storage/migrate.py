"""Schema migrations: ``clearance db upgrade`` and ``clearance serve`` bring the schema to head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic runs synchronously)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; returns the revision the database is at after."""
    _sqlite_wal(url)
    command.upgrade(alembic_config(url), revision)
    return current_revision(url)


def _sqlite_wal(url: str) -> None:
    """Put a SQLite file in WAL mode (it persists) before any process serves from it.

    Switching needs an exclusive lock that busy_timeout does not wait for: two processes
    whose first connections both switched a fresh file would see "database is locked".
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()


def current_revision(url: str, connect_timeout: int | None = None) -> str | None:
    """The revision the database is at (None: no schema yet). With ``connect_timeout``
    (seconds), a PostgreSQL server that does not answer fails instead of hanging."""
    connect_args: dict[str, Any] = {}
    if connect_timeout is not None and make_url(url).get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = connect_timeout
    engine = create_engine(sync_url(url), poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
