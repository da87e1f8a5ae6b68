"""Kill ``clearance serve`` with SIGKILL mid-work; after a restart nothing is lost or doubled.

The server is a real process on SQLite or PostgreSQL, granting through the LDAP
connector on a real slapd. Requests are made through the use cases from the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Components, build
from bot.settings import Settings
from engine.access_request import Status
from engine.audit import verify_chain
from engine.drafts import RequestDraft
from storage.tables import AuditRow, OutboxRow
from tests.fakes.slapd import (
    ADMIN_PASSWORD,
    GROUPS,
    PLACEHOLDER,
    Slapd,
    free_port,
)
from tests.fulfilment.conftest import USERS, policy_text


class Server:
    """``clearance serve`` as an operator runs it, in its own process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], env=self.env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{self.env['PORT']}/healthz"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(
            "clearance serve did not become healthy: " + self.log.read_text()[-3000:]
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
async def world(
    db_url: str, slapd: Slapd, tmp_path: Path
) -> AsyncIterator[tuple[Server, Components, Slapd]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(slapd))
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CLEARANCE_POLICY": str(policy),
        "PORT": str(free_port()),
        "CRASH_LDAP_PASSWORD": ADMIN_PASSWORD,
        "CLEARANCE_LEASE_SECONDS": "10",
        "CLEARANCE_TICK_SECONDS": "0.2",
        # Less than the test's own wait for a stop (Server.stop).
        "CLEARANCE_SHUTDOWN_SECONDS": "5",
    }
    os.environ["CRASH_LDAP_PASSWORD"] = ADMIN_PASSWORD
    for group in ("crash-db", "crash-short", "review-db"):
        conn = slapd.admin()
        conn.modify(f"cn={group},{GROUPS}", {"member": [("MODIFY_REPLACE", [PLACEHOLDER])]})
        conn.unbind()
    server = Server(env, tmp_path / "serve.log")
    # The test's own copy of Clearance: it only submits requests and reads state.
    components = build(Settings(database_url=db_url, clearance_policy=policy))
    components.dispatcher.routes.clear()
    yield server, components, slapd
    server.stop()
    await components.close()


