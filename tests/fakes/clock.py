"""A clock tests move by hand, so timers, backoff and expiry run without waiting."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    """Implements bot.clock.Clock; time stands still until a test moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards; use set() on purpose")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> datetime:
        self._now = _aware(when)
        return self._now


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("ManualClock needs timezone-aware datetimes")
    return when
