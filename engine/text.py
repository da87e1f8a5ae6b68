"""Text a person typed that Clearance can keep exactly as typed.

Every piece of typed text (a justification, a reason, an admin command) ends up in a
database row and in the audit chain's hash, both of which take UTF-8. A lone UTF-16
surrogate has no UTF-8 form, and PostgreSQL text cannot hold NUL, so text with either
would fail half-way through an action; the chat edges refuse it up front instead
(``unstorable_text``), before anything is looked up or changed.
"""

from __future__ import annotations

import re

from engine.refusals import Refusal

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether ``text`` can be stored and hashed as it is."""
    return _UNSTORABLE.search(text) is None


def unstorable_refusals(typed: dict[str, str]) -> list[Refusal]:
    """One refusal per field (form input, or ``text``) whose typed text cannot be kept."""
    return [
        Refusal("unstorable_text", field) for field, text in typed.items() if not storable(text)
    ]
