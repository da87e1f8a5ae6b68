"""What every subcommand gets from how it was invoked: the exit statuses and the settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.settings import Settings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with the command line's --database-url / --policy."""
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "policy", None):
        overrides["clearance_policy"] = Path(args.policy)
    return Settings(**overrides)  # type: ignore[arg-type]
