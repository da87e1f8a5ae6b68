"""The LDAP server goes down during a grant and during a revocation (a real slapd, stopped)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import Components, build, start
from bot.settings import Settings
from engine.access_request import Status
from engine.drafts import RequestDraft
from storage.tables import OutboxRow
from tests.fakes.clock import ManualClock
from tests.fakes.slapd import ADMIN_PASSWORD, GROUPS, PLACEHOLDER, Slapd
from tests.fulfilment.conftest import policy_text


@pytest.fixture
async def world(
    db_url: str, slapd: Slapd, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Components]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(slapd, "OUTAGE_LDAP_PASSWORD"))
    os.environ["OUTAGE_LDAP_PASSWORD"] = ADMIN_PASSWORD
    conn = slapd.admin()
    conn.modify(f"cn=outage,{GROUPS}", {"member": [("MODIFY_REPLACE", [PLACEHOLDER])]})
    conn.unbind()
    settings = Settings(
        database_url=db_url,
        clearance_policy=policy,
        clearance_grant_attempts=3,
        clearance_revoke_alert_every=2,
    )
    components = build(settings, clock=clock)
    await start(components)
    yield components
    if slapd.process is None:
        slapd.start()
    await components.close()


async def rows(components: Components, kind: str) -> list[OutboxRow]:
    async with components.database.transaction() as session:
        return list(
            (
                await session.execute(
                    select(OutboxRow).where(OutboxRow.kind == kind)  # type: ignore[arg-type]
                )
            )
            .scalars()
            .all()
        )


async def retry_round(components: Components, clock: ManualClock) -> None:
    clock.advance(timedelta(hours=1))  # past any backoff
    await components.dispatcher.drain()


async def test_grant_during_outage_fails_loudly_and_never_claims_success(
    world: Components, slapd: Slapd, clock: ManualClock
) -> None:
    slapd.stop()
    request = await world.clearance.submit(
        RequestDraft("user3@example.com", "outage", "Outage drill grant")
    )
    await world.dispatcher.drain()
    first = (await rows(world, "provision"))[0]
    assert first.status == "pending" and first.attempts == 1 and first.due_at > clock.now()
    assert "unreachable" in (first.last_error or "")
    for _ in range(3):
        await retry_round(world, clock)
    failed = await world.clearance.get(request.id)
    assert failed.status is Status.FAILED and "unreachable" in (failed.failure or "")
    alerts = [json.loads(r.payload) for r in await rows(world, "notify_admins")]
    assert {"template": "request_failed"} in [{"template": a["template"]} for a in alerts]
    notices = [json.loads(r.payload)["template"] for r in await rows(world, "notify")]
    assert "access_granted" not in notices and "request_failed" in notices
    # A timed-out grant may have landed: a clean-up removal waits for slapd to come back.
    [cleanup] = await rows(world, "deprovision")
    assert cleanup.status == "pending"
    slapd.start()
    await retry_round(world, clock)
    assert slapd.members("outage") == set()
    cleaned = await world.clearance.get(request.id)
    assert cleaned.status is Status.FAILED and cleaned.deprovisioned_at is not None
    assert [r.status for r in await rows(world, "deprovision")] == ["done"]
    notices = [json.loads(r.payload)["template"] for r in await rows(world, "notify")]
    assert "access_ended" not in notices  # the requester already heard it failed


async def test_revocation_during_outage_retries_until_it_lands(
    world: Components, slapd: Slapd, clock: ManualClock
) -> None:
    request = await world.clearance.submit(
        RequestDraft("user4@example.com", "outage", "Outage drill grant")
    )
    await world.dispatcher.drain()
    assert (await world.clearance.get(request.id)).status is Status.ACTIVE
    assert slapd.members("outage") == {
        f"uid=user4,{slapd.workdir and 'ou=people,dc=example,dc=com'}"
    }
    slapd.stop()
    clock.advance(timedelta(hours=1, seconds=1))
    await world.dispatcher.drain()
    for _ in range(5):
        await retry_round(world, clock)
    pending = await world.clearance.get(request.id)
    assert pending.status is Status.EXPIRED and pending.deprovisioned_at is None
    deprovision = (await rows(world, "deprovision"))[0]
    assert deprovision.status == "pending" and deprovision.attempts >= 5  # never given up
    alerts = [json.loads(r.payload)["template"] for r in await rows(world, "notify_admins")]
    assert alerts.count("revoke_failing") >= 2
    slapd.start()
    await retry_round(world, clock)
    done = await world.clearance.get(request.id)
    assert done.deprovisioned_at is not None
    assert slapd.members("outage") == set()
