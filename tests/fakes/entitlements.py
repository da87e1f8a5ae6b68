"""An in-memory Entitlements connector that can be taken down, for dispatcher tests.

It stands in for a real target system (Slack user groups, LDAP, SCIM) only where the test
is about what Clearance does with a connector, not about the connector itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from engine.ports import ConnectorError, ConnectorFailure


@dataclass(frozen=True)
class Call:
    """One call made to the connector, and whether it succeeded."""

    op: str  # grant | revoke | is_granted | members
    principal: str | None
    group: str
    ok: bool


class MemoryEntitlements:
    """Memberships as a set of (principal, group); idempotent grant and revoke.

    Set ``down = True`` to make every call fail with ``failure`` (unreachable by default),
    as a target system in an outage would. ``during_grant`` (used once, then cleared) runs
    after the membership is added but before ``grant`` returns: what happens elsewhere
    while a grant is in flight.
    """

    def __init__(self) -> None:
        self.memberships: set[tuple[str, str]] = set()
        self.down = False
        self.failure = ConnectorFailure.UNREACHABLE
        self.calls: list[Call] = []
        self.during_grant: Callable[[], Awaitable[None]] | None = None

    def _check(self, op: str, principal: str | None, group: str) -> None:
        if self.down:
            self.calls.append(Call(op, principal, group, ok=False))
            raise ConnectorError(self.failure, f"memory connector is down ({op} {group})")
        self.calls.append(Call(op, principal, group, ok=True))

    async def grant(self, principal: str, group: str) -> None:
        self._check("grant", principal, group)
        self.memberships.add((principal, group))
        if self.during_grant is not None:
            hook, self.during_grant = self.during_grant, None
            await hook()

    async def revoke(self, principal: str, group: str) -> None:
        self._check("revoke", principal, group)
        self.memberships.discard((principal, group))

    async def is_granted(self, principal: str, group: str) -> bool:
        self._check("is_granted", principal, group)
        return (principal, group) in self.memberships

    async def members(self, group: str) -> Sequence[str]:
        self._check("members", None, group)
        return sorted(p for p, g in self.memberships if g == group)

    def calls_of(self, op: str, ok: bool | None = None) -> list[Call]:
        """The calls of one kind, optionally only the successful or the failed ones."""
        return [c for c in self.calls if c.op == op and (ok is None or c.ok is ok)]
