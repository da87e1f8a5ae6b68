"""Directory port over LDAP: people by ``mail``, managers from the ``manager`` DN, groups
from their ``member`` DNs. Read live on every stage start, so a manager change counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars

from adapters.ldap.connection import LdapClient, result_failure
from engine.directory import Person


def _first(attributes: dict[str, Any], name: str | None) -> str | None:
    if not name:
        return None
    value = attributes.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


class LdapDirectory:
    """Who people are and who manages whom, from an LDAP or Active Directory server."""

    def __init__(self, client: LdapClient) -> None:
        self.client = client
        self.settings = client.settings

    def _attributes(self) -> list[str]:
        s = self.settings
        return [
            a
            for a in (
                s.mail_attribute,
                s.name_attribute,
                "cn",
                s.manager_attribute,
                s.slack_id_attribute,
                s.teams_id_attribute,
            )
            if a
        ]

    async def _search(
        self, what: str, base: str, query: str, scope: str = ldap3.SUBTREE
    ) -> list[tuple[str, dict[str, Any]]]:
        inactive = self.settings.inactive_filter

        def search(conn: ldap3.Connection) -> list[tuple[str, dict[str, Any]]]:
            status, result, response, _ = conn.search(
                base, query, search_scope=scope, attributes=self._attributes(), size_limit=50
            )
            if not status and result["result"] not in (0, 4, 32):  # 4: size limit, 32: none
                raise result_failure(result, what)
            found = [
                (str(e["dn"]), dict(e["attributes"]))
                for e in response or []
                if e.get("type") == "searchResEntry"
            ]
            if inactive and found:
                for dn, attrs in found:
                    ok, _r, matched, _ = conn.search(
                        dn, inactive, search_scope=ldap3.BASE, attributes=[]
                    )
                    attrs["__inactive__"] = bool(ok and matched)
            return found

        return await self.client.run(what, search)

    async def _person(self, dn: str, attrs: dict[str, Any]) -> Person | None:
        s = self.settings
        mail = _first(attrs, s.mail_attribute)
        if not mail:
            return None
        manager_dn = _first(attrs, s.manager_attribute)
        manager = None
        if manager_dn:
            found = await self._search(
                f"reading the manager of {mail}", manager_dn, "(objectClass=*)", ldap3.BASE
            )
            manager = _first(found[0][1], s.mail_attribute) if found else None
        return Person(
            email=mail.lower(),
            name=_first(attrs, s.name_attribute) or _first(attrs, "cn") or mail,
            manager=manager.lower() if manager else None,
            active=not attrs.get("__inactive__", False),
            slack_id=_first(attrs, s.slack_id_attribute),
            teams_id=_first(attrs, s.teams_id_attribute),
        )

    async def person(self, email: str) -> Person | None:
        found = await self._search(
            f"looking up {email}", self.settings.users_base, self.settings.user_search(email)
        )
        if len(found) != 1:
            return None  # unknown, or ambiguous: never guess who someone is
        return await self._person(*found[0])

    async def person_by_chat_id(self, platform: str, chat_id: str) -> Person | None:
        attr = {
            "slack": self.settings.slack_id_attribute,
            "teams": self.settings.teams_id_attribute,
        }.get(platform)
        if not attr:
            return None
        found = await self._search(
            f"looking up {platform} id",
            self.settings.users_base,
            f"({attr}={escape_filter_chars(chat_id)})",
        )
        return await self._person(*found[0]) if len(found) == 1 else None

    async def group_members(self, group: str) -> Sequence[str] | None:
        s = self.settings
        attr = s.member_attribute

        def read(conn: ldap3.Connection) -> list[str] | None:
            status, result, response, _ = conn.search(
                s.group_dn(group), "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attr]
            )
            if not status:
                if result["result"] == 32:
                    return None
                raise result_failure(result, f"reading group {group}")
            values = response[0]["attributes"].get(attr, []) if response else []
            return [str(v) for v in values if str(v) != s.placeholder_member]

        dns = await self.client.run(f"reading group {group}", read)
        if dns is None:
            return None
        members = []
        for dn in dns:
            found = await self._search(f"reading member {dn}", dn, "(objectClass=*)", ldap3.BASE)
            mail = _first(found[0][1], s.mail_attribute) if found else None
            if mail:
                members.append(mail.lower())
        return members
