"""The Slack Web API the benchmark's ``clearance serve`` talks to: the test fake, waking the
simulated users waiting for a DM or a form (no polling)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from tests.fakes.slack_api import FakeSlack

T = TypeVar("T")
WAIT_LIMIT = 120.0  # seconds a user waits for a form or a card before the run fails


class WatchedSlack(FakeSlack):
    """The fake Slack Web API, waking the users waiting for a DM or a form (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_chat_postMessage(args)
        if "error" not in result:
            channel = str(result["channel"])
            self.by_channel[channel].append(self.messages[(channel, str(result["ts"]))])
            self.changed[channel].set()
        return result

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_chat_update(args)
        if "error" not in result:
            self.changed[str(result["channel"])].set()
        return result

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_views_open(args)
        if "error" not in result:
            self.changed["views"].set()
        return result

    async def wait(self, key: str, find: Callable[[], T | None], what: str) -> T:
        """Whatever ``find`` returns once it is not None; re-checked when ``key`` changes."""
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            event = self.changed[key]
            event.clear()
            found = find()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waited {WAIT_LIMIT:.0f}s for {what}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue  # one last look, then the limit above

    def dm(self, user: str) -> str:
        return self.dm_channel(user)
