"""``clearance slack manifest`` and ``clearance teams manifest``: the chat apps' setup files."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bot.subcommands.invocation import EXIT_OK, EXIT_USAGE, settings_from
from message_templates import render

# The form of a Microsoft app id (8-4-4-4-12 hexadecimal digits).
GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def cmd_slack_manifest(args: argparse.Namespace) -> int:
    from adapters.slack.surface import manifest_data

    print(render("cli", "slack_manifest", manifest_data(args.url)))
    return EXIT_OK


def cmd_teams_manifest(args: argparse.Namespace) -> int:
    from adapters.teams.manifest import manifest, package

    app_id = args.app_id or settings_from(args).teams_app_id
    if not app_id:
        print("error: give --app-id (or set TEAMS_APP_ID): the Azure Bot's app id", file=sys.stderr)
        return EXIT_USAGE
    if not GUID.fullmatch(app_id):
        # Teams rejects the package at upload for this, far from where the typo was made.
        print(
            f"error: --app-id '{app_id}' is not a GUID; copy the Microsoft App ID from the Azure "
            "Bot's Configuration (like 11111111-2222-3333-4444-555555555555)",
            file=sys.stderr,
        )
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
