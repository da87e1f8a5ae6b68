"""Stored Teams conversation references; chat messages: longer channel ids (Teams
conversation ids) and an index to find a message by where it lives.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams_conversations",
        sa.Column("conversation_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("service_url", sa.String(length=512), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("bot_id", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("user_aad_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("team_id", sa.String(length=512), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id"),
    )
    with op.batch_alter_table("teams_conversations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_teams_conversations_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_teams_conversations_user_id"), ["user_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_teams_conversations_user_aad_id"), ["user_aad_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_teams_conversations_email"), ["email"], unique=False)
    # Teams conversation ids of 1:1 chats and channel threads exceed 128 characters.
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "channel",
            existing_type=sa.String(length=128),
            type_=sa.String(length=512),
            existing_nullable=False,
        )
        batch_op.create_index("ix_chat_messages_message", ["channel", "message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_messages_message")
        batch_op.alter_column(
            "channel",
            existing_type=sa.String(length=512),
            type_=sa.String(length=128),
            existing_nullable=False,
        )
    with op.batch_alter_table("teams_conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_teams_conversations_email"))
        batch_op.drop_index(batch_op.f("ix_teams_conversations_user_aad_id"))
        batch_op.drop_index(batch_op.f("ix_teams_conversations_user_id"))
        batch_op.drop_index(batch_op.f("ix_teams_conversations_tenant_id"))
    op.drop_table("teams_conversations")
