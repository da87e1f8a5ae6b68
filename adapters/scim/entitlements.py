"""Grants as SCIM group membership: PATCH add / remove of one member."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.scim.client import PATCH_OP, ScimClient
from engine.ports import ConnectorError, ConnectorFailure


class ScimGroups:
    """Entitlements over SCIM groups; principals are found by the configured user filter."""

    def __init__(self, client: ScimClient) -> None:
        self.client = client
        self._ids: dict[str, str] = {}

    async def user_id(self, email: str) -> str:
        if email.lower() in self._ids:
            return self._ids[email.lower()]
        user = await self.client.find_user(email)
        if user is None:
            raise ConnectorError(ConnectorFailure.NO_SUCH_USER, f"no SCIM user matches {email}")
        self._ids[email.lower()] = str(user["id"])
        return self._ids[email.lower()]

    async def _patch(self, group: str, operation: dict[str, Any], what: str) -> None:
        gid = await self.client.group_id(group)
        status, body = await self.client.request(
            "PATCH", f"/Groups/{gid}", what, json={"schemas": [PATCH_OP], "Operations": [operation]}
        )
        if status == 404:
            raise ConnectorError(ConnectorFailure.NO_SUCH_GROUP, f"no SCIM group {group}")
        if status not in (200, 204):
            detail = (body or {}).get("detail") if isinstance(body, dict) else None
            raise ConnectorError(
                ConnectorFailure.REJECTED, f"SCIM refused {what} ({status} {detail or ''})".strip()
            )

    async def grant(self, principal: str, group: str) -> None:
        uid = await self.user_id(principal)
        if uid in await self._member_ids(group):
            return  # PATCH add of an existing member is not idempotent on every server
        await self._patch(
            group,
            {"op": "add", "path": "members", "value": [{"value": uid}]},
            f"adding {principal} to {group}",
        )

    async def revoke(self, principal: str, group: str) -> None:
        try:
            uid = await self.user_id(principal)
        except ConnectorError as exc:
            if exc.failure is ConnectorFailure.NO_SUCH_USER:
                return
            raise
        if uid not in await self._member_ids(group):
            return
        await self._patch(
            group,
            {"op": "remove", "path": f'members[value eq "{uid}"]'},
            f"removing {principal} from {group}",
        )

    async def _group(self, group: str) -> dict[str, Any]:
        gid = await self.client.group_id(group)
        status, body = await self.client.request("GET", f"/Groups/{gid}", f"reading {group}")
        if status == 404 or not isinstance(body, dict):
            raise ConnectorError(ConnectorFailure.NO_SUCH_GROUP, f"no SCIM group {group}")
        return body

    async def _member_ids(self, group: str) -> list[str]:
        return [str(m["value"]) for m in (await self._group(group)).get("members") or []]

    async def is_granted(self, principal: str, group: str) -> bool:
        return await self.user_id(principal) in await self._member_ids(group)

    async def members(self, group: str) -> Sequence[str]:
        out = []
        for uid in await self._member_ids(group):
            status, user = await self.client.request("GET", f"/Users/{uid}", "reading a member")
            emails = (user or {}).get("emails") or [] if status == 200 else []
            primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
            out.append(
                str(primary["value"]).lower() if primary else str((user or {}).get("userName", uid))
            )
        return out
