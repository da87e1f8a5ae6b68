"""The measured run: one storm through ``clearance serve`` processes, watched until it is over."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.expiry_storm_requests import seed_requests
from bench.expiry_storm_world import GROUP, PASSWORD_ENV, fill_group
from bench.harness import CpuWindow, Server, fresh_database, libpq
from engine.audit import verify_chain
from engine.policy_loading import load_policy
from storage.audit_log import AuditLog
from storage.database import Database
from tests.fakes.slapd import ADMIN_PASSWORD, Slapd
from tests.fakes.slapd import free_port as free_tcp_port

# Log lines that mean a job failed or was retried (the start-up "Slack is off" is expected).
NOTEWORTHY = (" WARNING bot.", " WARNING storage.", " WARNING adapters.", " ERROR ")


@dataclass
class Outcome:
    done: int
    last_revocation: float | None  # seconds after T
    last_expiry: float | None
    problems: list[str]
    cpu: CpuWindow
    warnings: int  # WARNING/ERROR lines the serve processes logged (retries, failures)
    backends: tuple[float, float]  # mean (active, waiting on a lock) backends while it ran


class Watcher:
    """Polls the storm's progress, and how many backends of its database wait on a lock.

    The lock figure tells whether the single audit-chain head (locked by every state
    change, in every process) is what the storm queues on.
    """

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq(url), autocommit=True, connect_timeout=5)
        self.samples = 0
        self.active = 0
        self.waiting = 0

    def progress(self, t: datetime) -> tuple[int, float | None, float | None]:
        """(requests removed, last removal and last expiry in seconds after ``t``)."""
        done, last_removal, last_end = self.conn.execute(
            "SELECT count(deprovisioned_at), max(deprovisioned_at), max(ended_at) FROM requests"
        ).fetchone()  # type: ignore[misc]
        return (
            int(done),
            (last_removal - t).total_seconds() if last_removal else None,
            (last_end - t).total_seconds() if last_end else None,
        )

    def sample(self) -> None:
        active, waiting = self.conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'active'),"
            " count(*) FILTER (WHERE wait_event_type = 'Lock')"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()  # type: ignore[misc]
        self.samples += 1
        self.active += int(active)
        self.waiting += int(waiting)

    def close(self) -> None:
        self.conn.close()


async def check_end_state(url: str, slapd: Slapd, n: int) -> list[str]:
    """Everything the storm must leave behind; returns what is wrong."""
    problems = []
    left = slapd.members(GROUP)
    if left:
        problems.append(f"{len(left)} members still in the LDAP group")
    with psycopg.connect(libpq(url), autocommit=True, connect_timeout=5) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall()
        )
        removed = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'access_removed'"
        ).fetchone()
        stuck = conn.execute(
            "SELECT kind, status, count(*) FROM outbox WHERE kind IN ('expire', 'deprovision')"
            " AND status <> 'done' GROUP BY kind, status"
        ).fetchall()
    if statuses != {"expired": n}:
        problems.append(f"request statuses {statuses}, expected {n} expired")
    if removed is None or removed[0] != n:
        problems.append(f"{removed[0] if removed else 0} access_removed events, expected {n}")
    if stuck:
        problems.append(f"outbox rows not done: {stuck}")
    database = Database(url)
    try:
        audit = AuditLog(database)
        events = [e async for e in audit.events(batch=5000)]
        verdict = verify_chain(events, await audit.head())
        if not verdict.ok:
            problems.append(f"audit chain broken: {verdict}")
    finally:
        await database.dispose()
    return problems


def run_storm(
    args: argparse.Namespace, slapd: Slapd, policy_path: Path, processes: int, work: Path
) -> Outcome:
    n = args.grants
    fill_group(slapd, n)
    policy = load_policy(policy_path)
    with fresh_database(args.pg_admin) as url:
        servers = []
        try:
            for k in range(processes):
                env = {
                    **os.environ,
                    "DATABASE_URL": url,
                    "CLEARANCE_POLICY": str(policy_path),
                    "PORT": str(free_tcp_port()),
                    PASSWORD_ENV: ADMIN_PASSWORD,
                    "CLEARANCE_TICK_SECONDS": str(args.tick),
                    "LOG_LEVEL": "INFO",
                }
                profile = args.profile / f"serve-{processes}p-{k}.prof" if args.profile else None
                servers.append(Server(env, work / f"serve-{processes}p-{k}.log", profile))
            for server in servers:
                server.start()
            for server in servers:
                server.wait_healthy()
            t = datetime.now(UTC) + timedelta(seconds=args.lead)
            seeding = time.monotonic()
            asyncio.run(seed_requests(url, policy, n, t))
            committed = datetime.now(UTC)
            # Rows are visible only from their commit: if seeding overran T (a noisy machine),
            # the storm starts at the commit, with every grant already overdue.
            start = max(t, committed)
            print(
                f"  {processes} process(es): {n} grants seeded in "
                f"{time.monotonic() - seeding:.1f}s; storm starts "
                + (
                    f"in {(t - committed).total_seconds():.1f}s"
                    if t > committed
                    else f"at the commit, {(committed - t).total_seconds():.1f}s past expiry"
                ),
                flush=True,
            )
            time.sleep(max(0.0, (t - committed).total_seconds()))
            assert slapd.process is not None
            cpu = CpuWindow(
                {
                    "serve": [s.process.pid for s in servers if s.process is not None],
                    "slapd": [slapd.process.pid],
                }
            )
            cpu.start()
            deadline = time.monotonic() + args.timeout
            done = 0
            watcher = Watcher(url)
            try:
                while time.monotonic() < deadline:
                    done, _, _ = watcher.progress(start)
                    if done == n:
                        break
                    for server in servers:
                        if server.process is not None and server.process.poll() is not None:
                            raise RuntimeError(f"a serve process died; see {server.log}")
                    watcher.sample()
                    time.sleep(0.25)
                cpu.stop()
                done, last_removal, last_expiry = watcher.progress(start)
            finally:
                watcher.close()
        finally:
            for server in servers:
                server.stop()
        warnings = sum(s.log_lines(*NOTEWORTHY) for s in servers)
        locks = (watcher.active / watcher.samples, watcher.waiting / watcher.samples)
        if done < n:
            problems = [f"timed out: {done}/{n} removed"]
            return Outcome(done, None, last_expiry, problems, cpu, warnings, locks)
        problems = asyncio.run(check_end_state(url, slapd, n))
        return Outcome(done, last_removal, last_expiry, problems, cpu, warnings, locks)
