"""``clearance request RESOURCE``: the API's command-line client, for people and pipelines.

It reads where Clearance is and who is asking from the environment: ``CLEARANCE_URL``
(the base URL of clearance serve) and ``CLEARANCE_TOKEN`` (a workload's OIDC token, or a
person's token from ``clearance token create``). With ``--wait`` it blocks until the
request settles: exit 0 once access is active, 1 when it ended without access (denied,
timed out, cancelled, failed) or ``--timeout`` ran out, 2 when the API refused it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import aiohttp

from bot.subcommands.invocation import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from engine.durations import DurationError, parse_duration

# One long-poll asks the server to hold this long (its most); the CLI calls again after.
POLL_SECONDS = 60


class ApiRefusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail") or f"HTTP {status}")
        self.status = status
        self.body = body


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.request(method, url, json=body, headers=headers) as response:
        try:
            data = await response.json(content_type=None)
        except ValueError:
            data = {"detail": f"HTTP {response.status} with a body that is not JSON"}
        if response.status >= 400:
            raise ApiRefusal(response.status, data if isinstance(data, dict) else {})
        return data if isinstance(data, dict) else {}


def _describe(view: dict[str, Any]) -> str:
    status = view.get("status")
    line = f"{view.get('id')}: {status} ({view.get('resource')} for {view.get('principal')})"
    if status == "pending" and view.get("stage"):
        stage = view["stage"]
        waiting = ", ".join(view.get("approvers_of_current_stage") or []) or "nobody yet"
        line += f", stage {stage['index']} of {stage['of']} ({stage['label']}), asking {waiting}"
    if status == "active" and view.get("expires_at"):
        line += f", until {view['expires_at']}"
    if view.get("end_reason"):
        line += f": {view['end_reason']}"
    return line


def _settled(view: dict[str, Any]) -> bool:
    return view.get("status") in (
        "active",
        "expired",
        "revoked",
        "denied",
        "cancelled",
        "timed_out",
        "failed",
    )


def cmd_request(args: argparse.Namespace) -> int:
    url = os.environ.get("CLEARANCE_URL", "").strip().rstrip("/")
    token = os.environ.get("CLEARANCE_TOKEN", "").strip()
    missing = [n for n, v in (("CLEARANCE_URL", url), ("CLEARANCE_TOKEN", token)) if not v]
    if missing:
        print(
            f"error: {' and '.join(missing)} not set: CLEARANCE_URL is the base URL of "
            "clearance serve, CLEARANCE_TOKEN your workload's OIDC token or a token from "
            "`clearance token create`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        limit = parse_duration(args.timeout).total_seconds()
    except DurationError as exc:
        print(f"error: --timeout: {exc}", file=sys.stderr)
        return EXIT_USAGE
    body = {
        k: v
        for k, v in {
            "resource": args.resource,
            "duration": args.duration,
            "justification": args.justification,
            "ticket": args.ticket,
            "principal": args.principal,
        }.items()
        if v is not None
    }
    try:
        return asyncio.run(_run(url, token, body, args.wait, limit, args.json))
    except ApiRefusal as exc:
        print(f"error: {exc} (HTTP {exc.status})", file=sys.stderr)
        for error in exc.body.get("errors") or []:
            if isinstance(error, dict) and error.get("field"):
                print(f"  {error['field']}: {error.get('message')}", file=sys.stderr)
        return EXIT_USAGE
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(
            f"error: CLEARANCE_URL {url} could not be reached: {exc or type(exc).__name__}",
            file=sys.stderr,
        )
        return EXIT_PROBLEM


async def _run(
    url: str, token: str, body: dict[str, str], wait: bool, limit: float, as_json: bool
) -> int:
    timeout = aiohttp.ClientTimeout(total=POLL_SECONDS + 30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        view = await _call(session, "POST", f"{url}/api/v1/requests", token, body)
        print(json.dumps(view) if as_json else _describe(view), flush=True)
        if not wait:
            return EXIT_OK
        deadline = time.monotonic() + limit
        while not _settled(view) and (left := deadline - time.monotonic()) > 0:
            poll = min(POLL_SECONDS, max(1, int(left)))
            seen = view.get("status"), len(view.get("decisions") or [])
            view = await _call(
                session, "GET", f"{url}{view['links']['wait']}?timeout={poll}", token
            )
            if (view.get("status"), len(view.get("decisions") or [])) != seen:
                print(json.dumps(view) if as_json else _describe(view), flush=True)
        if view.get("status") == "active":
            return EXIT_OK
        if not _settled(view):
            print(
                f"error: {view.get('id')} is still {view.get('status')} after --timeout",
                file=sys.stderr,
            )
        return EXIT_PROBLEM
