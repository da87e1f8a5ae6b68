"""Why the engine said no: error values a chat surface can show next to a form field.

A refusal is a code and the facts behind it; what a person reads is worded in
``message_templates/refusals.txt.j2`` (one macro per code), so the engine holds no prose.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


class Refusal:
    """One reason a request or decision was refused: a code, the form input it is about
    (``field``, if any) and the parameters its wording needs."""

    __slots__ = ("code", "field", "params")

    def __init__(self, code: str, field: str | None = None, **params: Any) -> None:
        self.code = code
        self.field = field
        self.params: Mapping[str, Any] = params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refusal) and (self.code, self.field, dict(self.params)) == (
            other.code,
            other.field,
            dict(other.params),
        )

    def __hash__(self) -> int:
        return hash((self.code, self.field))

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, field={self.field!r}, params={dict(self.params)!r})"


class Refused(Exception):
    """Raised by engine transitions; nothing was changed. Carries every refusal found."""

    def __init__(self, *refusals: Refusal) -> None:
        super().__init__(", ".join(r.code for r in refusals))
        self.refusals: tuple[Refusal, ...] = refusals

    @property
    def code(self) -> str:
        return self.refusals[0].code

    def by_field(
        self, fields: Collection[str] | None = None, fallback: str | None = None
    ) -> dict[str, Refusal]:
        """Refusals keyed by form field, for inline errors (the first one per field).

        With ``fields`` (the inputs a form has), a refusal about anything else is shown on
        ``fallback``, or, without one, under its own field or code for the form to list.
        """
        out: dict[str, Refusal] = {}
        for r in self.refusals:
            key = r.field
            if fields is not None and key not in fields:
                key = fallback or r.field or r.code
            if key is not None:
                out.setdefault(key, r)
        return out
