"""``clearance reconcile``: managed groups compared with the grants in force, for cron."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.subcommands.invocation import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    require_database,
    settings_from,
)
from engine.policy_loading import PolicyError
from message_templates import render


def cmd_reconcile(args: argparse.Namespace) -> int:
    from bot.app import build

    settings = settings_from(args)
    require_database(settings)
    # The report printed below says what each warning of the reconciler would: one line
    # for each finding is enough (the daily run in `serve` has only the log).
    if settings.log_level != "DEBUG":
        logging.getLogger("bot.reconcile").setLevel(logging.ERROR)
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
