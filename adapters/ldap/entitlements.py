"""Grants as LDAP group membership (``groupOfNames`` / AD ``group``, attribute ``member``).

The user's DN is found by mail. Adding a member who is already there and removing one
who is absent both succeed, so a retried job is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

import ldap3

from adapters.ldap.connection import (
    ALREADY_MEMBER,
    NOT_A_MEMBER,
    OBJECT_CLASS_VIOLATION,
    LdapClient,
    result_failure,
)
from engine.ports import ConnectorError, ConnectorFailure


class LdapGroups:
    """Entitlements over LDAP groups."""

    def __init__(self, client: LdapClient) -> None:
        self.client = client
        self.settings = client.settings
        self._dn_cache: dict[str, str] = {}

    async def user_dn(self, email: str) -> str:
        cached = self._dn_cache.get(email.lower())
        if cached:
            return cached

        def search(conn: ldap3.Connection) -> str | None:
            _status, _result, response, _ = conn.search(
                self.settings.users_base,
                self.settings.user_search(email),
                attributes=[],
                size_limit=2,
            )
            entries = [e for e in response or [] if e.get("type") == "searchResEntry"]
            if len(entries) > 1:
                raise ConnectorError(
                    ConnectorFailure.NO_SUCH_USER, f"{email} matches more than one LDAP entry"
                )
            return str(entries[0]["dn"]) if entries else None

        dn = await self.client.run(f"looking up {email}", search)
        if dn is None:
            raise ConnectorError(ConnectorFailure.NO_SUCH_USER, f"no LDAP entry has mail {email}")
        self._dn_cache[email.lower()] = dn
        return dn

    async def grant(self, principal: str, group: str) -> None:
        dn = await self.user_dn(principal)
        group_dn = self.settings.group_dn(group)
        attr = self.settings.member_attribute

        def add(conn: ldap3.Connection) -> None:
            status, result, _, _ = conn.modify(group_dn, {attr: [(ldap3.MODIFY_ADD, [dn])]})
            if not status and result["result"] != ALREADY_MEMBER:
                raise result_failure(result, f"adding {principal} to {group}")

        await self.client.run(f"adding {principal} to {group}", add)

    async def revoke(self, principal: str, group: str) -> None:
        try:
            dn = await self.user_dn(principal)
        except ConnectorError as exc:
            if exc.failure is ConnectorFailure.NO_SUCH_USER:
                return  # a person gone from the directory holds no membership
            raise
        group_dn = self.settings.group_dn(group)
        attr = self.settings.member_attribute
        placeholder = self.settings.placeholder_member

        def remove(conn: ldap3.Connection) -> None:
            status, result, _, _ = conn.modify(group_dn, {attr: [(ldap3.MODIFY_DELETE, [dn])]})
            if status or result["result"] == NOT_A_MEMBER:
                return
            if result["result"] == OBJECT_CLASS_VIOLATION and placeholder:
                # groupOfNames must keep one member: swap the last one for the placeholder.
                status, result, _, _ = conn.modify(
                    group_dn, {attr: [(ldap3.MODIFY_REPLACE, [placeholder])]}
                )
                if status:
                    return
            raise result_failure(result, f"removing {principal} from {group}")

        await self.client.run(f"removing {principal} from {group}", remove)

    async def _member_dns(self, group: str) -> list[str]:
        group_dn = self.settings.group_dn(group)
        attr = self.settings.member_attribute

        def read(conn: ldap3.Connection) -> list[str]:
            status, result, response, _ = conn.search(
                group_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attr]
            )
            if not status:
                raise result_failure(result, f"reading {group}")
            values = response[0]["attributes"].get(attr, []) if response else []
            return [str(v) for v in values if str(v) != self.settings.placeholder_member]

        return await self.client.run(f"reading {group}", read)

    async def is_granted(self, principal: str, group: str) -> bool:
        dn = await self.user_dn(principal)
        return dn.lower() in {m.lower() for m in await self._member_dns(group)}

    async def members(self, group: str) -> Sequence[str]:
        """Members by mail (entries without mail are reported by DN)."""
        out = []
        for dn in await self._member_dns(group):
            mail = await self.mail_of(dn)
            out.append(mail or dn)
        return out

    async def mail_of(self, dn: str) -> str | None:
        attr = self.settings.mail_attribute

        def read(conn: ldap3.Connection) -> str | None:
            status, _result, response, _ = conn.search(
                dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attr]
            )
            if not status or not response:
                return None
            values = response[0]["attributes"].get(attr) or []
            value = values[0] if isinstance(values, list) and values else values
            return str(value).lower() if value else None

        return await self.client.run(f"reading {dn}", read)
