"""An expiry storm: N grants expiring at the same instant, revoked through slapd, vs slapd's floor.

N ACTIVE requests (built by the real engine, written as Store.save would write them, with a
valid audit chain) all expire at the same instant T against the LDAP connector on a real
slapd. One, then two ``clearance serve`` processes on PostgreSQL (fresh data each time) do
the real work: expire transition -> deprovision row -> LDAP member removal -> confirm_removal.
The clock runs from T until every request has ``deprovisioned_at``; then the group must be
empty, every request EXPIRED with one ``access_removed`` event, and the audit chain intact.
The floor is the same N member removals done directly with ldap3 in one loop (one
connection, MODIFY_DELETE per member) on a freshly re-filled group, before and after the
storms; the best run is the floor. Also printed: CPU per grant of our processes and of
slapd, how busy the whole (shared) machine was, and how many PostgreSQL backends were
waiting on a row lock (the audit chain's head) while the storm ran.

    .venv/bin/python bench/expiry_storm.py [--grants 10000] [--processes 1 2]
        [--tick 0.5] [--lead 15] [--profile DIR] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ldap3
import psycopg
from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PG_ADMIN_DEFAULT, CpuWindow, Server, fresh_database, libpq
from engine import lifecycle
from engine.audit import GENESIS_HASH, canonical_details, seal, verify_chain
from engine.directory import DirectorySnapshot, Person
from engine.lifecycle import RequestDraft
from engine.policy import Policy, load_policy
from storage.audit_log import AuditLog
from storage.database import Database
from storage.repository import _values
from storage.tables import AuditHeadRow, AuditRow, GrantRow, OutboxRow, RequestRow
from tests.fakes.slapd import ADMIN_DN, ADMIN_PASSWORD, GROUPS, PEOPLE, PLACEHOLDER, Slapd
from tests.fakes.slapd import free_port as free_tcp_port

GROUP = "storm"
GROUP_DN = f"cn={GROUP},{GROUPS}"
PASSWORD_ENV = "STORM_LDAP_PASSWORD"
GRANT_LENGTH = timedelta(hours=1)
# Log lines that mean a job failed or was retried (the start-up "Slack is off" is expected).
NOTEWORTHY = (" WARNING bot.", " WARNING storage.", " WARNING adapters.", " ERROR ")


def email(i: int) -> str:
    return f"storm{i}@example.com"


def user_dn(i: int) -> str:
    return f"uid=storm{i},{PEOPLE}"


def policy_text(slapd: Slapd) -> str:
    # The static directory only has to hold the admin: requesters are checked at submit
    # time, which the benchmark does itself with a snapshot of all N people.
    return f"""
admins: {{channel: C0ADMINS, users: [storm0@example.com]}}
directory:
  people:
    - {{email: storm0@example.com, name: Storm 0}}
connectors:
  corp-ldap:
    type: ldap
    url: {slapd.url}
    bind_dn: "{ADMIN_DN}"
    password_env: {PASSWORD_ENV}
    users_base: "{PEOPLE}"
    groups_base: "{GROUPS}"
    placeholder_member: "{PLACEHOLDER}"
resources:
  - id: storm
    name: Storm target
    risk: low
    grant: {{connector: corp-ldap, group: {GROUP}}}
    duration: {{default: 1h, max: 4h}}
    reminders: []
    approval: auto
