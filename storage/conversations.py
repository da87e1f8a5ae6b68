"""Stored Teams conversation references: where the bot may message a person or a channel.

Teams lets a bot start a message only in a conversation it has learnt of (the user or team
installed the bot, or talked to it). Each such conversation is kept here as plain values;
the Teams adapter turns them back into Bot Framework conversation references.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select
from sqlmodel import col

from engine.chat_records import PERSONAL, TeamsConversation
from storage.database import Database
from storage.tables import TeamsConversationRow


def _conversation(row: TeamsConversationRow) -> TeamsConversation:
    return TeamsConversation(
        conversation_id=row.conversation_id,
        kind=row.kind,
        service_url=row.service_url,
        bot_id=row.bot_id,
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        user_aad_id=row.user_aad_id,
        email=row.email,
        team_id=row.team_id,
    )


class TeamsConversations:
    """Save, find and forget stored Teams conversations (``bot.chat_records`` port
    ``TeamsConversationStore``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(self, conversation: TeamsConversation, now: datetime) -> None:
        """Insert or refresh a conversation; a known email is kept when none is given."""
        async with self.database.transaction() as session:
            row = await session.get(TeamsConversationRow, conversation.conversation_id)
            if row is None:
                row = TeamsConversationRow(
                    conversation_id=conversation.conversation_id,
                    kind=conversation.kind,
                    service_url=conversation.service_url,
                    bot_id=conversation.bot_id,
                    updated_at=now,
                )
            row.kind = conversation.kind
            row.service_url = conversation.service_url
            row.bot_id = conversation.bot_id
            row.tenant_id = conversation.tenant_id or row.tenant_id
            row.user_id = conversation.user_id or row.user_id
            row.user_aad_id = conversation.user_aad_id or row.user_aad_id
            row.email = conversation.email.lower() if conversation.email else row.email
            row.team_id = conversation.team_id or row.team_id
            row.updated_at = now
            session.add(row)

    async def get(self, conversation_id: str) -> TeamsConversation | None:
        async with self.database.transaction() as session:
            row = await session.get(TeamsConversationRow, conversation_id)
        return _conversation(row) if row is not None else None

    async def personal(
        self, teams_id: str | None, email: str | None = None
    ) -> TeamsConversation | None:
        """The newest 1:1 chat with a person: by Teams id (AAD object id or 29: id), else email."""
        found = None
        if teams_id:
            found = await self._newest_personal(
                or_(
                    col(TeamsConversationRow.user_aad_id) == teams_id,
                    col(TeamsConversationRow.user_id) == teams_id,
                )
            )
        if found is None and email:
            found = await self._newest_personal(col(TeamsConversationRow.email) == email.lower())
        return found

    async def _newest_personal(self, where: ColumnElement[bool]) -> TeamsConversation | None:
        async with self.database.transaction() as session:
            row = (
                (
                    await session.execute(
                        select(TeamsConversationRow)
                        .where(col(TeamsConversationRow.kind) == PERSONAL, where)
                        .order_by(col(TeamsConversationRow.updated_at).desc())
                        .limit(1)
                    )
                )
                .scalars()
                .first()
            )
        return _conversation(row) if row is not None else None

    async def any_in_tenant(self, tenant_id: str | None) -> TeamsConversation | None:
        """The newest conversation of a tenant (any tenant when None): its service URL and
        tenant are what starting a new conversation there needs."""
        query = select(TeamsConversationRow)
        if tenant_id:
            query = query.where(col(TeamsConversationRow.tenant_id) == tenant_id)
        async with self.database.transaction() as session:
            row = (
                (
                    await session.execute(
                        query.order_by(col(TeamsConversationRow.updated_at).desc()).limit(1)
                    )
                )
                .scalars()
                .first()
            )
        return _conversation(row) if row is not None else None

    async def forget(self, conversation_id: str) -> None:
        """The bot was removed from a conversation: it can no longer message it."""
        async with self.database.transaction() as session:
            await session.execute(
                delete(TeamsConversationRow).where(
                    col(TeamsConversationRow.conversation_id) == conversation_id
                )
            )
