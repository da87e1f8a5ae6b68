"""The dispatcher: claims due outbox rows and hands each to the handler for its kind.

It is ticked on a schedule (apscheduler, see bot/scheduler.py) and woken after every
commit. Several processes may run it against one PostgreSQL database: claiming uses
``FOR UPDATE SKIP LOCKED`` and a lease, so each row is carried out by one of them.
Failures retry with exponential backoff and jitter; a kind either gives up after a number
of attempts (``on_give_up`` is told) or, like revocations, never does and raises an alert
every ``alert_every`` attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot import logs
from bot.clock import Clock
from engine.effects import Effect
from storage.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

# Any: a handler only ever gets rows of the kind it is registered for, so it declares that
# kind's effect (OutboxItem[Provision]); the parser in storage/outbox.py built it so.
Handler = Callable[[OutboxItem[Any]], Awaitable[None]]
Alert = Callable[[OutboxItem[Effect], str, bool], Awaitable[None]]


class RetryLater(Exception):
    """Raised by a handler that wants another try (the message is kept as the last error)."""


class Permanent(Exception):
    """Raised by a handler for a failure that retrying cannot fix: give up now."""


@dataclass(frozen=True)
class Route:
    """How one kind of row is carried out and retried."""

    handler: Handler
    max_attempts: int | None  # None: never give up
    alert_every: int = 5


class Dispatcher:
    """Runs outbox rows of the kinds it has handlers for; leaves every other kind alone."""

    def __init__(
        self,
        outbox: Outbox,
        clock: Clock,
        lease: timedelta = timedelta(seconds=120),
        batch: int = 50,
        concurrency: int = 16,
        backoff_base: timedelta = timedelta(seconds=2),
        backoff_cap: timedelta = timedelta(minutes=15),
        on_give_up: Alert | None = None,
        worker: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_give_up = on_give_up
        self.worker = worker or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.routes: dict[str, Route] = {}
        self._concurrency = concurrency
        self._tick_lock: asyncio.Lock | None = None
        self._woken: asyncio.Event | None = None
        # Jobs running right now: a stopping server says what it waits for.
        self.in_flight = 0

    def register(
        self, kind: str, handler: Handler, max_attempts: int | None = 8, alert_every: int = 5
    ) -> None:
        self.routes[kind] = Route(handler, max_attempts, alert_every)

    def wake(self) -> None:
        """Ask for a tick soon (called after each commit); cheap and safe from any task."""
        if self._woken is not None:
            self._woken.set()

    async def tick(self) -> int:
        """Claim one batch of due rows and carry them out; returns how many were claimed."""
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            items = await self.outbox.claim(
                self.clock.now(), self.worker, self.batch, self.lease, kinds=list(self.routes)
            )
            if items:
                limit = asyncio.Semaphore(self._concurrency)

                async def run(item: OutboxItem[Effect]) -> None:
                    async with limit:
                        await self._run(item)

                await asyncio.gather(*(run(item) for item in items))
            return len(items)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Tick until nothing due is left (the CLI and tests use this); returns rows run."""
        total = 0
        for _ in range(max_rounds):
            n = await self.tick()
            total += n
            if n == 0:
                break
        return total

    async def run(self, stop: asyncio.Event, interval: float = 2.0) -> None:
        """Tick whenever woken, and at least every ``interval`` seconds, until ``stop``."""
        self._woken = asyncio.Event()
        while not stop.is_set():
            try:
                while await self.tick() == self.batch:
                    pass  # a full batch: there is likely more due right now
            except Exception:  # the loop must survive a database hiccup
                log.exception("dispatcher tick failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=interval)
            self._woken.clear()

    async def _run(self, item: OutboxItem[Effect]) -> None:
        self.in_flight += 1
        try:
            # Every line the job logs, from any module, names its request.
            with logs.bound(request_id=item.request_id):
                await self._carry_out(item)
        finally:
            self.in_flight -= 1

    async def _carry_out(self, item: OutboxItem[Effect]) -> None:
        route = self.routes[item.kind]
        timeout = self.lease.total_seconds() * 0.75  # finish well inside the lease
        try:
            await asyncio.wait_for(route.handler(item), timeout=timeout)
        except Permanent as exc:
            await self._give_up(item, str(exc) or type(exc).__name__)
            return
        except Exception as exc:
            error = _describe(exc)
            log.warning(
                "outbox %s #%s (request %s) attempt %s failed: %s",
                item.kind,
                item.id,
                item.request_id,
                item.attempts,
                error,
            )
            if route.max_attempts is not None and item.attempts >= route.max_attempts:
                await self._give_up(item, error)
                return
            if route.max_attempts is None and item.attempts % route.alert_every == 0:
                await self._alert(item, error, final=False)
            await self.outbox.retry(item.id, error, self.clock.now() + self._backoff(item.attempts))
            return
        await self.outbox.complete(item.id, self.clock.now())

    def _backoff(self, attempts: int) -> timedelta:
        base: timedelta = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempts - 1)))
        # Jitter spreads retries of many rows that failed together (not security-sensitive).
        factor: float = 0.5 + random.random()  # noqa: S311
        return base * factor

    async def _give_up(self, item: OutboxItem[Effect], error: str) -> None:
        log.error(
            "outbox %s #%s (request %s) gave up: %s", item.kind, item.id, item.request_id, error
        )
        await self.outbox.bury(item.id, error, self.clock.now())
        await self._alert(item, error, final=True)

    async def _alert(self, item: OutboxItem[Effect], error: str, final: bool) -> None:
        if self.on_give_up is None:
            return
        try:
            await self.on_give_up(item, error, final)
        except Exception:
            log.exception("alerting about outbox #%s failed", item.id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