"""


# --- slapd ----------------------------------------------------------------------------------


def seed_slapd(slapd: Slapd, n: int) -> None:
    """N people and one groupOfNames holding the placeholder (filled per run)."""
    conn = slapd.admin()
    try:
        for dn, classes, attrs in (
            ("dc=example,dc=com", ["dcObject", "organization"], {"o": "Example", "dc": "example"}),
            (PEOPLE, ["organizationalUnit"], {"ou": "people"}),
            (GROUPS, ["organizationalUnit"], {"ou": "groups"}),
            (PLACEHOLDER, ["organizationalRole"], {"cn": "placeholder"}),
            (GROUP_DN, ["groupOfNames"], {"cn": GROUP, "member": [PLACEHOLDER]}),
        ):
            if not conn.add(dn, classes, attrs):
                raise RuntimeError(f"adding {dn}: {conn.result}")
        for i in range(n):
            attrs = {
                "cn": f"Storm {i}",
                "sn": str(i),
                "mail": email(i),
                "displayName": f"Storm {i}",
                "uid": f"storm{i}",
            }
            if not conn.add(user_dn(i), ["inetOrgPerson"], attrs):
                raise RuntimeError(f"adding {user_dn(i)}: {conn.result}")
    finally:
        conn.unbind()


def fill_group(slapd: Slapd, n: int) -> None:
    conn = slapd.admin()
    try:
        members = [PLACEHOLDER] + [user_dn(i) for i in range(n)]
        if not conn.modify(GROUP_DN, {"member": [(ldap3.MODIFY_REPLACE, members)]}):
            raise RuntimeError(f"filling {GROUP_DN}: {conn.result}")
    finally:
        conn.unbind()


@dataclass
class Floor:
    seconds: float
    cpu: CpuWindow


def ldap_floor(slapd: Slapd, n: int) -> Floor:
    """N MODIFY_DELETEs of members in one loop on one connection: seconds and CPU used."""
    fill_group(slapd, n)
    conn = slapd.admin()
    assert slapd.process is not None
    cpu = CpuWindow({"client": [os.getpid()], "slapd": [slapd.process.pid]})
    try:
        cpu.start()
        started = time.perf_counter()
        for i in range(n):
            if not conn.modify(GROUP_DN, {"member": [(ldap3.MODIFY_DELETE, [user_dn(i)])]}):
                raise RuntimeError(f"removing {user_dn(i)}: {conn.result}")
        elapsed = time.perf_counter() - started
        cpu.stop()
    finally:
        conn.unbind()
    if slapd.members(GROUP):
        raise RuntimeError("the floor loop left members in the group")
    return Floor(elapsed, cpu)


# --- PostgreSQL -----------------------------------------------------------------------------


async def seed_requests(url: str, policy: Policy, n: int, expires_at: datetime) -> None:
    """N ACTIVE requests expiring at ``expires_at``: the rows Store.save would have written.

    Each request goes through the real engine (submit -> provisioning_started ->
    grant_confirmed, at ``expires_at - GRANT_LENGTH``); its rows go in with bulk INSERTs
    (Store.save, a transaction per step, would take minutes for 10,000). The work already
    done (provision, notifications) is marked done; only the expiry timers are pending.
    The audit records are sealed onto the chain exactly as storage.audit_log.append does;
    the end-of-run chain verification would catch any difference.
    """
    at = expires_at - GRANT_LENGTH
    people = {email(i): Person(email=email(i), name=f"Storm {i}") for i in range(n)}
    directory = DirectorySnapshot(people=people)
    requests, grants, outbox, records = [], [], [], []
    for i in range(n):
        draft = RequestDraft(email(i), "storm", "Expiry storm benchmark grant")
        submitted = lifecycle.submit(draft, policy, directory, at, f"R-S{i:07d}")
        started = lifecycle.provisioning_started(
            submitted.request.evolve(version=1), at, policy.version
        )
        granted = lifecycle.grant_confirmed(
            started.request.evolve(version=2), at, policy.version, ()
        )
        request = granted.request
        assert request.expires_at == expires_at
        requests.append(_values(request, at) | {"version": 3})
        grants.append(
            {
                "request_id": request.id,
                "principal": request.principal,
                "connector": request.connector,
                "target_group": request.target_group,
                "granted_at": at,
                "expires_at": expires_at,
            }
        )
        for transition in (submitted, started, granted):
            records.extend(transition.audit)
            for effect in transition.effects:
                row = {  # as storage.repository.outbox_row builds it
                    "kind": effect.kind,
                    "request_id": effect.request_id,
                    "payload": json.dumps(effect.payload(), default=str),
                    "due_at": effect.due_at or at,
                    "created_at": at,
                    "status": "pending",
                    "attempts": 0,
                    "completed_at": None,
                }
                if effect.kind != "expire":
                    row |= {"status": "done", "attempts": 1, "completed_at": at}
                outbox.append(row)
    database = Database(url)
    try:
        async with database.transaction() as session:
            head = (
                await session.execute(
                    select(AuditHeadRow.__table__)
                    .where(AuditHeadRow.__table__.c.id == 1)
                    .with_for_update()
                )
            ).one_or_none()
            seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            audit = []
            for r in records:
                event = seal(
                    seq,
                    prev,
                    at,
                    r.action,
                    r.actor,
                    r.request_id,
                    r.resource_id,
                    r.policy_version,
                    r.details,
                )
                audit.append(
                    {
                        "seq": event.seq,
                        "at": event.at,
                        "action": event.action,
                        "actor": event.actor,
                        "request_id": event.request_id,
                        "resource_id": event.resource_id,
                        "policy_version": event.policy_version,
                        "details": canonical_details(event.details),
                        "prev_hash": event.prev_hash,
                        "hash": event.hash,
                    }
                )
                seq, prev = event.seq, event.hash
            for model, rows in (
                (RequestRow, requests),
                (GrantRow, grants),
                (OutboxRow, outbox),
                (AuditRow, audit),
            ):
                for start in range(0, len(rows), 5000):
                    await session.execute(insert(model.__table__), rows[start : start + 5000])
            table = AuditHeadRow.__table__
            if head is None:
                await session.execute(insert(table).values(id=1, seq=seq, hash=prev))
            else:
                await session.execute(
                    update(table).where(table.c.id == 1).values(seq=seq, hash=prev)
                )
    finally:
        await database.dispose()


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


# --- clearance serve ------------------------------------------------------------------------


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--lead", type=float, default=15.0, help="seconds from seeding to the expiry instant"
    )
    parser.add_argument("--tick", type=float, default=0.5, help="CLEARANCE_TICK_SECONDS")
    parser.add_argument("--timeout", type=float, default=900, help="limit per storm (seconds)")
    parser.add_argument(
        "--pg-admin",
        default=PG_ADMIN_DEFAULT,
        help="libpq URL of a database the benchmark may create databases from",
    )
    parser.add_argument("--profile", type=Path, default=None, help="cProfile each serve here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    n = args.grants
    work = Path(tempfile.mkdtemp(prefix="clearance-storm-"))
    slapd = Slapd(work / "slapd")
    results: dict[int, Outcome] = {}
    floors: list[Floor] = []
    keep = args.keep
    try:
        slapd.start()
        started = time.monotonic()
        seed_slapd(slapd, n)
        print(f"slapd: {n} people seeded in {time.monotonic() - started:.1f}s", flush=True)
        policy_path = work / "policy.yaml"
        policy_path.write_text(policy_text(slapd))
        floors.append(ldap_floor(slapd, n))
        print(f"  floor: {floors[-1].seconds:.2f}s", flush=True)
        for processes in args.processes:
            results[processes] = outcome = run_storm(args, slapd, policy_path, processes, work)
            keep = keep or bool(outcome.problems)
            took = outcome.last_revocation
            print(
                f"  {processes} process(es): "
                + (f"last revocation at +{took:.2f}s" if took else "; ".join(outcome.problems)),
                flush=True,
            )
        floors.append(ldap_floor(slapd, n))  # again: the machine is shared and noisy
        print(f"  floor: {floors[-1].seconds:.2f}s", flush=True)
    except BaseException:
        keep = True
        raise
    finally:
        slapd.stop()
        if keep:
            print(f"serve logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not report(args, results, floors):
        sys.exit(1)


def report(args: argparse.Namespace, results: dict[int, Outcome], floors: list[Floor]) -> bool:
    """Print the figures side by side with the floor; False when a storm went wrong."""
    n = args.grants
    best = min(floors, key=lambda f: f.seconds)
    floor = best.seconds
    print()
    print(
        f"expiry storm: {n} grants expiring at one instant, LDAP connector on slapd, "
        f"PostgreSQL, CLEARANCE_TICK_SECONDS={args.tick}"
    )
    print(
        f"{'config':<24}{'seconds':>9}{'revocations/s':>15}{'ratio':>9}"
        f"{'CPU ms/grant: ours':>20}{'slapd':>7}{'machine busy':>14}"
    )

    def cpu_columns(ours: float, slapd: float, busy: float) -> str:
        return f"{ours * 1000 / n:>20.2f}{slapd * 1000 / n:>7.2f}{busy:>13.0%}"

    print(
        f"{'ldap3 loop (floor)':<24}{floor:>9.2f}{n / floor:>15.0f}{1:>8.2f}x"
        + cpu_columns(best.cpu.used["client"], best.cpu.used["slapd"], best.cpu.machine_busy)
        + f"   (runs: {', '.join(f'{f.seconds:.2f}s' for f in floors)}; best is the floor)"
    )
    ok = True
    for processes, outcome in results.items():
        label = f"clearance serve x{processes}"
        if outcome.last_revocation is None or outcome.problems:
            ok = False
            print(f"{label:<24}  FAILED: {'; '.join(outcome.problems)}")
            continue
        seconds = outcome.last_revocation
        cpu = outcome.cpu
        print(
            f"{label:<24}{seconds:>9.2f}{n / seconds:>15.0f}{seconds / floor:>8.2f}x"
            + cpu_columns(cpu.used["serve"], cpu.used["slapd"], cpu.machine_busy)
            + f"   (last expiry transition at +{outcome.last_expiry or 0:.2f}s;"
            f" backends active {outcome.backends[0]:.1f}, waiting on a lock"
            f" {outcome.backends[1]:.1f}; {outcome.warnings} warning lines logged)"
        )
    print(
        "ratio = seconds / floor seconds. CPU ms/grant: 'ours' is the ldap3 loop itself for"
        " the floor, all clearance serve processes for the storms. machine busy: all cores,"
        " anyone's work."
    )
    one, two = results.get(1), results.get(2)
    if one and two and one.last_revocation and two.last_revocation:
        speedup = one.last_revocation / two.last_revocation
        verdict = "scaled" if speedup > 1.05 else "did not scale"
        print(f"second process: {verdict}, {speedup:.2f}x the throughput of one")
    timed = [o.last_revocation for o in results.values() if o.last_revocation and not o.problems]
    if timed:
        best_ratio = min(timed) / floor
        verdict = "met" if best_ratio <= 1.5 else "NOT met"
        print(f"target (within 1.5x the direct floor): {verdict}, best {best_ratio:.2f}x")
    return ok


if __name__ == "__main__":
    main()
