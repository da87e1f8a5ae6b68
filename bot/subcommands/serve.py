"""``clearance serve``: the web server and the dispatcher, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, settings_from
from engine.policy_loading import PolicyError


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import build, serve

    settings = settings_from(args)
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
