"""What a card button carries: an id and a small number (a stage, an item), read safely.

A value comes back from the chat platform as the client sent it, so it is untrusted text:
only ASCII digits of a bounded length are a number (``"²".isdigit()`` is True and
``int("²")`` raises; a thousand digits would still parse, slowly).
"""

from __future__ import annotations

import re

_SMALL = re.compile(r"[0-9]{1,6}")


def small_number(text: str) -> int | None:
    """``text`` as a number of at most six digits, or None."""
    return int(text) if _SMALL.fullmatch(text) else None


def id_and_number(value: str) -> tuple[str, int | None]:
    """``<id>:<n>`` -> (id, n); n is None when it is missing or not a small number."""
    ident, _, number = value.partition(":")
    return ident, small_number(number)
