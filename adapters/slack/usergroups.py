"""Grants as membership of a Slack user group (``usergroups.users.list`` / ``.update``).

``usergroups.users.update`` replaces the whole member list, so every change to one group
holds that group's lock and re-reads the list right before writing: two grants landing at
once never drop a member. Slack cannot hold an empty user group, so removing the last
member disables the group, and the next grant enables it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from engine.ports import ConnectorError, ConnectorFailure, Directory

_AUTH = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "account_inactive",
    "missing_scope",
    "not_allowed_token_type",
    "no_permission",
    "permission_denied",
    "paid_teams_only",
}
_NO_GROUP = {"no_such_subteam", "subteam_not_found", "invalid_usergroup"}
_NO_USER = {"users_not_found", "user_not_found", "invalid_users"}

Locks = Callable[[str], AbstractAsyncContextManager[None]]


def _failure(exc: Exception) -> ConnectorError:
    if isinstance(exc, SlackApiError):
        if exc.response.status_code >= 500 or exc.response.status_code == 429:
            return ConnectorError(
                ConnectorFailure.UNREACHABLE, f"Slack unavailable (HTTP {exc.response.status_code})"
            )
        code = str(exc.response.get("error", "unknown"))
        if code in _AUTH:
            return ConnectorError(ConnectorFailure.AUTH, f"Slack refused the bot token ({code})")
        if code in _NO_GROUP:
            return ConnectorError(
                ConnectorFailure.NO_SUCH_GROUP, f"no such Slack user group ({code})"
            )
        if code in _NO_USER:
            return ConnectorError(
                ConnectorFailure.NO_SUCH_USER, f"Slack does not know the user ({code})"
            )
        return ConnectorError(ConnectorFailure.REJECTED, f"Slack said {code}")
    return ConnectorError(ConnectorFailure.UNREACHABLE, f"Slack unreachable: {type(exc).__name__}")


class SlackUserGroups:
    """Entitlements over Slack user groups; principals are emails, mapped to Slack user ids."""

    def __init__(self, client: AsyncWebClient, directory: Directory, locks: Locks) -> None:
        self.client = client
        self.directory = directory
        self.locks = locks

    async def _call(self, method: str, **kwargs: object) -> dict[str, object]:
        try:
            response = await getattr(self.client, method)(**kwargs)
        except (TimeoutError, SlackApiError, OSError) as exc:
            raise _failure(exc) from None
        except Exception as exc:  # aiohttp client errors and the like: the network failed
            raise _failure(exc) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def user_id(self, email: str) -> str:
        person = await self.directory.person(email)
        if person is not None and person.slack_id:
            return person.slack_id
        data = await self._call("users_lookupByEmail", email=email)
        user = data.get("user")
        if not isinstance(user, dict) or not user.get("id"):
            raise ConnectorError(ConnectorFailure.NO_SUCH_USER, f"no Slack user with email {email}")
        return str(user["id"])

    async def _member_ids(self, group: str) -> list[str]:
        try:
            data = await self._call("usergroups_users_list", usergroup=group, include_disabled=True)
        except ConnectorError:
            raise
        users = data.get("users") or []
        return [str(u) for u in users] if isinstance(users, list) else []

    async def grant(self, principal: str, group: str) -> None:
        uid = await self.user_id(principal)
        async with self.locks(f"slack-usergroup:{group}"):
            members = await self._member_ids(group)
            if uid in members:
                return
            if not members:
                await self._enable(group)
            await self._call(
                "usergroups_users_update", usergroup=group, users=",".join([*members, uid])
            )

    async def revoke(self, principal: str, group: str) -> None:
        try:
            uid = await self.user_id(principal)
        except ConnectorError as exc:
            if exc.failure is ConnectorFailure.NO_SUCH_USER:
                return  # someone Slack does not know holds no membership
            raise
        async with self.locks(f"slack-usergroup:{group}"):
            members = await self._member_ids(group)
            if uid not in members:
                return
            remaining = [m for m in members if m != uid]
            if remaining:
                await self._call(
                    "usergroups_users_update", usergroup=group, users=",".join(remaining)
                )
            else:
                await self._call("usergroups_disable", usergroup=group)

    async def _enable(self, group: str) -> None:
        try:
            await self._call("usergroups_enable", usergroup=group)
        except ConnectorError as exc:
            if "already_enabled" not in exc.message:
                raise

    async def is_granted(self, principal: str, group: str) -> bool:
        return await self.user_id(principal) in await self._member_ids(group)

    async def members(self, group: str) -> Sequence[str]:
        """Members as emails (directory first, then ``users.info``); unknown ids stay ids."""
        out: list[str] = []
        for uid in await self._member_ids(group):
            person = await self.directory.person_by_chat_id("slack", uid)
            if person is not None:
                out.append(person.email)
                continue
            data = await self._call("users_info", user=uid)
            user = data.get("user")
            profile = user.get("profile") if isinstance(user, dict) else None
            email = profile.get("email") if isinstance(profile, dict) else None
            out.append(str(email).lower() if email else uid)
        return out
