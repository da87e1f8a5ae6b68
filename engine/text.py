"""Text a person typed that Clearance can keep exactly as typed.

Every piece of typed text (a justification, a reason, an admin command) ends up in a
database row and in the audit chain's hash, both of which take UTF-8. A lone UTF-16
surrogate has no UTF-8 form, and PostgreSQL text cannot hold NUL, so text with either
would fail half-way through an action; the chat edges refuse it up front instead
(``unstorable_text``), before anything is looked up or changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from engine.refusals import Refusal

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

Path = tuple[str, ...]


def storable(text: str) -> bool:
    """Whether ``text`` can be stored and hashed as it is."""
    return _UNSTORABLE.search(text) is None


def unstorable_refusals(typed: Mapping[str, str]) -> list[Refusal]:
    """One refusal per field (form input, or ``text``) whose typed text cannot be kept."""
    return [
        Refusal("unstorable_text", field) for field, text in typed.items() if not storable(text)
    ]


def unstorable_path(value: object, typed: Callable[[Path], bool], max_depth: int) -> Path | None:
    """Where in a parsed JSON value the first string (or key) that cannot be stored is,
    outside the places ``typed`` says hold a person's text (theirs to refuse with an
    answer); None when there is none. Raises ValueError when nested deeper than
    ``max_depth``: no payload from a chat platform is."""
    stack: list[tuple[object, Path]] = [(value, ())]
    while stack:
        node, where = stack.pop()
        if len(where) > max_depth:
            raise ValueError(f"nested deeper than {max_depth}")
        if isinstance(node, str):
            if not storable(node) and not typed(where):
                return where
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and not storable(key):
                    return (*where, "<key>")
                stack.append((item, (*where, str(key))))
        elif isinstance(node, list):
            stack.extend((item, (*where, str(i))) for i, item in enumerate(node))
    return None
