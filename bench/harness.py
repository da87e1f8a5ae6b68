"""What the benchmarks share: a throwaway PostgreSQL database, ``clearance serve`` as a real
process, and CPU accounting (the machine is shared, so who used the cores is reported)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DEFAULT = os.environ.get(
    "CLEARANCE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)

# --- PostgreSQL -----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin_url: str = PG_ADMIN_DEFAULT) -> Iterator[str]:
    """A new, migrated database (SQLAlchemy URL); dropped on the way out whatever happened."""
    name = f"clearance_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = (
        make_url(admin_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


T = TypeVar("T")


def run_against_database(
    database: str,
    pg_admin: str,
    keep: bool,
    prefix: str,
    bench: Callable[[Path, str], Awaitable[T]],
) -> tuple[T, str]:
    """``bench(work, database_url)`` on a fresh PostgreSQL database or a SQLite file in a
    new work directory, and the database's name for the report. The directory (logs, the
    SQLite file) is removed after, unless ``keep`` or the run failed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if database == "postgres":
            with fresh_database(pg_admin) as url:
                return asyncio.run(bench(work, url)), "PostgreSQL"
        return asyncio.run(bench(work, f"sqlite+aiosqlite:///{work}/bench.db")), "SQLite (file)"
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (for psycopg directly)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- a server process -----------------------------------------------------------------------


class Server:
    """A server in its own process (``clearance serve`` unless told otherwise), logging to a file.

    ``profile`` runs it under cProfile, written on a clean (SIGTERM) exit.
    """

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        profile: Path | None = None,
        argv: Sequence[str] = ("-m", "bot.cli", "serve"),
    ) -> None:
        self.env = env
        self.log = log
        self.profile = profile
        self.argv = list(argv)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        prefix = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *prefix, *self.argv],
                env=self.env,
                stdout=out,
                stderr=out,
                cwd=ROOT,
            )

    def wait_healthy(self, limit: float = 60, path: str = "/healthz") -> None:
        assert self.process is not None
        deadline = time.monotonic() + limit
        url = f"http://127.0.0.1:{self.env['PORT']}{path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: " + self.log.read_text()[-3000:])
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
                return
            time.sleep(0.1)
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"the server did not become healthy: {tail}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_lines(self, *markers: str) -> int:
        """How many lines of this process's log contain one of ``markers``."""
        if not self.log.exists():
            return 0
        with self.log.open(errors="replace") as lines:
            return sum(1 for line in lines if any(m in line for m in markers))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"{self.argv} did not stop 30 s after SIGTERM; killed", file=sys.stderr)
            self.process.kill()
            self.process.wait(timeout=10)


# --- CPU accounting (Linux /proc) -----------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    """CPU used by named groups of processes and by the whole machine between start and stop."""

    pids: dict[str, list[int]]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0  # fraction of all cores busy (anyone's work)
    _ticks: tuple[int, int] = (0, 0)

    def start(self) -> None:
        self.before = {k: sum(cpu_seconds(p) for p in ps) for k, ps in self.pids.items()}
        self._ticks = machine_ticks()

    def stop(self) -> None:
        self.used = {
            k: sum(cpu_seconds(p) for p in ps) - self.before[k] for k, ps in self.pids.items()
        }
        busy, total = machine_ticks()
        spent = total - self._ticks[1]
        self.machine_busy = (busy - self._ticks[0]) / spent if spent else 0.0
