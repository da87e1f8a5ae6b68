"""The floor of each phase: the very Slack Web API calls Clearance made in it (method and
arguments, as the fake recorded them), replayed straight through slack_sdk's AsyncWebClient
against the same fake, as many at once as the dispatcher runs jobs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import Call

CONCURRENCY = 16  # bot.dispatcher.Dispatcher's default


@dataclass(frozen=True)
class Floor:
    seconds: float
    cpu_seconds: float
    calls: Counter[str]


async def replay(client: AsyncWebClient, calls: Sequence[Call]) -> Floor:
    """Send ``calls`` again, in order, CONCURRENCY at a time; every one must succeed."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def send(call: Call) -> None:
        async with limit:
            response = await client.api_call(call.method, json=call.args)
            if not response.get("ok"):
                raise RuntimeError(f"floor: {call.method} failed: {response.get('error')}")

    cpu, started = time.process_time(), time.monotonic()
    await asyncio.gather(*(send(c) for c in calls))
    return Floor(
        time.monotonic() - started,
        time.process_time() - cpu,
        Counter(c.method for c in calls),
    )
