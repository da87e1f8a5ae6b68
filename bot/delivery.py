"""Sending, for every notifier: a rendered template to a person on each chat that reaches
them, to the admin channels, and again in place over messages sent earlier.

What a message is about (a request, a review campaign) is the caller's business; here it
is only the id the chat log files the message under. Each job delivers at most once per
platform and recipient, however often it is retried, and every message that may change
later is logged so it can be updated.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from bot.chat import Chat, Delivered, Unreachable
from bot.chat_records import SentMessages
from bot.clock import Clock
from engine.chat_records import SentMessage
from engine.directory import Person
from engine.ports import Directory
from message_templates import render_json

log = logging.getLogger(__name__)

# What a logged message shows now, for its recipient (None: leave it as it is).
DataFor = Callable[[SentMessage], Awaitable[Mapping[str, Any] | None]]


class Delivery:
    """Delivers rendered templates through the configured chats and logs what it sent."""

    def __init__(
        self, chats: Sequence[Chat], sent: SentMessages, directory: Directory, clock: Clock
    ) -> None:
        self.chats = {chat.platform: chat for chat in chats}
        self.sent = sent
        self.directory = directory
        self.clock = clock

    def chats_for(self, person: Person) -> Iterable[Chat]:
        return [chat for chat in self.chats.values() if chat.reaches(person)]

    async def direct(
        self,
        job: int,
        about: str,
        email: str,
        template: str,
        data: Mapping[str, Any],
        stage: int | None = None,
    ) -> bool:
        """DM ``email`` on every chat that reaches them (once per job); False when none
        did, for the caller to tell the admins: a message is never dropped silently."""
        person = await self.directory.person(email)
        reached = False
        if person is not None:
            for chat in self.chats_for(person):
                if await self.sent.was_sent(job, chat.platform, email):
                    reached = True
                    continue
                try:
                    delivered = await chat.send_direct(
                        person, render_json(chat.platform, template, data)
                    )
                except Unreachable:
                    continue
                reached = True
                await self._log(chat, about, email, template, stage, delivered, job)
        if not reached:
            log.warning("%s: %s could not be reached for %s", about, email, template)
        return reached

    async def admins(self, job: int, about: str, template: str, data: Mapping[str, Any]) -> None:
        """Post to every platform's admin channel once per job, however often it is retried."""
        for chat in self.chats.values():
            if await self.sent.was_sent(job, chat.platform, "admins"):
                continue
            delivered = await chat.post_admins(render_json(chat.platform, template, data))
            if delivered is not None:
                await self._log(chat, about, "admins", template, None, delivered, job)

    async def alert_admins(self, template: str, data: Mapping[str, Any]) -> None:
        """Post to the admin channels without logging (an alert about the sending itself)."""
        for chat in self.chats.values():
            await chat.post_admins(render_json(chat.platform, template, data))

    async def refresh(self, about: str, templates: tuple[str, ...], data_for: DataFor) -> None:
        """Update every logged message about ``about`` from one of ``templates`` in place."""
        for sent in await self.sent.for_request(about, templates):
            chat = self.chats.get(sent.platform)
            if chat is None:
                continue
            data = await data_for(sent)
            if data is None:
                continue
            await chat.update(
                sent.channel, sent.message_id, render_json(chat.platform, sent.template, data)
            )

    async def _log(
        self,
        chat: Chat,
        about: str,
        recipient: str,
        template: str,
        stage: int | None,
        delivered: Delivered,
        job: int,
    ) -> None:
        await self.sent.add(
            SentMessage(
                about,
                chat.platform,
                recipient,
                template,
                stage,
                delivered.channel,
                delivered.message_id,
            ),
            job,
            self.clock.now(),
        )
