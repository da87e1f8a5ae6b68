"""The Directory in force: the one the current policy's ``directory:`` section names."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from adapters.ldap.connection import LdapClient, LdapSettings
from adapters.ldap.directory import LdapDirectory
from adapters.scim.client import ScimClient, ScimSettings
from adapters.scim.directory import ScimDirectory
from adapters.static.directory import StaticDirectory
from engine.directory import Person
from engine.policy import Policy
from engine.ports import Directory


class PolicyDirectory:
    """Implements Directory by delegating to static, LDAP or SCIM as the policy says.

    A reloaded policy with different directory settings switches on the next call.
    """

    def __init__(self, policy: Callable[[], Policy]) -> None:
        self._policy = policy
        self._key: str | None = None
        self._impl: Directory | None = None

    def current(self) -> Directory:
        config = self._policy().document.directory
        key = json.dumps([config.type, config.options], sort_keys=True, default=str)
        if self._impl is None or key != self._key:
            impl: Directory
            if config.type == "ldap":
                impl = LdapDirectory(
                    LdapClient(LdapSettings.from_options("directory", config.options))
                )
            elif config.type == "scim":
                impl = ScimDirectory(
                    ScimClient(ScimSettings.from_options("directory", config.options))
                )
            else:
                impl = StaticDirectory(self._policy)
            self._impl, self._key = impl, key
        return self._impl

    async def person(self, email: str) -> Person | None:
        return await self.current().person(email)

    async def person_by_chat_id(self, platform: str, chat_id: str) -> Person | None:
        return await self.current().person_by_chat_id(platform, chat_id)

    async def group_members(self, group: str) -> Sequence[str] | None:
        return await self.current().group_members(group)
