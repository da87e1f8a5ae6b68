"""``clearance review start|status|export`` over a campaign driven through the real use
cases: the evidence matches the audit trail row for row, and the chain still verifies."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.review_reports import EVIDENCE_COLUMNS, csv_cells
from engine.access_request import Status
from engine.drafts import RequestDraft
from tests.conftest import Ran, Run
from tests.reviews.conftest import ReviewWorld, member

DECISION_EVENTS = ("review_item_decided", "review_defaulted")


@pytest.fixture
def cli(run_cli: Run, world: ReviewWorld, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATABASE_URL", world.database_url)
    monkeypatch.setenv("CLEARANCE_POLICY", str(world.policy_path))

    async def run(*args: str) -> Ran:
        # The commands run their own event loop: from this test's loop, on a worker thread.
        return await asyncio.to_thread(run_cli, *args)

    return run


async def drive(world: ReviewWorld) -> tuple[str, str, str]:
    """A campaign with every kind of ending, and a break-glass review judged not justified.
    Returns the campaign, the break-glass review and the request of hugo's wiki grant."""
    for name in ("alice", "erin", "frank"):
        world.groups.memberships.add((member(name), "S0PROD"))
    await world.grant(member("gina"), duration="14d")
    hugo_wiki = await world.grant(member("hugo"), duration="14d")
    glass = await world.components.clearance.submit(
        RequestDraft(
            requester=member("hugo"),
            resource_id="prod-db",
            justification="Primary is down, failing over by hand",
            break_glass=True,
        )
    )
    await world.drain()
    reviews = world.components.reviews
    glass_review = await reviews.store.campaign_for_request(glass.id)
    assert glass_review is not None

    campaign = await world.start()
    index = {
        (i.access.principal, i.access.resource_id): i.index
        for i in await reviews.store.items(campaign.id)
    }
    assert len(index) == 6
    await reviews.decide(
        campaign.id, index[member("alice"), "prod-db"], "dora@example.com", "keep", "on call rota"
    )
    await reviews.decide(
        campaign.id,
        index[member("erin"), "prod-db"],
        "dora@example.com",
        "revoke",
        "moved to sales",
    )
    await reviews.decide(
        campaign.id,
        index[member("hugo"), "wiki"],
        "dan@example.com",
        "revoke",
        "no longer edits the wiki",
    )
    assert await reviews.keep_all(campaign.id, "dora@example.com") == 1  # gina's wiki grant
    await reviews.decide(glass_review.id, 0, "dan@example.com", "revoke", "no incident was open")
    await world.drain()
    world.clock.advance(timedelta(days=7))  # frank's and hugo's prod-db access default
    await world.drain()
    return campaign.id, glass_review.id, hugo_wiki


def decisions_in(events: list[dict[str, Any]], campaign: str) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e["action"] in DECISION_EVENTS and e["details"]["campaign"] == campaign:
            found.setdefault(e["details"]["item"], []).append(e)
    return found


