"""``clearance review start|status|export``: access review campaigns from the command line.

``start`` opens a campaign of a review in the policy (the reviewers are asked by the
dispatcher of ``clearance serve``); ``status`` shows what is open, or one campaign per
reviewer; ``export`` writes a campaign's evidence for auditors, one row per item.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from typing import IO, TYPE_CHECKING, Any

from bot.clock import SystemClock
from bot.subcommands.invocation import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    require_database,
    settings_from,
)
from engine.policy_loading import PolicyError
from engine.refusals import Refused
from engine.review_items import Campaign
from message_templates import refusal_text, render

if TYPE_CHECKING:
    from bot.review_reports import ReviewReports
    from storage.database import Database


def _refused(exc: Refused) -> int:
    print(f"error: {refusal_text(exc)}", file=sys.stderr)
    return EXIT_PROBLEM


def cmd_review_start(args: argparse.Namespace) -> int:
    from bot.app import build
    from bot.review_reports import ReviewReports

    settings = settings_from(args)
    require_database(settings)
    components = build(settings)
    try:
        components.policies.current  # noqa: B018 - loads the policy, refusing a bad one
    except PolicyError as exc:
        print(f"error: the policy has problems:\n{exc}", file=sys.stderr)
        return EXIT_USAGE

    async def run() -> dict[str, Any]:
        try:
            campaign = await components.reviews.start(args.review, args.by)
            reports = ReviewReports(components.reviews.store, components.store)
            return await reports.detail(campaign.id, components.clearance.clock.now())
        finally:
            await components.close()

    try:
        view = asyncio.run(run())
    except Refused as exc:
        return _refused(exc)
    print(render("cli", "review_status", {"started": view, "detail": view, "campaigns": []}))
    return EXIT_OK


def _reports(database_url: str) -> tuple[Database, ReviewReports]:
    from bot.review_reports import ReviewReports
    from storage.database import Database
    from storage.repository import Store
    from storage.reviews import ReviewStore

    database = Database(database_url)
    return database, ReviewReports(ReviewStore(database), Store(database))


def cmd_review_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    require_database(settings)

    async def run() -> dict[str, Any]:
        database, reports = _reports(settings.database_url)
        now = SystemClock().now()
        try:
            if args.campaign:
                return {"detail": await reports.detail(args.campaign, now), "campaigns": []}
            return {
                "detail": None,
                "campaigns": await reports.open_campaigns(now, kind="campaign"),
                "break_glass": await reports.break_glass_waiting(now),
            }
        finally:
            await database.dispose()

    try:
        data = asyncio.run(run())
    except Refused as exc:
        return _refused(exc)
    print(render("cli", "review_status", {"started": None, "break_glass": [], **data}))
    return EXIT_OK


def _write(rows: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    from bot.review_reports import EVIDENCE_COLUMNS, csv_cells

    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=EVIDENCE_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_cells(row))


def cmd_review_export(args: argparse.Namespace) -> int:
    from storage.audit_log import AuditLog

    settings = settings_from(args)
    require_database(settings)

    async def run() -> tuple[Campaign, list[dict[str, Any]], tuple[int, str] | None]:
        database, reports = _reports(settings.database_url)
        try:
            campaign, rows = await reports.evidence(args.campaign)
            return campaign, rows, await AuditLog(database).head()
        finally:
            await database.dispose()

    try:
        campaign, rows, head = asyncio.run(run())
    except Refused as exc:  # nothing is written for a campaign that does not exist
        return _refused(exc)
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            _write(rows, args.format, out)
    else:
        _write(rows, args.format, sys.stdout)
    # The chain head ties the export to the audit trail `clearance audit verify` checks.
    tip = f"; chain head #{head[0]} {head[1]}" if head else ""
    still = "; the campaign is still open: decisions may follow" if campaign.is_open else ""
    print(
        f"exported {len(rows)} items of {campaign.id} ({campaign.review_id}){still}{tip}",
        file=sys.stderr,
    )
    return EXIT_OK
