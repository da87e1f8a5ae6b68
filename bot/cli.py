"""The ``clearance`` command: policy checks, explanations, audit evidence, database, serve."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bot.connectors import POLICY_CHECKS
from bot.settings import Settings
from engine.audit import AuditEvent, verify_chain
from engine.drift import REMOVAL_LIMIT
from engine.durations import DurationError, format_duration, parse_duration
from engine.policy_loading import PolicyError, load_policy
from engine.refusals import Refused
from message_templates import render

# Commands import what they need when they run: `policy check` in CI should not pay for
# loading Slack, the database drivers and Alembic.

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "policy", None):
        overrides["clearance_policy"] = Path(args.policy)
    return Settings(**overrides)  # type: ignore[arg-type]


# --- policy -------------------------------------------------------------------------------


def cmd_policy_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for file in args.files:
        try:
            policy = load_policy(file, POLICY_CHECKS)
        except PolicyError as exc:
            for problem in exc.problems:
                print(problem)
            status = EXIT_PROBLEM
            continue
        print(f"{file}: OK, {policy.summary()}")
    return status


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from bot.app import build

    settings = _settings(args)
    components = build(settings)
    try:
        policy = components.policies.current
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM

    async def run() -> str:
        explanation = await components.clearance.explain(args.requester, args.resource)
        emails = {e for s in explanation.stages for e in s.approvers}
        emails |= {x.email for s in explanation.stages for x in s.excluded}
        names = {}
        for email in emails:
            person = await components.directory.person(email)
            if person is not None:
                names[email] = person.name
        r = explanation.resource
        return render(
            "cli",
            "explain",
            {
                "explanation": explanation,
                "names": names,
                "policy_version": policy.version,
                "default_duration": format_duration(r.duration.default),
                "max_duration": format_duration(r.duration.max),
            },
        )

    try:
        print(asyncio.run(run()))
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


# --- audit --------------------------------------------------------------------------------


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from storage.audit_log import AuditLog
    from storage.database import Database

    settings = _settings(args)

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


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


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

    settings = _settings(args)
    since = _since(args.since)

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


# --- database and serving -----------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage import migrate

    settings = _settings(args)
    revision = migrate.upgrade(settings.database_url)
    print(f"Database is at revision {revision} (head {migrate.head_revision()}).")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import build, serve

    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The scheduler logs every tick at INFO; only its problems are worth a line.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(build(settings), socket_mode=args.socket_mode))
    except PolicyError as exc:
        print(f"Refusing to start: the policy has problems:\n{exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except ValueError as exc:  # settings that cannot work together
        print(f"Refusing to start: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from bot.app import build

    settings = _settings(args)
    components = build(settings)
    try:
        components.policies.current  # noqa: B018 - loads the policy, refusing a bad one
    except PolicyError as exc:
        print(f"error: the policy has problems:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    reconciler = components.reconciler

    async def run() -> int:
        try:
            drift = await reconciler.reconcile(
                dry_run=args.dry_run, trigger="cli", removal_limit=args.max_removals
            )
        finally:
            await components.close()
        print(render("cli", "drift_report", drift.view()))
        if drift.has_errors:
            return EXIT_USAGE
        return EXIT_PROBLEM if drift.has_drift else EXIT_OK

    try:
        return asyncio.run(run())
    except Exception as exc:  # the database or a setting: say what, exit 2 for cron
        print(f"error: drift check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_slack_manifest(args: argparse.Namespace) -> int:
    from adapters.slack.surface import manifest_data

    print(render("cli", "slack_manifest", manifest_data(args.url)))
    return EXIT_OK


def cmd_teams_manifest(args: argparse.Namespace) -> int:
    from adapters.teams.manifest import manifest, package

    app_id = args.app_id or Settings().teams_app_id
    if not app_id:
        print("error: give --app-id (or set TEAMS_APP_ID): the Azure Bot's app id", file=sys.stderr)
        return EXIT_USAGE
    try:
        data = manifest(app_id, args.url)
        zipped = package(app_id, args.url) if args.package else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if args.out and args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8")
    elif not zipped:
        sys.stdout.write(text)
    if zipped is not None:
        Path(args.package).write_bytes(zipped)
        print(f"wrote {args.package}: upload it in the Teams admin center (or sideload it)")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="clearance",
        description="Clearance: time-bound access requests, approved in chat, fully audited.",
    )
    sub = root.add_subparsers(dest="command", required=True)

    def add(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help: str,
        db: bool = False,
        policy: bool = False,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        if db:
            p.add_argument("--database-url", help="overrides DATABASE_URL")
        if policy:
            p.add_argument("--policy", help="policy file (overrides CLEARANCE_POLICY)")
        return p

    policy = sub.add_parser("policy", help="check and explain policy files")
    psub = policy.add_subparsers(dest="action", required=True)
    check = add(psub, "check", "Validate policy files; print every problem as FILE:LINE: message.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=cmd_policy_check)
    exp = add(psub, "explain", "Show who would approve a request, stage by stage.", policy=True)
    exp.add_argument("--requester", required=True, help="email of the person asking")
    exp.add_argument("--resource", required=True, help="resource id from the policy")
    exp.set_defaults(func=cmd_policy_explain)

    audit = sub.add_parser("audit", help="verify and export the audit trail")
    asub = audit.add_subparsers(dest="action", required=True)
    verify = add(
        asub, "verify", "Recompute the hash chain; name the first tampered event.", db=True
    )
    verify.set_defaults(func=cmd_audit_verify)
    export = add(asub, "export", "Write audit events for auditors (JSON lines or CSV).", db=True)
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--since", help="a date/time (2026-01-31) or a duration back (7d)")
    export.add_argument("--request", help="only events of this request id")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    export.set_defaults(func=cmd_audit_export)

    db = sub.add_parser("db", help="database schema")
    dsub = db.add_subparsers(dest="action", required=True)
    up = add(dsub, "upgrade", "Apply schema migrations up to the latest.", db=True)
    up.set_defaults(func=cmd_db_upgrade)

    srv = add(sub, "serve", "Run the web server and the dispatcher.", db=True, policy=True)
    srv.add_argument(
        "--socket-mode",
        action="store_true",
        help="connect to Slack over Socket Mode (SLACK_APP_TOKEN) instead of HTTP",
    )
    srv.set_defaults(func=cmd_serve)

    rec = add(
        sub,
        "reconcile",
        "Compare managed groups with the grants in force: report members without a grant "
        "and grants without membership, remove the former where the resource says "
        "drift: revoke. Exit 0: no drift, 1: drift found, 2: a group could not be checked "
        "or a removal failed.",
        db=True,
        policy=True,
    )
    rec.add_argument(
        "--dry-run",
        action="store_true",
        help="only print the report: remove nothing, audit nothing, post nothing",
    )
    rec.add_argument(
        "--max-removals",
        type=_non_negative,
        default=REMOVAL_LIMIT,
        metavar="N",
        help=(
            "remove from a group only when it has at most N members without a grant; a group "
            f"with more keeps them all and is reported (default {REMOVAL_LIMIT})"
        ),
    )
    rec.set_defaults(func=cmd_reconcile)

    slack = sub.add_parser("slack", help="Slack app setup")
    ssub = slack.add_subparsers(dest="action", required=True)
    man = add(
        ssub, "manifest", "Print the Slack app manifest (YAML) to paste at api.slack.com/apps."
    )
    man.add_argument(
        "--url", default="https://clearance.example.com", help="public base URL of clearance serve"
    )
    man.set_defaults(func=cmd_slack_manifest)

    teams = sub.add_parser("teams", help="Microsoft Teams app setup")
    tsub = teams.add_subparsers(dest="action", required=True)
    tman = add(
        tsub,
        "manifest",
        "Print the Teams app manifest (JSON), or build the app package to upload to Teams.",
    )
    tman.add_argument("--app-id", help="the Azure Bot's Microsoft app id (default: TEAMS_APP_ID)")
    tman.add_argument(
        "--url", default="https://clearance.example.com", help="public base URL of clearance serve"
    )
    tman.add_argument("--out", "-o", help="write the manifest JSON to this file")
    tman.add_argument("--package", metavar="ZIP", help="write the app package (manifest + icons)")
    tman.set_defaults(func=cmd_teams_manifest)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
