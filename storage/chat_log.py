"""Which chat messages were sent about which request, and which deliveries were handled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from engine.chat_records import SentMessage
from storage.database import Database
from storage.tables import ChatMessageRow, InboundEventRow

# SentMessage is plain data in engine/; bot/notifier.py still imports it from here.
__all__ = ["ChatLog", "SentMessage"]


class ChatLog:
    """Sent messages per request, and first-time checks for inbound deliveries.

    Implements the ``bot.chat_records`` ports ``SentMessages`` and ``InboundEvents``.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def was_sent(self, outbox_id: int, platform: str, recipient: str) -> bool:
        async with self.database.transaction() as session:
            row = (
                await session.execute(
                    select(col(ChatMessageRow.id)).where(
                        col(ChatMessageRow.outbox_id) == outbox_id,
                        col(ChatMessageRow.platform) == platform,
                        col(ChatMessageRow.recipient) == recipient,
                    )
                )
            ).first()
        return row is not None

    async def add(self, message: SentMessage, outbox_id: int | None, now: datetime) -> None:
        async with self.database.transaction() as session:
            session.add(
                ChatMessageRow(
                    request_id=message.request_id,
                    outbox_id=outbox_id,
                    platform=message.platform,
                    recipient=message.recipient,
                    template=message.template,
                    stage=message.stage,
                    channel=message.channel,
                    message_id=message.message_id,
                    created_at=now,
                )
            )

    async def for_request(self, request_id: str, templates: tuple[str, ...]) -> list[SentMessage]:
        async with self.database.transaction() as session:
            rows = (
                (
                    await session.execute(
                        select(ChatMessageRow)
                        .where(
                            col(ChatMessageRow.request_id) == request_id,
                            col(ChatMessageRow.template).in_(templates),
                        )
                        .order_by(col(ChatMessageRow.id))
                    )
                )
                .scalars()
                .all()
            )
        return [
            SentMessage(
                r.request_id, r.platform, r.recipient, r.template, r.stage, r.channel, r.message_id
            )
            for r in rows
        ]

    async def about(self, platform: str, channel: str, message_id: str) -> SentMessage | None:
        """What a logged message was about (a card someone acted on), or None."""
        async with self.database.transaction() as session:
            r = (
                (
                    await session.execute(
                        select(ChatMessageRow)
                        .where(
                            col(ChatMessageRow.platform) == platform,
                            col(ChatMessageRow.channel) == channel,
                            col(ChatMessageRow.message_id) == message_id,
                        )
                        .order_by(col(ChatMessageRow.id))
                        .limit(1)
                    )
                )
                .scalars()
                .first()
            )
        if r is None:
            return None
        return SentMessage(
            r.request_id, r.platform, r.recipient, r.template, r.stage, r.channel, r.message_id
        )

    async def first_time(self, key: str, now: datetime) -> bool:
        """True the first time a delivery key is seen (across replicas); False for repeats."""
        try:
            async with self.database.transaction() as session:
                session.add(InboundEventRow(key=key[:200], received_at=now))
        except IntegrityError:
            return False
        return True

    async def release(self, key: str) -> None:
        """Forget a delivery key: the same delivery may be acted on again (it was refused)."""
        async with self.database.transaction() as session:
            await session.execute(
                delete(InboundEventRow).where(col(InboundEventRow.key) == key[:200])
            )
