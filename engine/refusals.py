"""Why the engine said no: error values a chat surface can show next to a form field."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """One reason a request or decision was refused. ``field`` names the form input, if any."""

    code: str
    message: str
    field: str | None = None


class Refused(Exception):
    """Raised by engine transitions; nothing was changed. Carries every refusal found."""

    def __init__(self, *refusals: Refusal) -> None:
        super().__init__("; ".join(r.message for r in refusals))
        self.refusals: tuple[Refusal, ...] = refusals

    @property
    def code(self) -> str:
        return self.refusals[0].code

    @property
    def message(self) -> str:
        return str(self)

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
