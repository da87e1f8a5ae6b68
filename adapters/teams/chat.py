"""The Chat port on Teams: proactive 1:1 messages through stored conversation references,
in-place card updates, and the admin feed as new posts in the policy's Teams channel."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botbuilder.schema import ChannelAccount, ConversationParameters, ErrorResponseException

from adapters.teams.activities import card_activity
from adapters.teams.auth import BotConnector
from bot.chat import Delivered, Unreachable
from bot.chat_records import TeamsConversationStore
from engine.chat_records import TeamsConversation
from engine.directory import Person
from engine.policy import Policy

log = logging.getLogger(__name__)

# The bot was removed or blocked (403), or the conversation is gone (404): only a new
# install gives the bot a way back to that person.
_GONE = {403, 404}


def _status(exc: ErrorResponseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if status is not None else None


class TeamsChat:
    """Sends and updates Adaptive Cards rendered from ``message_templates/teams``."""

    platform = "teams"

    def __init__(
        self,
        connector: BotConnector,
        conversations: TeamsConversationStore,
        policy: Callable[[], Policy],
        tenant_id: str | None = None,
    ) -> None:
        self.connector = connector
        self.conversations = conversations
        self._policy = policy
        self.tenant_id = tenant_id

    def reaches(self, person: Person) -> bool:
        return True  # a stored 1:1 chat is found by teams_id or by the roster email

    async def send_direct(self, person: Person, message: dict[str, Any]) -> Delivered:
        conversation = await self.conversations.personal(person.teams_id, person.email)
        if conversation is None:
            # Teams only lets a bot write to people who installed it or talked to it.
            raise Unreachable(person.email)
        client = await self.connector.client(conversation.service_url)
        try:
            sent = await client.conversations.send_to_conversation(
                conversation.conversation_id, card_activity(message)
            )
        except ErrorResponseException as exc:
            if _status(exc) in _GONE:
                await self.conversations.forget(conversation.conversation_id)
                raise Unreachable(person.email) from None
            raise
        return Delivered(channel=conversation.conversation_id, message_id=str(sent.id))

    async def update(self, channel: str, message_id: str, message: dict[str, Any]) -> None:
        conversation = await self._where(channel)
        activity = card_activity(message)
        activity.id = message_id
        client = await self.connector.client(conversation.service_url)
        await client.conversations.update_activity(channel, message_id, activity)

    async def post_admins(self, message: dict[str, Any]) -> Delivered | None:
        channel = self._policy().admins.teams_channel
        if not channel:
            return None
        try:
            where = await self._where(channel)
        except LookupError:
            log.error(
                "cannot post to the Teams admin channel %s: add the bot to its team first",
                channel,
            )
            return None
        activity = card_activity(message)
        parameters = ConversationParameters(
            is_group=True,
            bot=ChannelAccount(id=where.bot_id),
            channel_data={"channel": {"id": channel}},
            activity=activity,
            tenant_id=where.tenant_id,
        )
        client = await self.connector.client(where.service_url)
        created = await client.conversations.create_conversation(parameters)
        return Delivered(channel=str(created.id), message_id=str(created.activity_id or ""))

    async def _where(self, conversation_id: str) -> TeamsConversation:
        """A stored conversation (for its service URL, tenant and bot id), or one of the
        tenant's: a channel thread or a channel the bot never heard from lives there too."""
        for key in (conversation_id, conversation_id.split(";", 1)[0]):
            found = await self.conversations.get(key)
            if found is not None:
                return found
        found = await self.conversations.any_in_tenant(self.tenant_id)
        if found is None:
            raise LookupError(f"no Teams conversation known for {conversation_id}")
        return found
