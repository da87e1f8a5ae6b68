"""The Chat port on Slack: DMs through ``conversations.open`` + ``chat.postMessage``, updates
through ``chat.update``, the admin feed in the policy's admin channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat import Delivered, Unreachable
from engine.directory import Person
from engine.policy import Policy

_NO_USER = {
    "users_not_found",
    "user_not_found",
    "user_disabled",
    "cannot_dm_bot",
    "user_not_visible",
}


class SlackChat:
    """Sends and updates Slack messages rendered from ``message_templates/slack``."""

    platform = "slack"

    def __init__(self, client: AsyncWebClient, policy: Callable[[], Policy]) -> None:
        self.client = client
        self._policy = policy

    def reaches(self, person: Person) -> bool:
        return True  # a slack_id, or Slack may know the email

    async def user_id(self, person: Person) -> str:
        if person.slack_id:
            return person.slack_id
        try:
            response = await self.client.users_lookupByEmail(email=person.email)
        except SlackApiError as exc:
            if exc.response.get("error") in _NO_USER:
                raise Unreachable(person.email) from None
            raise
        return str(response["user"]["id"])

    async def send_direct(self, person: Person, message: dict[str, Any]) -> Delivered:
        uid = await self.user_id(person)
        try:
            opened = await self.client.conversations_open(users=uid)
        except SlackApiError as exc:
            if exc.response.get("error") in _NO_USER:
                raise Unreachable(person.email) from None
            raise
        channel = str(opened["channel"]["id"])
        posted = await self.client.chat_postMessage(channel=channel, **_message(message))
        return Delivered(channel=str(posted["channel"]), message_id=str(posted["ts"]))

    async def update(self, channel: str, message_id: str, message: dict[str, Any]) -> None:
        await self.client.chat_update(
            channel=channel,
            ts=message_id,
            text=message.get("text", ""),
            blocks=message.get("blocks"),
        )

    async def post_admins(self, message: dict[str, Any]) -> Delivered | None:
        channel = self._policy().admins.channel
        if not channel:
            return None
        posted = await self.client.chat_postMessage(channel=channel, **_message(message))
        return Delivered(channel=str(posted["channel"]), message_id=str(posted["ts"]))


def _message(message: dict[str, Any]) -> dict[str, Any]:
    # Links in user text are never unfurled: a justification cannot pull in previews.
    return {
        "text": message.get("text", ""),
        "blocks": message.get("blocks"),
        "unfurl_links": False,
        "unfurl_media": False,
    }
