"""``clearance token create|list|revoke``: people's API tokens.

A token is printed once, when it is made; the database keeps only a hash of it. Making and
revoking one is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.clock import SystemClock
from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, require_database, settings_from
from engine.durations import DurationError, format_duration, parse_duration
from engine.transitions import AuditRecord

if TYPE_CHECKING:
    from bot.app import Components

# A personal token lives at most this long: a forgotten one must run out by itself.
MAX_TTL = parse_duration("365d")


def _components(args: argparse.Namespace) -> Components:
    from bot.app import build

    settings = settings_from(args)
    require_database(settings)
    return build(settings)


def cmd_token_create(args: argparse.Namespace) -> int:
    from bot.api_auth import new_personal_token

    try:
        ttl = parse_duration(args.ttl)
    except DurationError as exc:
        print(f"error: --ttl: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if ttl > MAX_TTL:
        print(f"error: --ttl: at most {format_duration(MAX_TTL)}", file=sys.stderr)
        return EXIT_PROBLEM
    components = _components(args)
    user = args.user.strip().lower()

    async def run() -> str | None:
        try:
            person = await components.directory.person(user)
            if person is None or not person.active:
                return None
            now = SystemClock().now()
            stored, text = new_personal_token(user, ttl, args.by, now)
            await components.api_tokens.add(stored)
            await components.clearance.record(
                AuditRecord(
                    action="api_token_created",
                    actor=args.by,
                    request_id=None,
                    resource_id=None,
                    policy_version=components.policies.current.version,
                    details={
                        "token": stored.id,
                        "owner": user,
                        "expires_at": stored.expires_at.isoformat(),
                    },
                )
            )
            print(
                f"Token {stored.id} for {user}, valid until "
                f"{stored.expires_at:%Y-%m-%d %H:%M} UTC. It is shown only now; keep it secret:",
                file=sys.stderr,
            )
            return text
        finally:
            await components.close()

    text = asyncio.run(run())
    if text is None:
        print(f"error: --user: {user} is not an active person in the directory", file=sys.stderr)
        return EXIT_PROBLEM
    print(text)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    components = _components(args)

    async def run() -> None:
        try:
            now = SystemClock().now()
            for t in await components.api_tokens.of(args.user):
                state = (
                    f"revoked {t.revoked_at:%Y-%m-%d}"
                    if t.revoked_at
                    else "expired"
                    if not t.usable(now)
                    else f"valid until {t.expires_at:%Y-%m-%d %H:%M} UTC"
                )
                used = f", last used {t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else ""
                print(f"{t.id}  {t.owner}  {state}{used}")
        finally:
            await components.close()

    asyncio.run(run())
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    components = _components(args)

    async def run() -> bool:
        try:
            revoked = await components.api_tokens.revoke(args.token, SystemClock().now())
            if revoked is None:
                return False
            await components.clearance.record(
                AuditRecord(
                    action="api_token_revoked",
                    actor=args.by,
                    request_id=None,
                    resource_id=None,
                    policy_version=components.policies.current.version,
                    details={"token": revoked.id, "owner": revoked.owner},
                )
            )
            print(f"Token {revoked.id} of {revoked.owner} is revoked.")
            return True
        finally:
            await components.close()

    if not asyncio.run(run()):
        print(
            f"error: there is no token '{args.token}'; `clearance token list` shows them",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    return EXIT_OK
