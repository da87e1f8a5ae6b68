"""Drift reconciliation against a real slapd: members added or removed behind Clearance's back.

Each test starts from empty managed groups, grants through the real flow (auto-approved
requests provisioned by the dispatcher into LDAP) and then changes LDAP directly, as an
admin with a directory console would.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from bot.app import Components, build, start
from bot.reconcile import DriftRun
from bot.server import schedule_drift_check
from bot.settings import Settings
from engine.access_request import Status
from engine.audit import AuditEvent, verify_chain
from engine.drafts import RequestDraft
from engine.drift import Target
from storage.tables import OutboxRow
from tests.conftest import Ran, Run
from tests.fakes.clock import ManualClock
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slapd import ADMIN_PASSWORD, GROUPS, PEOPLE, PLACEHOLDER, Slapd, free_port
from tests.fulfilment.conftest import BASELINE_MEMBER, policy_text

PASSWORD_ENV = "DRIFT_LDAP_PASSWORD"
MANAGED = ("crash-db", "crash-short", "outage", "drift-revoke", "drift-report", "review-db")
REVOKE = Target("corp-ldap", "drift-revoke")
REPORT = Target("corp-ldap", "drift-report")


def dn(email: str) -> str:
    return f"uid={email.split('@')[0]},{PEOPLE}"


def set_members(slapd: Slapd, group: str, emails: list[str]) -> None:
    conn = slapd.admin()
    values = [dn(e) for e in emails] or [PLACEHOLDER]
    assert conn.modify(f"cn={group},{GROUPS}", {"member": [("MODIFY_REPLACE", values)]})
    conn.unbind()


def add_member(slapd: Slapd, group: str, email: str) -> None:
    conn = slapd.admin()
    assert conn.modify(f"cn={group},{GROUPS}", {"member": [("MODIFY_ADD", [dn(email)])]})
    conn.unbind()


def remove_member(slapd: Slapd, group: str, email: str) -> None:
    conn = slapd.admin()
    assert conn.modify(f"cn={group},{GROUPS}", {"member": [("MODIFY_DELETE", [dn(email)])]})
    conn.unbind()


def emails(slapd: Slapd, group: str) -> set[str]:
    return {m.split(",")[0].removeprefix("uid=") + "@example.com" for m in slapd.members(group)}


def with_dead_connector(text: str) -> str:
    """The policy plus a connector whose server is down and a resource granting through it."""
    dead = (
        "  dead-ldap:\n"
        "    type: ldap\n"
        f"    url: ldap://127.0.0.1:{free_port()}\n"
        "    bind_dn: cn=admin,dc=example,dc=com\n"
        f"    password_env: {PASSWORD_ENV}\n"
        f"    users_base: {PEOPLE}\n"
        f"    groups_base: {GROUPS}\n"
        "    timeout: 2\n"
    )
    resource = (
        "  - id: dead\n"
        "    name: Behind a dead server\n"
        "    risk: low\n"
        "    grant: {connector: dead-ldap, group: dead}\n"
        "    duration: {default: 1h, max: 4h}\n"
        "    approval: auto\n"
        "    drift: revoke\n"
    )
    return text.replace("resources:\n", dead + "resources:\n") + resource


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def policy_file(slapd: Slapd, tmp_path: Path) -> Path:
    os.environ[PASSWORD_ENV] = ADMIN_PASSWORD
    for group in MANAGED:
        set_members(slapd, group, [])
    for group in ("drift-revoke", "drift-report"):
        add_member(slapd, group, BASELINE_MEMBER)
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(slapd, PASSWORD_ENV))
    return path


def settings_for(db_url: str, policy: Path, fake: FakeSlack) -> Settings:
    return Settings(
        database_url=db_url,
        clearance_policy=policy,
        slack_bot_token=TOKEN,
        slack_api_url=fake.api_url,
    )


@pytest.fixture
async def world(
    db_url: str, policy_file: Path, fake_slack: FakeSlack, clock: ManualClock, slapd: Slapd
) -> AsyncIterator[Components]:
    components = build(settings_for(db_url, policy_file, fake_slack), clock=clock)
    await start(components)
    yield components
    if slapd.process is None:
        slapd.start()
    await components.close()


async def grant(components: Components, email: str, resource: str) -> str:
    request = await components.clearance.submit(
        RequestDraft(email, resource, "Drift reconciliation test")
    )
    await components.dispatcher.drain()
    assert (await components.clearance.get(request.id)).status is Status.ACTIVE
    return request.id


async def audit(components: Components, *actions: str) -> list[AuditEvent]:
    return [e async for e in components.audit.events() if e.action in actions]


async def drift_rows(components: Components) -> list[OutboxRow]:
    async with components.database.transaction() as session:
        query = select(OutboxRow).where(OutboxRow.kind == "drift_report")  # type: ignore[arg-type]
        return list((await session.execute(query)).scalars().all())


def target_view(run: DriftRun, target: Target) -> dict[str, Any]:
    for t in run.view()["targets"]:
        if (t["connector"], t["group"]) == (target.connector, target.group):
            return dict(t)
    return {"unexpected": [], "missing": [], "error": None}


# --- members without a grant ---------------------------------------------------------------


async def test_member_without_grant_is_removed_under_revoke_and_kept_under_report(
    world: Components, slapd: Slapd, fake_slack: FakeSlack
) -> None:
    await grant(world, "user3@example.com", "drift-revoke")
    await grant(world, "user3@example.com", "drift-report")
    add_member(slapd, "drift-revoke", "user5@example.com")
    add_member(slapd, "drift-report", "user5@example.com")

    run = await world.reconciler.reconcile()

    assert run.has_drift and not run.has_errors
    assert target_view(run, REVOKE)["unexpected"] == [
        {"member": "user5@example.com", "action": "removed", "reason": ""}
    ]
    assert target_view(run, REPORT)["unexpected"] == [
        {"member": "user5@example.com", "action": "kept", "reason": "drift: report"}
    ]
    assert target_view(run, REVOKE)["missing"] == target_view(run, REPORT)["missing"] == []
    # The grant holder and the baseline member stay; only the intruder under revoke goes.
    assert emails(slapd, "drift-revoke") == {"user3@example.com", BASELINE_MEMBER}
    assert emails(slapd, "drift-report") == {
        "user3@example.com",
        "user5@example.com",
        BASELINE_MEMBER,
    }

    detected = await audit(world, "drift_detected")
    assert sorted((e.details["group"], e.details["action"]) for e in detected) == [
        ("drift-report", "report"),
        ("drift-revoke", "remove"),
    ]
    assert all(e.details["member"] == "user5@example.com" for e in detected)
    assert {e.resource_id for e in detected} == {"drift-revoke", "drift-report"}
    revoked = await audit(world, "drift_revoked")
    assert [(e.details["group"], e.details["member"]) for e in revoked] == [
        ("drift-revoke", "user5@example.com")
    ]
    assert len(await audit(world, "drift_reconciled")) == 1
    events = [e async for e in world.audit.events()]
    assert verify_chain(events, await world.audit.head()).ok

    # The report reaches the admin channel through the outbox, once.
    assert len(await drift_rows(world)) == 1
    await world.dispatcher.drain()
    posted = [m for m in fake_slack.messages_in("C0ADMINS") if m["text"].startswith("Access drift")]
    assert len(posted) == 1 and (await drift_rows(world))[0].status == "done"
    text = json.dumps(posted[0]["blocks"])
    assert "user5@example.com \\u2014 *removed*" in text
    assert "user5@example.com \\u2014 kept (drift: report)" in text

    # Next time, the removed intruder is gone and the reported one is reported again.
    again = await world.reconciler.reconcile()
    assert target_view(again, REVOKE)["unexpected"] == []
    assert [u["member"] for u in target_view(again, REPORT)["unexpected"]] == ["user5@example.com"]


async def test_membership_being_provisioned_is_not_drift(world: Components, slapd: Slapd) -> None:
    # Approved, its provision job not run yet: the connector may add the member any moment.
    request = await world.clearance.submit(
        RequestDraft("user6@example.com", "drift-revoke", "Drift reconciliation test")
    )
    assert (await world.clearance.get(request.id)).status is Status.APPROVED
    add_member(slapd, "drift-revoke", "user6@example.com")  # what the grant does first

    run = await world.reconciler.reconcile()

    assert not run.has_drift
    assert "user6@example.com" in emails(slapd, "drift-revoke")
    await world.dispatcher.drain()
    assert (await world.clearance.get(request.id)).status is Status.ACTIVE
    assert not (await world.reconciler.reconcile()).has_drift


# --- grants without membership ---------------------------------------------------------------


async def test_grant_whose_membership_was_deleted_is_reported_missing_not_regranted(
    world: Components, slapd: Slapd
) -> None:
    rid = await grant(world, "user4@example.com", "drift-revoke")
    remove_member(slapd, "drift-revoke", "user4@example.com")

    run = await world.reconciler.reconcile()

    assert target_view(run, REVOKE)["missing"] == [
        {"principal": "user4@example.com", "request_id": rid}
    ]
    assert target_view(run, REVOKE)["unexpected"] == []
    assert "user4@example.com" not in emails(slapd, "drift-revoke")
    detected = await audit(world, "drift_detected")
    assert [(e.request_id, e.details["finding"]) for e in detected] == [(rid, "missing_membership")]
    assert await audit(world, "drift_revoked") == []
    await world.dispatcher.drain()
    assert "user4@example.com" not in emails(slapd, "drift-revoke")  # nothing re-granted
    assert (await world.clearance.get(rid)).status is Status.ACTIVE


async def test_baseline_members_and_matching_grants_are_no_drift(
    world: Components, slapd: Slapd
) -> None:
    await grant(world, "user7@example.com", "drift-report")
    assert BASELINE_MEMBER in emails(slapd, "drift-report")

    run = await world.reconciler.reconcile()

    assert not run.has_drift and not run.has_errors
    assert run.view()["targets"] == [] and run.view()["targets_checked"] == len(MANAGED)
    assert await audit(world, "drift_detected", "drift_revoked") == []
    assert len(await audit(world, "drift_reconciled")) == 1
    assert await drift_rows(world) == []  # nothing to tell the admins


# --- dry run, failures, the daily job ----------------------------------------------------------


async def test_dry_run_changes_nothing(world: Components, slapd: Slapd) -> None:
    rid = await grant(world, "user8@example.com", "drift-revoke")
    remove_member(slapd, "drift-revoke", "user8@example.com")
    add_member(slapd, "drift-revoke", "user9@example.com")
    before = [e async for e in world.audit.events()]

    run = await world.reconciler.reconcile(dry_run=True)

    assert run.dry_run and run.has_drift
    view = target_view(run, REVOKE)
    assert view["unexpected"] == [
        {"member": "user9@example.com", "action": "would_remove", "reason": ""}
    ]
    assert view["missing"] == [{"principal": "user8@example.com", "request_id": rid}]
    assert emails(slapd, "drift-revoke") == {"user9@example.com", BASELINE_MEMBER}
    assert [e async for e in world.audit.events()] == before
    assert await drift_rows(world) == []


@pytest.fixture
def dead_policy_file(policy_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "dead.yaml"
    path.write_text(with_dead_connector(policy_file.read_text()))
    return path


async def test_a_connector_that_cannot_list_is_reported_and_the_others_still_checked(
    db_url: str,
    dead_policy_file: Path,
    fake_slack: FakeSlack,
    clock: ManualClock,
    slapd: Slapd,
) -> None:
    components = build(settings_for(db_url, dead_policy_file, fake_slack), clock=clock)
    await start(components)
    try:
        add_member(slapd, "drift-revoke", "user10@example.com")
        run = await components.reconciler.reconcile()
        assert run.has_errors and run.has_drift
        dead = target_view(run, Target("dead-ldap", "dead"))
        assert dead["error"] and "unreachable" in dead["error"]
        assert target_view(run, REVOKE)["unexpected"][0]["action"] == "removed"
        assert "user10@example.com" not in emails(slapd, "drift-revoke")
        failed = await audit(components, "drift_check_failed")
        assert [e.details["connector"] for e in failed] == ["dead-ldap"]
        assert len(await drift_rows(components)) == 1
    finally:
        await components.close()


async def test_ldap_down_reports_every_group_unchecked_and_removes_nothing(
    world: Components, slapd: Slapd
) -> None:
    add_member(slapd, "drift-revoke", "user11@example.com")
    slapd.stop()
    run = await world.reconciler.reconcile()
    slapd.start()
    assert run.has_errors and not run.has_drift
    assert len(run.report.errors) == len(MANAGED)
    assert "user11@example.com" in emails(slapd, "drift-revoke")
    assert await audit(world, "drift_revoked", "drift_detected") == []
    assert len(await audit(world, "drift_check_failed")) == len(MANAGED)


async def test_daily_job_runs_once_a_day_across_replicas(
    world: Components, db_url: str, policy_file: Path, fake_slack: FakeSlack, clock: ManualClock
) -> None:
    other = build(settings_for(db_url, policy_file, fake_slack), clock=clock)
    try:
        assert await world.reconciler.daily() is not None
        assert await other.reconciler.daily() is None  # the other replica, same day
        assert len(await audit(world, "drift_reconciled")) == 1
        clock.advance(timedelta(days=1))
        assert await other.reconciler.daily() is not None
        assert len(await audit(world, "drift_reconciled")) == 2
    finally:
        await other.close()

    scheduler = AsyncIOScheduler(timezone="UTC")
    schedule_drift_check(scheduler, world)
    job = scheduler.get_job("drift-reconcile")
    assert job is not None and job.coalesce is True and job.max_instances == 1
    assert job.func == world.reconciler.daily
    assert "cron" in str(job.trigger)


# --- the command ---------------------------------------------------------------------------


def reconcile(run_cli: Run, *args: str, env: dict[str, str]) -> Ran:
    return run_cli("reconcile", *args, env=env)


def test_cli_exit_codes(
    run_cli: Run,
    db_url: str,
    policy_file: Path,
    dead_policy_file: Path,
    slapd: Slapd,
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": db_url,
        "CLEARANCE_POLICY": str(policy_file),
        PASSWORD_ENV: ADMIN_PASSWORD,
    }
    clean = reconcile(run_cli, env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No drift" in clean.stdout

    add_member(slapd, "drift-revoke", "user12@example.com")
    dry = reconcile(run_cli, "--dry-run", env=env)
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "user12@example.com: would be removed" in dry.stdout and "dry run" in dry.stdout
    assert "user12@example.com" in emails(slapd, "drift-revoke")

    real = reconcile(run_cli, env=env)
    assert real.returncode == 1, real.stdout + real.stderr
    assert "user12@example.com: removed" in real.stdout
    assert "user12@example.com" not in emails(slapd, "drift-revoke")
    assert reconcile(run_cli, env=env).returncode == 0

    # More strangers in one group than --max-removals allows: held for a human, all kept.
    for who in ("user13@example.com", "user14@example.com"):
        add_member(slapd, "drift-revoke", who)
    held = reconcile(run_cli, "--max-removals", "1", env=env)
    assert held.returncode == 1, held.stdout + held.stderr
    assert "held: 2 removals from one group is more than the limit of 1" in held.stdout
    assert {"user13@example.com", "user14@example.com"} <= emails(slapd, "drift-revoke")
    confirmed = reconcile(run_cli, "--max-removals", "2", env=env)
    assert confirmed.returncode == 1 and "user14@example.com: removed" in confirmed.stdout
    assert not {"user13@example.com", "user14@example.com"} & emails(slapd, "drift-revoke")
    wrong = reconcile(run_cli, "--max-removals", "-1", env=env)
    assert wrong.returncode == 2 and "-1 is below 0" in wrong.stderr

    errors = reconcile(run_cli, "--dry-run", "--policy", str(dead_policy_file), env=env)
    assert errors.returncode == 2, errors.stdout + errors.stderr
    assert "NOT CHECKED" in errors.stdout and "unreachable" in errors.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("resources: nope\n")
    refused = reconcile(run_cli, "--policy", str(bad), env=env)
    assert refused.returncode == 2 and "policy has problems" in refused.stderr