async def test_export_matches_the_audit_trail_row_for_row(
    world: ReviewWorld, cli: Any, tmp_path: Path
) -> None:
    campaign, glass_review, hugo_wiki = await drive(world)

    as_jsonl = await cli("review", "export", campaign, "--format", "jsonl")
    assert as_jsonl.returncode == 0, as_jsonl.stderr
    rows = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert f"exported 6 items of {campaign} (quarterly); chain head #" in as_jsonl.stderr
    assert all(tuple(r) == EVIDENCE_COLUMNS for r in rows)
    out = tmp_path / "evidence.csv"
    as_csv = await cli("review", "export", campaign.lower(), "--format", "csv", "-o", str(out))
    assert as_csv.returncode == 0, as_csv.stderr
    cells = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert cells == [csv_cells(r) for r in rows]

    by_whom = {(r["principal"], r["resource"]): r for r in rows}
    summary = {
        k: (r["decision"], r["decided_by"], r["reason"], r["defaulted"], r["access"])
        for k, r in by_whom.items()
    }
    assert summary == {
        (member("alice"), "prod-db"): ("keep", "dora@example.com", "on call rota", False, "kept"),
        (member("erin"), "prod-db"): (
            "revoke",
            "dora@example.com",
            "moved to sales",
            False,
            "revoked",
        ),
        (member("frank"), "prod-db"): ("revoke", "clearance", "", True, "revoked"),
        (member("hugo"), "prod-db"): ("revoke", "clearance", "", True, "revoked"),
        (member("gina"), "wiki"): ("keep", "dora@example.com", "", False, "kept"),
        (member("hugo"), "wiki"): (
            "revoke",
            "dan@example.com",
            "no longer edits the wiki",
            False,
            "revoked",
        ),
    }
    assert by_whom[member("hugo"), "wiki"]["request_id"] == hugo_wiki
    assert by_whom[member("hugo"), "wiki"]["holding"] == "grant"
    assert by_whom[member("alice"), "prod-db"]["holding"] == "member"
    assert {r["reviewers"] == ["dora@example.com", "dan@example.com"] for r in rows} == {True}
    assert cells[0]["reviewers"] == "dora@example.com dan@example.com"
    assert {r["policy_version"] for r in rows} == {world.components.policies.current.version}
    assert {(m, g) for m, g in world.groups.memberships} == {
        (member("alice"), "S0PROD"),
        (member("gina"), "S0WIKI"),
    }
    assert (await world.components.clearance.get(hugo_wiki)).status is Status.REVOKED

    # The audit trail, exported as an auditor would: one decision event per decided item,
    # with the same verdict, reason, actor and time; one removal per revoked access.
    trail = await cli("audit", "export", "--format", "jsonl")
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    decided = decisions_in(events, campaign)
    assert sorted(decided) == sorted(r["item"] for r in rows if r["decision"])
    for row in rows:
        (event,) = decided[row["item"]]
        assert event["action"] == (
            "review_defaulted" if row["defaulted"] else "review_item_decided"
        )
        assert event["details"]["verdict"] == row["decision"]
        assert event["details"].get("reason", "") == row["reason"]
        assert (event["actor"], event["at"]) == (row["decided_by"], row["decided_at"])
        assert (event["details"]["principal"], event["details"]["resource"]) == (
            row["principal"],
            row["resource"],
        )
    removed = [
        e["details"]["item"]
        for e in events
        if e["action"] == "review_access_removed" and e["details"]["campaign"] == campaign
    ]
    assert sorted(removed) == sorted(r["item"] for r in rows if r["access"] == "revoked")

    glass = await cli("review", "export", glass_review, "--format", "jsonl")
    (row,) = [json.loads(line) for line in glass.stdout.splitlines()]
    assert (row["kind"], row["decision"], row["flagged"], row["access"]) == (
        "break_glass",
        "not_justified",
        True,
        "expired",  # a break-glass review removes nothing: the access ended at its cap
    )
    (event,) = decisions_in(events, glass_review)[0]
    assert (event["details"]["verdict"], event["details"]["reason"]) == (
        "not_justified",
        "no incident was open",
    )

    verified = await cli("audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout


async def test_export_of_an_unknown_campaign_writes_nothing(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "evidence.csv"
    result = await cli("review", "export", "C-NOPE", "--format", "csv", "-o", str(out))
    assert result.returncode == 1
    assert "There is no review campaign 'C-NOPE'" in result.stderr
    assert not out.exists()


async def test_status_and_start(world: ReviewWorld, cli: Any) -> None:
    empty = await cli("review", "status")
    assert empty.returncode == 0
    assert "No access review is running and no break-glass access waits" in empty.stdout

    world.groups.memberships.add((member("alice"), "S0PROD"))
    await world.grant(member("gina"), duration="14d")
    campaign = await world.start()
    await world.components.reviews.decide(campaign.id, 0, "dora@example.com", "keep", "on call")
    glass = await world.components.clearance.submit(
        RequestDraft(
            requester=member("hugo"),
            resource_id="prod-db",
            justification="Primary is down, failing over by hand",
            break_glass=True,
        )
    )
    await world.drain()

    listed = await cli("review", "status")
    assert f"  {campaign.id} quarterly: 1 of 2 decided, 1 undecided, 0 held;" in listed.stdout
    assert "Break-glass access waiting for its review:" in listed.stdout
    assert f"{member('hugo')} used prod-db ({glass.id}); asked: dora@example.com" in listed.stdout
    one = await cli("review", "status", campaign.id)
    assert "dora@example.com: 1 kept, 0 revoked, 1 undecided" in one.stdout
    assert "Not decided anything yet: dan@example.com" in one.stdout

    started = await cli("review", "start", "grants-only", "--by", "sam@example.com")
    assert started.returncode == 0, started.stderr
    assert "(grants-only): 1 items for 1 reviewer, due" in started.stdout
    again = await cli("review", "start", "grants-only")
    assert again.returncode == 1
    assert "The review 'grants-only' is already running as C-" in again.stderr
    running = await world.components.reviews.store.open_campaign_of("grants-only")
    assert running is not None and running.started_by == "sam@example.com"
    (item,) = await world.components.reviews.store.items(running.id)
    assert item.reviewers == ("bob@example.com",)  # gina's manager
    unknown = await cli("review", "start", "yearly")
    assert unknown.returncode == 1 and "There is no review 'yearly'" in unknown.stderr
