"""The ``clearance`` command as a user runs it: exit status, output, real files, a real database.

The commands run in this process through ``bot.cli.main``: a separate process would add
nothing the exit status and the two streams do not already show.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.usecases import Clearance
from engine.drafts import RequestDraft
from storage.migrate import sync_url
from tests.conftest import EXAMPLE_POLICY, Ran, Run


def test_policy_check_accepts_the_example(run_cli: Run) -> None:
    result = run_cli("policy", "check", str(EXAMPLE_POLICY))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "OK, 5 resources" in result.stdout


def test_policy_check_lists_every_problem_with_its_line(run_cli: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "admins: {users: [ghost@example.com]}\n"  # 1
        "connectors:\n"  # 2
        "  c1: {type: slack_usergroups}\n"  # 3
        "resources:\n"  # 4
        "  - id: db\n"  # 5
        "    name: DB\n"  # 6
        "    risk: high\n"  # 7
        "    grant: {connector: nope, group: g}\n"  # 8
        "    duration: {default: 8h, max: 4h}\n"  # 9
        "    approval: [group:ghosts]\n"  # 10
    )
    result = run_cli("policy", "check", str(bad))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[1] for line in lines] == ["1", "8", "9", "10", "10"]
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert "unknown connector 'nope'" in result.stdout
    assert "unknown group 'ghosts'" in result.stdout


def test_policy_check_refuses_a_bad_break_glass_limit_at_its_line(
    run_cli: Run, tmp_path: Path
) -> None:
    text = EXAMPLE_POLICY.read_text()
    written = "break_glass: {max: 1h, review_within: 24h, limit: 2/30d}"
    assert written in text, "the example policy no longer has its break_glass line"
    line = text[: text.index(written)].count("\n") + 1
    for limit, message in (
        ("2/month", "'2/month' is not a limit: 'month' is not a duration"),
        ("0/30d", "'0/30d' allows no break-glass at all; the count must be 1 or more"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace(written, written.replace("2/30d", limit)))
        result = run_cli("policy", "check", str(bad))
        assert result.returncode == 1
        [problem] = result.stdout.strip().splitlines()
        assert problem.startswith(f"{bad}:{line}: resources[0].break_glass.limit: "), problem
        assert message in problem


def test_policy_explain_names_approvers_and_exclusions(run_cli: Run) -> None:
    result = run_cli(
        "policy",
        "explain",
        "--policy",
        str(EXAMPLE_POLICY),
        "--requester",
        "bob@example.com",
        "--resource",
        "ci-admin",
    )
    assert result.returncode == 0, result.stderr
    assert "Erin Evans <erin@example.com>" in result.stdout
    assert "Excluded: Bob Baker <bob@example.com>, is the requester" in result.stdout
    assert "Break-glass: not available for this resource." in result.stdout
    glass = run_cli(
        "policy",
        "explain",
        "--policy",
        str(EXAMPLE_POLICY),
        "--requester",
        "dora@example.com",
        "--resource",
        "prod-db-admin",
    )
    assert glass.returncode == 0, glass.stderr
    for line in (
        "Break-glass: available in an emergency. Access is granted at once, without approval, "
        "for at most 1h; the admin channel is alerted.",
        "  Limit:    2 per person in 30d (2/30d); beyond that a break-glass request goes to the "
        "approvers above.",
        # Dora owns it too (group:dba), but never reviews her own break-glass access.
        "  Reviews:  within 1d, the owners, each told at once: Dan Doyle <dan@example.com>",
    ):
        assert line in glass.stdout.splitlines(), (line, glass.stdout)
    unknown = run_cli(
        "policy",
        "explain",
        "--policy",
        str(EXAMPLE_POLICY),
        "--requester",
        "bob@example.com",
        "--resource",
        "nope",
    )
    assert unknown.returncode == 1 and "no resource 'nope'" in unknown.stderr


def test_db_upgrade_then_audit_verify_and_export(
    run_cli: Run, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    up = run_cli("db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert re.search(r"at revision (\d{4}) \(head \1\)", up.stdout), up.stdout
    empty = run_cli("audit", "verify")
    assert empty.returncode == 0 and "0 events" in empty.stdout


async def test_audit_verify_detects_tampering(
    run_cli: Run,
    db_url: str,
    clearance: Clearance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def cli(*args: str) -> Ran:
        # The commands run their own event loop, so from inside this test's loop they run
        # on a worker thread.
        return await asyncio.to_thread(run_cli, *args)

    # Activity through the real use cases fills the chain.
    for n in range(3):
        await clearance.submit(
            RequestDraft(
                "alice@example.com",
                "prod-db-admin",
                f"Fixing INC-{n} on the primary",
                ticket=f"INC-{n}",
            )
        )
    monkeypatch.setenv("DATABASE_URL", db_url)
    ok = await cli("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout

    exported = await cli("audit", "export", "--format", "jsonl")
    events = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "chain head" in exported.stderr
    out = tmp_path / "evidence.csv"
    as_csv = await cli(
        "audit",
        "export",
        "--format",
        "csv",
        "-o",
        str(out),
        "--request",
        events[0]["request_id"],
    )
    assert as_csv.returncode == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and {r["request_id"] for r in rows} == {events[0]["request_id"]}
    bad_since = await cli("audit", "export", "--since", "yesterday-ish")
    assert bad_since.returncode != 0 and "--since" in bad_since.stderr

    engine = create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory@example.com' WHERE seq = 4"))
    engine.dispose()
    tampered = await cli("audit", "verify")
    assert tampered.returncode == 1
    assert "first bad event is #4" in tampered.stderr
