"""Directory port over SCIM: users (active flag, emails) and the enterprise ``manager``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.scim.client import ENTERPRISE, ScimClient, _quote
from engine.directory import Person


def _email(user: dict[str, Any]) -> str | None:
    emails = user.get("emails") or []
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    value = primary.get("value") if primary else None
    if not value and "@" in str(user.get("userName", "")):
        value = user["userName"]
    return str(value).lower() if value else None


class ScimDirectory:
    """People and managers from a SCIM service provider (Okta, Entra, ...)."""

    def __init__(self, client: ScimClient) -> None:
        self.client = client

    async def _user(self, user_id: str) -> dict[str, Any] | None:
        status, body = await self.client.request("GET", f"/Users/{user_id}", "reading a user")
        return body if status == 200 and isinstance(body, dict) else None

    async def _person(self, user: dict[str, Any]) -> Person | None:
        email = _email(user)
        if email is None:
            return None
        manager_ref = (user.get(ENTERPRISE) or {}).get("manager") or {}
        manager = None
        if manager_ref.get("value"):
            found = await self._user(str(manager_ref["value"]))
            manager = _email(found) if found else None
        name = user.get("displayName") or (user.get("name") or {}).get("formatted") or email
        return Person(
            email=email,
            name=str(name),
            manager=manager,
            active=bool(user.get("active", True)),
            slack_id=None,
            teams_id=None,
        )

    async def person(self, email: str) -> Person | None:
        user = await self.client.find_user(email)
        return await self._person(user) if user else None

    async def person_by_chat_id(self, platform: str, chat_id: str) -> Person | None:
        return None  # SCIM has no standard chat id: people are matched by verified email

    async def group_members(self, group: str) -> Sequence[str] | None:
        status, body = await self.client.request(
            "GET",
            "/Groups",
            f"reading group {group}",
            params={"filter": f'displayName eq "{_quote(group)}"'},
        )
        resources = (body or {}).get("Resources") or [] if status == 200 else []
        if len(resources) != 1:
            return None
        out = []
        for member in resources[0].get("members") or []:
            user = await self._user(str(member.get("value")))
            email = _email(user) if user else None
            if email:
                out.append(email)
        return out
