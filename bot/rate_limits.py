"""Per-caller rate limits of the API: at most ``count`` calls in any ``window``.

Kept in memory per process (a token bucket per caller): each replica applies the limit to
what reaches it, which bounds a runaway pipeline without a database write per call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

# Buckets of callers unseen this long are forgotten, so the table does not grow forever.
_FORGET_AFTER = 3600.0


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimits:
    """``take(key, count, window)`` spends one call; returns None, or seconds to wait."""

    def __init__(self, monotonic: Callable[[], float] | None = None) -> None:
        self.monotonic = monotonic or time.monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._swept = self.monotonic()

    def take(self, key: str, count: int, window: timedelta) -> int | None:
        now = self.monotonic()
        self._sweep(now)
        rate = count / max(window.total_seconds(), 1e-9)  # calls regained per second
        bucket = self._buckets.setdefault(key, _Bucket(float(count), now))
        bucket.tokens = min(float(count), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / rate))

    def _sweep(self, now: float) -> None:
        if now - self._swept < _FORGET_AFTER:
            return
        self._swept = now
        for key in [k for k, b in self._buckets.items() if now - b.at > _FORGET_AFTER]:
            del self._buckets[key]
