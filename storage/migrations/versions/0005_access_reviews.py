"""Access reviews: campaigns (one open per review) and their items.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OPEN = "status != 'closed' AND kind = 'campaign'"


def upgrade() -> None:
    op.create_table(
        "review_campaigns",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("started_by", sa.String(length=320), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("on_no_decision", sa.String(length=16), nullable=False),
        sa.Column("max_revocations", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_campaigns_status", "review_campaigns", ["status"])
    op.create_index(
        "uq_review_campaigns_request",
        "review_campaigns",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_index(
        "uq_review_campaigns_open",
        "review_campaigns",
        ["review_id"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "review_items",
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(length=320), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("target_group", sa.String(length=512), nullable=False),
        sa.Column("holding", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approvers", sa.Text(), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("requests_90d", sa.Integer(), nullable=False),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("reviewers", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("defaulted", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["review_campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "idx"),
    )
    op.create_index("ix_review_items_outcome", "review_items", ["outcome"])


def downgrade() -> None:
    op.drop_index("ix_review_items_outcome", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("uq_review_campaigns_open", table_name="review_campaigns")
    op.drop_index("uq_review_campaigns_request", table_name="review_campaigns")
    op.drop_index("ix_review_campaigns_status", table_name="review_campaigns")
    op.drop_table("review_campaigns")
