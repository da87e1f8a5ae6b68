"""The database tables (SQLModel): requests, decisions, grants, audit events, outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass UTC-aware ones")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class RequestRow(SQLModel, table=True):
    """One access request, with its current state; ``version`` is the optimistic lock."""

    __tablename__ = "requests"

    id: str = Field(primary_key=True, max_length=32)
    requester: str = Field(index=True, max_length=320)
    principal: str = Field(index=True, max_length=320)
    principal_kind: str = Field(max_length=16)
    resource_id: str = Field(index=True, max_length=64)
    status: str = Field(index=True, max_length=16)
    duration_seconds: int
    justification: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    ticket: str | None = Field(default=None, max_length=100)
    policy_version: str = Field(max_length=64)
    approval_mode: str = Field(max_length=16)
    connector: str = Field(max_length=64)
    target_group: str = Field(max_length=512)
    stage_count: int
    stages: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON list
    break_glass: bool = False
    # Why a break-glass ask went to the approvers instead ("limit"); null when it did not.
    break_glass_refused: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    pending_deadline: datetime | None = _ts()
    granted_at: datetime | None = _ts()
    expires_at: datetime | None = _ts(index=True)
    ended_at: datetime | None = _ts()
    deprovisioned_at: datetime | None = _ts()
    ended_by: str | None = Field(default=None, max_length=320)
    end_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    failure: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    self_extended_seconds: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    # JSON object: how an API request came in (AccessRequest.origin); null from chat.
    origin: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    version: int = 1


class DecisionRow(SQLModel, table=True):
    """One approver's decision; the unique key makes a double click land once."""

    __tablename__ = "decisions"
    __table_args__ = (sa.UniqueConstraint("request_id", "stage", "approver", name="uq_decision"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    stage: int
    approver: str = Field(max_length=320)
    outcome: str = Field(max_length=8)
    reason: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class GrantRow(SQLModel, table=True):
    """A membership Clearance confirmed in a target group, and when it ended."""

    __tablename__ = "grants"
    __table_args__ = (sa.Index("ix_grants_target", "connector", "target_group"),)

    request_id: str = Field(primary_key=True, foreign_key="requests.id", max_length=32)
    principal: str = Field(index=True, max_length=320)
    connector: str = Field(max_length=64)
    target_group: str = Field(max_length=512)
    granted_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = _ts()
    removed_at: datetime | None = _ts()


class AuditRow(SQLModel, table=True):
    """One sealed audit event; ``hash`` chains it to the event before."""

    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    action: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=320)
    request_id: str | None = Field(default=None, index=True, max_length=32)
    resource_id: str | None = Field(default=None, max_length=64)
    policy_version: str = Field(max_length=64)
    details: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # canonical JSON
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHeadRow(SQLModel, table=True):
    """The last event of the chain; locked while appending so the chain never forks."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


class OutboxRow(SQLModel, table=True):
    """Work to carry out after a commit: notify, provision, expire, remind, ..."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    request_id: str | None = Field(default=None, index=True, max_length=32)
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON
    status: str = Field(default="pending", max_length=8)  # pending | done | dead
    due_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    attempts: int = 0
    claimed_until: datetime | None = _ts()
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    completed_at: datetime | None = _ts()


class ChatMessageRow(SQLModel, table=True):
    """A message Clearance sent about a request, kept so it can be updated in place later."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        sa.UniqueConstraint("outbox_id", "platform", "recipient", name="uq_chat_message_once"),
        # A card someone acted on is looked up by where it lives (Teams names it so).
        sa.Index("ix_chat_messages_message", "channel", "message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(index=True, max_length=32)
    outbox_id: int | None = None  # the job that sent it: a retried job does not send twice
    platform: str = Field(max_length=16)
    recipient: str = Field(max_length=320)  # email, or "admins"
    template: str = Field(max_length=64)
    stage: int | None = None
    channel: str = Field(max_length=512)  # Slack channel, Teams conversation id (long)
    message_id: str = Field(max_length=256)  # Slack ts, Teams activity id
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class InboundEventRow(SQLModel, table=True):
    """Keys of platform deliveries already handled, so a retried delivery is not acted on twice."""

    __tablename__ = "inbound_events"

    key: str = Field(primary_key=True, max_length=200)
    received_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class TeamsConversationRow(SQLModel, table=True):
    """A Teams conversation the bot may message proactively (a stored conversation reference).

    Kept when a user or team installs the bot or first talks to it: Teams only lets a bot
    message people in conversations it learnt of this way.
    """

    __tablename__ = "teams_conversations"

    conversation_id: str = Field(primary_key=True, max_length=512)
    kind: str = Field(max_length=16)  # personal | channel | groupChat
    service_url: str = Field(max_length=512)
    tenant_id: str | None = Field(default=None, max_length=64, index=True)
    bot_id: str = Field(max_length=256)
    user_id: str | None = Field(default=None, max_length=256, index=True)  # "29:..."
    user_aad_id: str | None = Field(default=None, max_length=64, index=True)
    email: str | None = Field(default=None, max_length=320, index=True)  # from the roster
    team_id: str | None = Field(default=None, max_length=512)
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


metadata = SQLModel.metadata


class ReviewCampaignRow(SQLModel, table=True):
    """One access-review campaign (or break-glass review); ``version`` is its optimistic lock.

    At most one campaign of a review is open at a time (a partial unique index)."""

    __tablename__ = "review_campaigns"
    __table_args__ = (
        sa.Index(
            "uq_review_campaigns_open",
            "review_id",
            unique=True,
            sqlite_where=sa.text("status != 'closed' AND kind = 'campaign'"),
            postgresql_where=sa.text("status != 'closed' AND kind = 'campaign'"),
        ),
        # One break-glass review per request, however many replicas open it at once.
        sa.Index(
            "uq_review_campaigns_request",
            "request_id",
            unique=True,
            sqlite_where=sa.text("request_id IS NOT NULL"),
            postgresql_where=sa.text("request_id IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    review_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    status: str = Field(index=True, max_length=16)
    policy_version: str = Field(max_length=64)
    started_by: str = Field(max_length=320)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    due_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    on_no_decision: str = Field(max_length=16)
    max_revocations: int
    escalated: bool = False
    closed_at: datetime | None = _ts()
    request_id: str | None = Field(default=None, max_length=32)
    version: int = 1


class ReviewItemRow(SQLModel, table=True):
    """One person's hold on one resource in a campaign, and its decision."""

    __tablename__ = "review_items"

    campaign_id: str = Field(primary_key=True, foreign_key="review_campaigns.id", max_length=40)
    idx: int = Field(primary_key=True)
    principal: str = Field(max_length=320)
    resource_id: str = Field(max_length=64)
    connector: str = Field(max_length=64)
    target_group: str = Field(max_length=512)
    holding: str = Field(max_length=16)
    request_id: str | None = Field(default=None, max_length=32)
    since: datetime | None = _ts()
    approvers: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON list
    justification: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    requests_90d: int = 0
    risk: str = Field(max_length=16)
    reviewers: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON list
    role: str = Field(max_length=16)
    verdict: str | None = Field(default=None, max_length=8)
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    decided_by: str | None = Field(default=None, max_length=320)
    decided_at: datetime | None = _ts()
    defaulted: bool = False
    outcome: str = Field(index=True, max_length=16)
    version: int = 1


class ApiTokenRow(SQLModel, table=True):
    """A person's API token: only the SHA-256 of its secret is kept (it is shown once)."""

    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=32)
    owner: str = Field(index=True, max_length=320)
    secret_hash: str = Field(max_length=64)
    created_by: str = Field(max_length=320)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()


class TokenUseRow(SQLModel, table=True):
    """A workload token's ``jti`` that changed something, kept until the token expires:
    the primary key makes the same token refused the second time, on every replica."""

    __tablename__ = "token_uses"

    issuer: str = Field(primary_key=True, max_length=512)
    jti: str = Field(primary_key=True, max_length=256)
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
