"""``clearance audit verify`` and ``clearance audit export``: the audit trail for auditors."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import UTC, datetime
from typing import IO

from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, require_database, settings_from
from engine.audit import AuditEvent, verify_chain
from engine.durations import DurationError, parse_duration


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from storage.audit_log import AuditLog
    from storage.database import Database

    settings = settings_from(args)
    require_database(settings)

    async def run() -> int:
        database = Database(settings.database_url)
        try:
            log = AuditLog(database)
            events = [e async for e in log.events()]
            head = await log.head()
        finally:
            await database.dispose()
        report = verify_chain(events, head)
        if report.ok:
            tip = f", head {head[1][:16]}" if head and head[0] else ""
            print(f"Audit trail intact: {report.checked} events verified{tip}.")
            return EXIT_OK
        print(
            f"Audit trail TAMPERED: first bad event is #{report.first_bad_seq}: {report.reason}.",
            file=sys.stderr,
        )
        return EXIT_PROBLEM

    return asyncio.run(run())


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.now(UTC) - parse_duration(text)
    except DurationError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(
            f"error: --since '{text}' is neither a date/time (2026-01-31, 2026-01-31T09:00Z) "
            "nor a duration (7d, 12h)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


CSV_COLUMNS = (
    "seq",
    "at",
    "action",
    "actor",
    "request_id",
    "resource_id",
    "policy_version",
    "details",
    "prev_hash",
    "hash",
)


def _write(event: AuditEvent, fmt: str, out: IO[str], writer: csv.DictWriter[str] | None) -> None:
    row = event.as_dict()
    if fmt == "jsonl":
        out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    elif writer is not None:
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        writer.writerow(row)


def cmd_audit_export(args: argparse.Namespace) -> int:
    from storage.audit_log import AuditLog
    from storage.database import Database

    settings = settings_from(args)
    since = _since(args.since)
    require_database(settings)

    async def run(out: IO[str]) -> int:
        database = Database(settings.database_url)
        count = 0
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS) if args.format == "csv" else None
        if writer is not None:
            writer.writeheader()
        try:
            log = AuditLog(database)
            async for event in log.events(since=since, request_id=args.request):
                _write(event, args.format, out, writer)
                count += 1
            head = await log.head()
        finally:
            await database.dispose()
        tip = f"; chain head #{head[0]} {head[1]}" if head else ""
        print(f"exported {count} events{tip}", file=sys.stderr)
        return EXIT_OK

    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            return asyncio.run(run(out))
    return asyncio.run(run(sys.stdout))
