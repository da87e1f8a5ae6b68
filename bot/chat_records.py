"""The records chat surfaces keep, as ports: the sent-message log, the inbound-delivery
check and the Teams conversation store.

Adapters reach these only through the protocols here; ``storage/`` implements them
(``storage.chat_log.ChatLog``, ``storage.conversations.TeamsConversations``) and
``bot/app.py`` wires the implementations in. The values they hold are plain data in
``engine.chat_records``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from engine.chat_records import SentMessage, TeamsConversation


class SentMessages(Protocol):
    """Which chat messages were sent about which request, to update or recognise them."""

    async def was_sent(self, outbox_id: int, platform: str, recipient: str) -> bool:
        """Whether an outbox job already delivered to this recipient on this platform."""
        ...

    async def add(self, message: SentMessage, outbox_id: int | None, now: datetime) -> None:
        """Log a message; ``outbox_id`` is the job that sent it, None for an answer in place."""
        ...

    async def for_request(self, request_id: str, templates: tuple[str, ...]) -> list[SentMessage]:
        """Every logged message about a request rendered from one of ``templates``."""
        ...

    async def about(self, platform: str, channel: str, message_id: str) -> SentMessage | None:
        """What a logged message was about (a card someone acted on), or None."""
        ...


class InboundEvents(Protocol):
    """First-time checks for inbound deliveries, shared by every replica."""

    async def first_time(self, key: str, now: datetime) -> bool:
        """True the first time a delivery key is seen; False for repeats."""
        ...

    async def release(self, key: str) -> None:
        """Forget a delivery key: the same delivery may be acted on again."""
        ...


class TeamsConversationStore(Protocol):
    """The Teams conversations the bot may write to (Teams allows no other)."""

    async def save(self, conversation: TeamsConversation, now: datetime) -> None:
        """Insert or refresh a conversation; a known email is kept when none is given."""
        ...

    async def get(self, conversation_id: str) -> TeamsConversation | None: ...

    async def personal(
        self, teams_id: str | None, email: str | None = None
    ) -> TeamsConversation | None:
        """The newest 1:1 chat with a person: by Teams id, else email."""
        ...

    async def any_in_tenant(self, tenant_id: str | None) -> TeamsConversation | None:
        """The newest conversation of a tenant (any tenant when None)."""
        ...

    async def forget(self, conversation_id: str) -> None:
        """The bot was removed from a conversation: it can no longer message it."""
        ...
