"""Wake long-polling API clients when a request may have changed.

Every save in this process calls ``poke``; a waiter wakes at once, re-reads its request
and waits again if it has not settled. A change made by another replica is seen within
``POLL_SECONDS``, when the waiter reads again anyway.
"""

from __future__ import annotations

import asyncio
import contextlib

POLL_SECONDS = 1.0


class RequestWatch:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        # Wake everyone waiting now; later waiters wait for the next change.
        self._event.set()
        self._event = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Return at the next change in this process, or after ``min(within, POLL_SECONDS)``."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(within, POLL_SECONDS))
