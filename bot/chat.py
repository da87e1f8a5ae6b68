"""The Chat port: what the application needs from a chat platform (Slack, Teams)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from engine.directory import Person


@dataclass(frozen=True)
class Delivered:
    """Where a sent message lives, so it can be updated in place later."""

    channel: str
    message_id: str


class Unreachable(Exception):
    """The person has no account Clearance can message on this platform."""


class Chat(Protocol):
    """One chat platform. Messages are rendered template payloads (Block Kit, Adaptive Card)."""

    platform: str

    def reaches(self, person: Person) -> bool:
        """Whether this platform may have an account for the person (cheap, no I/O)."""
        ...

    async def send_direct(self, person: Person, message: dict[str, Any]) -> Delivered:
        """A direct message; raises Unreachable when the person has no account here."""
        ...

    async def update(self, channel: str, message_id: str, message: dict[str, Any]) -> None:
        """Replace a message sent earlier."""
        ...

    async def post_admins(self, message: dict[str, Any]) -> Delivered | None:
        """Post to the admin channel of this platform; None when none is configured."""
        ...