def _freeze(server: Server, components: Components) -> None:
    """SIGSTOP the server, but not in the middle of a SQLite transaction: frozen there it
    would hold the database's one write lock and nobody could write until it thawed (a
    test artifact; PostgreSQL locks rows, not the database)."""
    assert server.process is not None
    database = components.database
    for _ in range(100):
        os.kill(server.process.pid, signal.SIGSTOP)
        if not database.is_sqlite or _sqlite_writable(str(database.url.database)):
            return
        os.kill(server.process.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("the server never paused outside a transaction")


def _sqlite_writable(path: str) -> bool:
    conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def _wait_until(check: object, limit: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await check():  # type: ignore[operator]
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


def _emails(slapd: Slapd, group: str) -> set[str]:
    return {dn.split(",")[0].removeprefix("uid=") + "@example.com" for dn in slapd.members(group)}


async def _count(components: Components, *where: object) -> int:
    async with components.database.transaction() as session:
        query = select(func.count()).select_from(AuditRow)
        for clause in where:
            query = query.where(clause)  # type: ignore[arg-type]
        return int((await session.execute(query)).scalar_one())


async def _unfinished_provisions(components: Components) -> list[str | None]:
    """The request ids of provision rows the dispatcher has not completed."""
    async with components.database.transaction() as session:
        rows = await session.execute(
            select(OutboxRow.request_id).where(
                OutboxRow.kind == "provision",  # type: ignore[arg-type]
                OutboxRow.status != "done",  # type: ignore[arg-type]
            )
        )
        return [rid for (rid,) in rows]


async def test_killed_between_approval_and_provisioning(
    world: tuple[Server, Components, Slapd],
) -> None:
    server, components, slapd = world
    server.start()
    assert server.process is not None
    _freeze(server, components)  # frozen: approvals land, nothing is granted
    ids = []
    for user in USERS:
        request = await components.clearance.submit(
            RequestDraft(user, "db", "Crash test grant, please")
        )
        ids.append(request.id)
    os.kill(server.process.pid, signal.SIGCONT)
    await asyncio.sleep(0.3)  # let it claim rows and start granting ...
    server.kill()  # ... and die mid-way
    granted_before_restart = _emails(slapd, "crash-db")
    # Any point of death is valid, but at every point nothing is overstated or lost: a request
    # shows as active only once its member is in the group, and every other one still has its
    # provision waiting in the outbox for the restart to carry out. (An active one may still
    # have its row open too: the row is completed after the grant's own commit.)
    at_death = [await components.clearance.get(i) for i in ids]
    active = {r.principal for r in at_death if r.status is Status.ACTIVE}
    assert active <= granted_before_restart <= set(USERS)
    not_active = {r.id for r in at_death if r.status is not Status.ACTIVE}
    assert not_active <= set(await _unfinished_provisions(components))

    server.start()

    async def all_active() -> bool:
        found = [await components.clearance.get(i) for i in ids]
        return all(r.status is Status.ACTIVE for r in found)

    await _wait_until(all_active, 60, "every approved grant to be applied")
    assert _emails(slapd, "crash-db") == set(USERS)
    # Exactly once: one 'granted' event and one clock start per request.
    for rid in ids:
        assert (
            await _count(components, AuditRow.request_id == rid, AuditRow.action == "granted") == 1
        )
    assert await _unfinished_provisions(components) == []
    events = [e async for e in components.audit.events()]
    assert verify_chain(events, await components.audit.head()).ok


async def test_grants_overdue_at_start_up_are_revoked_at_once(
    world: tuple[Server, Components, Slapd],
) -> None:
    server, components, slapd = world
    server.start()
    ids = [
        (await components.clearance.submit(RequestDraft(u, "short", "Short crash test grant"))).id
        for u in USERS[:10]
    ]

    async def all_active() -> bool:
        found = [await components.clearance.get(i) for i in ids]
        return all(r.status is Status.ACTIVE for r in found)

    await _wait_until(all_active, 30, "the short grants to be applied")
    assert _emails(slapd, "crash-short") == set(USERS[:10])
    server.kill()  # down while the grants run out
    requests = [await components.clearance.get(i) for i in ids]
    latest = max(r.expires_at.timestamp() for r in requests if r.expires_at)
    await asyncio.sleep(max(0.0, latest + 1 - time.time()))
    assert _emails(slapd, "crash-short") == set(USERS[:10])  # nobody removed them while down

    server.start()
    started = time.monotonic()

    async def all_removed() -> bool:
        found = [await components.clearance.get(i) for i in ids]
        return all(r.status is Status.EXPIRED and r.deprovisioned_at for r in found)

    await _wait_until(all_removed, 30, "overdue grants to be revoked")
    took = time.monotonic() - started
    assert _emails(slapd, "crash-short") == set()
    assert took < 10, f"overdue grants took {took:.1f}s to revoke after start-up"


async def test_killed_in_the_middle_of_a_campaign(
    world: tuple[Server, Components, Slapd],
) -> None:
    server, components, slapd = world
    server.start()
    holders = USERS[2:]
    ids = [
        (await components.clearance.submit(RequestDraft(u, "review-db", "Reviewed access"))).id
        for u in holders
    ]

    async def all_active() -> bool:
        found = [await components.clearance.get(i) for i in ids]
        return all(r.status is Status.ACTIVE for r in found)

    await _wait_until(all_active, 60, "the grants under review to be applied")
    campaign = await components.reviews.start("review-db-quarterly", "user0@example.com")
    assert await components.reviews.store.count(campaign.id) == len(holders)
    for index in range(len(holders)):
        await components.reviews.decide(
            campaign.id, index, "user1@example.com", "revoke", "not needed any more"
        )
    await asyncio.sleep(0.3)  # the server starts carrying out the revocations ...
    server.kill()  # ... and dies mid-way
    server.start()

    async def all_removed() -> bool:
        items = await components.reviews.store.items(campaign.id)
        requests = [await components.clearance.get(i) for i in ids]
        return all(i.outcome == "revoked" for i in items) and all(
            r.deprovisioned_at is not None for r in requests
        )

    await _wait_until(all_removed, 60, "every reviewed revocation to be carried out")
    assert _emails(slapd, "review-db") == set()
    # Nothing decided twice, nothing removed twice, nothing lost.
    for rid in ids:
        assert (
            await _count(components, AuditRow.request_id == rid, AuditRow.action == "revoked") == 1
        )
        assert (
            await _count(
                components, AuditRow.request_id == rid, AuditRow.action == "access_removed"
            )
            == 1
        )
    assert await _count(components, AuditRow.action == "review_item_decided") == len(holders)
    assert await _count(components, AuditRow.action == "review_access_removed") == len(holders)
    assert (await components.reviews.get(campaign.id)).status == "closed"
    events = [e async for e in components.audit.events()]
    assert verify_chain(events, await components.audit.head()).ok
