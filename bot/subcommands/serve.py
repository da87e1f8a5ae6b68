"""``clearance serve``: the web server and the dispatcher, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, require_database, settings_from
from engine.policy_loading import PolicyError


def cmd_serve(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.app import build
    from bot.config_errors import ConfigurationError
    from bot.server import serve, serve_problems

    settings = settings_from(args)
    logs.configure(settings)
    # Told before anything starts (serve checks again for those who call it directly).
    if problems := serve_problems(settings, args.socket_mode):
        raise ConfigurationError(*problems)
    # serve brings the schema to head itself: the database only has to be reachable.
    require_database(settings, migrated=False)
    try:
        asyncio.run(serve(build(settings), socket_mode=args.socket_mode))
    except PolicyError as exc:
        print(f"Refusing to start: the policy has problems:\n{exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK
