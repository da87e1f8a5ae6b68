"""The outside systems the domain needs, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from engine.directory import Person


class Directory(Protocol):
    """Who people are, who manages whom, who is in which group (static, LDAP, SCIM)."""

    async def person(self, email: str) -> Person | None:
        """The person with this email, or None when the directory does not know them."""
        ...

    async def person_by_chat_id(self, platform: str, chat_id: str) -> Person | None:
        """The person whose verified chat identity (Slack user id, Teams AAD id) this is."""
        ...

    async def group_members(self, group: str) -> Sequence[str] | None:
        """Emails of a group's members, or None when there is no such group."""
        ...


class ConnectorFailure(StrEnum):
    """Why a connector could not do what was asked; decides whether retrying can help."""

    UNREACHABLE = "unreachable"
    AUTH = "auth"
    NO_SUCH_GROUP = "no_such_group"
    NO_SUCH_USER = "no_such_user"
    REJECTED = "rejected"

    @property
    def retryable(self) -> bool:
        return self in (ConnectorFailure.UNREACHABLE, ConnectorFailure.REJECTED)


@dataclass
class ConnectorError(Exception):
    """A typed failure from an Entitlements connector; the message never holds secrets."""

    failure: ConnectorFailure
    message: str

    def __str__(self) -> str:
        return f"{self.failure.value}: {self.message}"


class Entitlements(Protocol):
    """Membership of a principal in a group of one target system. Idempotent both ways."""

    async def grant(self, principal: str, group: str) -> None:
        """Add the principal; granting what is already granted succeeds. Raises ConnectorError."""
        ...

    async def revoke(self, principal: str, group: str) -> None:
        """Remove the principal; removing what is absent succeeds. Raises ConnectorError."""
        ...

    async def is_granted(self, principal: str, group: str) -> bool:
        """Whether the principal is in the group right now."""
        ...

    async def members(self, group: str) -> Sequence[str]:
        """Current members (principals) of the group, for drift reports."""
        ...
