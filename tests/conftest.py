"""Shared fixtures: a fresh migrated database on each backend, the example policy, a clock.

Every test that takes ``db_url`` (directly or through ``database`` / ``clearance``) runs
twice, on SQLite and on PostgreSQL. PostgreSQL must be reachable: CI has to prove both
backends, so a missing server fails those tests instead of skipping them.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from adapters.static.directory import StaticDirectory
from bot.cli import main as clearance_main
from bot.policy_source import PolicySource
from bot.usecases import Clearance
from engine.policy import Policy
from engine.policy_loading import load_policy
from storage.audit_log import AuditLog
from storage.database import Database
from storage.migrate import upgrade
from storage.repository import Store
from tests.fakes.clock import ManualClock
from tests.fakes.oidc_issuer import OidcIssuer

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = REPO_ROOT / "examples" / "policy.yaml"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    """The libpq URL of a PostgreSQL database the tests may create databases from."""
    return os.environ.get("CLEARANCE_TEST_PG_ADMIN", PG_ADMIN_DEFAULT)


def _pg_unreachable(exc: Exception) -> NoReturn:
    pytest.fail(
        f"PostgreSQL is not reachable at {make_url(pg_admin_url()).render_as_string()} "
        "(set CLEARANCE_TEST_PG_ADMIN to a server the tests may create databases on): "
        f"{exc}",
        pytrace=False,
    )


def _pg_admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(pg_admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        error = exc
    _pg_unreachable(error)


def _drop_database(name: str) -> None:
    with _pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _postgres_database() -> Iterator[str]:
    name = f"clearance_t_{uuid.uuid4().hex[:10]}"
    with _pg_admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = (
        make_url(pg_admin_url())
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        upgrade(url)
        yield url
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The async URL of a fresh database with every migration applied."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/clearance.db"
        upgrade(url)
        yield url
    else:
        yield from _postgres_database()


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def policy() -> Policy:
    return load_policy(EXAMPLE_POLICY)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def clearance(database: Database, policy: Policy, clock: ManualClock) -> Clearance:
    return Clearance(
        Store(database),
        AuditLog(database),
        PolicySource.fixed(policy),
        StaticDirectory(lambda: policy),
        clock,
    )


@dataclass(frozen=True)
class Ran:
    """What a user sees of one ``clearance`` run."""

    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Ran]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``clearance ARGS`` in this process (``env`` adds environment variables): a
    separate process would add nothing the exit status and the two streams do not show."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> Ran:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()  # each result holds only its own run's output
        # `serve` sets up logging for its process; this process goes on after it.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            returncode = clearance_main(list(args))
        except SystemExit as exc:  # argparse and the like: exit as the interpreter would
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            returncode = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        stdout, stderr = capsys.readouterr()
        return Ran(returncode, stdout, stderr)

    return run



@pytest.fixture
async def oidc_issuer() -> AsyncIterator[OidcIssuer]:
    """A running local OIDC issuer on 127.0.0.1 (tests/fakes/oidc_issuer.py), one per test;
    a test that needs a second one opens ``async with OidcIssuer() as other:``."""
    async with OidcIssuer() as issuer:
        yield issuer
