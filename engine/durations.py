"""Durations as people write them in policies and forms: ``90m``, ``4h``, ``2d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")


class DurationError(ValueError):
    """A duration string that cannot be read; the message says what was expected."""


def parse_duration(text: str) -> timedelta:
    """Read ``90m``, ``4h``, ``2d``, ``1h30m`` (units s, m, h, d, w) into a timedelta."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or not _WHOLE.match(cleaned):
        raise DurationError(
            f"'{text}' is not a duration; write a number and a unit, e.g. 30m, 4h, 2d or 1h30m"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise DurationError(f"'{text}' is zero; a duration must be longer than that")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Write a timedelta the way a policy would: ``1h30m``, ``2d``, ``45s``."""
    remaining = int(value.total_seconds())
    if remaining <= 0:
        return "0m"
    parts: list[str] = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def count_per_window(data: object, noun: str, example: str) -> tuple[int, timedelta]:
    """``2/30d`` as (2, 30 days): the one way the policy writes "so many per so long".

    ``noun`` ("a limit") and ``example`` ("2/30d (2 in 30 days)") word the ValueError, which
    the policy's loader shows at the setting's line. The count may be 0: what that means is
    the caller's to say.
    """
    if not isinstance(data, str):
        raise ValueError(f"{noun} is written as a count and a duration, e.g. {example}")
    count, slash, window = data.strip().partition("/")
    if not slash or not count.strip().isdigit():
        raise ValueError(f"'{data}' is not {noun}; write a count and a duration, e.g. {example}")
    try:
        return int(count), parse_duration(window)
    except DurationError as exc:
        raise ValueError(f"'{data}' is not {noun}: {exc}") from None
