"""The ``clearance`` command line: its subcommands and their options, and the entry point.

What each subcommand does lives in ``bot.subcommands``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlparse

from bot.config_errors import ConfigurationError
from bot.subcommands.audit import cmd_audit_export, cmd_audit_verify
from bot.subcommands.database import cmd_db_upgrade
from bot.subcommands.invocation import EXIT_USAGE
from bot.subcommands.manifests import cmd_slack_manifest, cmd_teams_manifest
from bot.subcommands.policy import cmd_policy_check, cmd_policy_explain
from bot.subcommands.reconcile import cmd_reconcile
from bot.subcommands.request import cmd_request
from bot.subcommands.review import cmd_review_export, cmd_review_start, cmd_review_status
from bot.subcommands.serve import cmd_serve
from bot.subcommands.tokens import cmd_token_create, cmd_token_list, cmd_token_revoke
from engine.drift import REMOVAL_LIMIT
from engine.transitions import SYSTEM_ACTOR


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def _https_url(text: str) -> str:
    """A public base URL: Slack and Teams call only https:// URLs with a host."""
    parsed = urlparse(text)
    if parsed.scheme != "https" or not parsed.hostname:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an https:// URL; give the public base URL that Slack and Teams "
            "reach clearance serve at, e.g. https://clearance.example.com"
        )
    return text.rstrip("/")


def _version() -> str:
    try:
        return version("clearance")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="clearance",
        description="Clearance: time-bound access requests, approved in chat, fully audited.",
    )
    root.add_argument("--version", action="version", version=f"clearance {_version()}")
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
    srv.add_argument("--host", help="address to listen on (overrides HOST; default 0.0.0.0)")
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

    review = sub.add_parser("review", help="access reviews: start, follow and export campaigns")
    rsub = review.add_subparsers(dest="action", required=True)
    rstart = add(
        rsub,
        "start",
        "Start a campaign of a review in the policy now; refused while one of it is open. "
        "The reviewers are asked by the dispatcher of clearance serve.",
        db=True,
        policy=True,
    )
    rstart.add_argument("review", metavar="REVIEW", help="a review id under reviews: in the policy")
    rstart.add_argument(
        "--by",
        default=SYSTEM_ACTOR,
        metavar="EMAIL",
        help=f"who the audit trail names as starting it (default: {SYSTEM_ACTOR})",
    )
    rstart.set_defaults(func=cmd_review_start)
    rstatus = add(
        rsub,
        "status",
        "Open campaigns and break-glass access waiting for its review, with their progress; "
        "with a campaign id, that campaign per reviewer.",
        db=True,
    )
    rstatus.add_argument("campaign", nargs="?", metavar="CAMPAIGN")
    rstatus.set_defaults(func=cmd_review_status)
    rexport = add(
        rsub,
        "export",
        "Write a campaign's evidence for auditors: one row per item (who held what, reviewers, "
        "decision, reason, decided by and when, what happened to the access).",
        db=True,
    )
    rexport.add_argument("campaign", metavar="CAMPAIGN")
    rexport.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    rexport.add_argument("--output", "-o", help="file to write (default: standard output)")
    rexport.set_defaults(func=cmd_review_export)

    token = sub.add_parser("token", help="people's API tokens (for clearance request and scripts)")
    tksub = token.add_subparsers(dest="action", required=True)
    tcreate = add(
        tksub, "create", "Make an API token for a person; it is printed once.", db=True, policy=True
    )
    tcreate.add_argument("--user", required=True, metavar="EMAIL", help="whose token it is")
    tcreate.add_argument(
        "--ttl", default="30d", help="how long it is valid (default 30d, at most 365d)"
    )
    tcreate.add_argument(
        "--by", default=SYSTEM_ACTOR, metavar="EMAIL", help="who the audit trail names as making it"
    )
    tcreate.set_defaults(func=cmd_token_create)
    tlist = add(tksub, "list", "List API tokens (never their secrets).", db=True, policy=True)
    tlist.add_argument("--user", metavar="EMAIL", help="only this person's")
    tlist.set_defaults(func=cmd_token_list)
    trevoke = add(tksub, "revoke", "Revoke an API token by its id.", db=True, policy=True)
    trevoke.add_argument("token", metavar="TOKEN_ID")
    trevoke.add_argument(
        "--by",
        default=SYSTEM_ACTOR,
        metavar="EMAIL",
        help="who the audit trail names as revoking it",
    )
    trevoke.set_defaults(func=cmd_token_revoke)

    req = sub.add_parser(
        "request",
        help="ask for access through the API (CLEARANCE_URL, CLEARANCE_TOKEN)",
        description="Ask for access through the API of a running clearance serve. Reads "
        "CLEARANCE_URL (its base URL) and CLEARANCE_TOKEN (a workload's OIDC token or a "
        "token from `clearance token create`). Exit 0: filed (with --wait: access active); "
        "1: ended without access or --timeout ran out; 2: refused.",
    )
    req.add_argument("resource", metavar="RESOURCE", help="a resource id of the policy")
    req.add_argument("--duration", help="e.g. 1h (default: the resource's default)")
    req.add_argument("--justification", required=True, help="why the access is needed")
    req.add_argument("--ticket", help="a ticket id, where the resource asks for one")
    req.add_argument(
        "--principal", metavar="EMAIL", help="a service account to ask for (people only)"
    )
    req.add_argument("--wait", action="store_true", help="block until it is granted or ends")
    req.add_argument("--timeout", default="1h", help="with --wait: give up after this (default 1h)")
    req.add_argument("--json", action="store_true", help="print the request as JSON lines")
    req.set_defaults(func=cmd_request)

    slack = sub.add_parser("slack", help="Slack app setup")
    ssub = slack.add_subparsers(dest="action", required=True)
    man = add(
        ssub, "manifest", "Print the Slack app manifest (YAML) to paste at api.slack.com/apps."
    )
    man.add_argument(
        "--url",
        required=True,
        type=_https_url,
        help="public https:// base URL of clearance serve (Slack calls URL/slack/events)",
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
    try:
        status: int = args.func(args)
    except ConfigurationError as exc:
        # Read directly: LOG_LEVEL itself may be the setting that was refused.
        if os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
            traceback.print_exception(exc)
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    return status


if __name__ == "__main__":
    sys.exit(main())
