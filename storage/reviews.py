"""The review store: campaigns and their items, saved with their audit and outbox in one
transaction, each item under its own optimistic lock (two reviewers clicking the same
item at once give one decision; reviewers deciding different items never wait on each
other)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from engine.review_items import Campaign, CampaignKind, HeldAccess, ReviewItem, ReviewTransition
from storage import audit_log
from storage.database import Database
from storage.outbox import outbox_row
from storage.tables import ReviewCampaignRow, ReviewItemRow


class StaleReview(Exception):
    """The campaign or an item moved on since it was loaded; decide again, afresh."""


class CampaignExists(Exception):
    """A campaign of this review is already open (or its id is taken)."""


# Campaign fields stored in columns of the same name.
_CAMPAIGN_FIELDS = (
    "review_id",
    "kind",
    "status",
    "policy_version",
    "started_by",
    "started_at",
    "due_at",
    "on_no_decision",
    "max_revocations",
    "escalated",
    "closed_at",
    "request_id",
)


def _campaign_values(c: Campaign) -> dict[str, Any]:
    return {name: getattr(c, name) for name in _CAMPAIGN_FIELDS}


def _campaign(row: ReviewCampaignRow) -> Campaign:
    values = {name: getattr(row, name) for name in _CAMPAIGN_FIELDS}
    return Campaign(id=row.id, version=row.version, **values)


def _item_values(i: ReviewItem) -> dict[str, Any]:
    a = i.access
    return {
        "principal": a.principal,
        "resource_id": a.resource_id,
        "connector": a.connector,
        "target_group": a.group,
        "holding": a.holding,
        "request_id": a.request_id,
        "since": a.since,
        "approvers": json.dumps(list(a.approvers)),
        "justification": a.justification,
        "requests_90d": a.requests_90d,
        "risk": i.risk,
        "reviewers": json.dumps(list(i.reviewers)),
        "role": i.role,
        "verdict": i.verdict,
        "reason": i.reason,
        "decided_by": i.decided_by,
        "decided_at": i.decided_at,
        "defaulted": i.defaulted,
        "outcome": i.outcome,
    }


def _item(row: ReviewItemRow) -> ReviewItem:
    access = HeldAccess(
        principal=row.principal,
        resource_id=row.resource_id,
        connector=row.connector,
        group=row.target_group,
        holding=row.holding,  # type: ignore[arg-type]  # written from the same Literal
        request_id=row.request_id,
        since=row.since,
        approvers=tuple(json.loads(row.approvers)),
        justification=row.justification,
        requests_90d=row.requests_90d,
    )
    return ReviewItem(
        campaign_id=row.campaign_id,
        index=row.idx,
        access=access,
        risk=row.risk,  # type: ignore[arg-type]
        reviewers=tuple(json.loads(row.reviewers)),
        role=row.role,  # type: ignore[arg-type]
        verdict=row.verdict,  # type: ignore[arg-type]
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        defaulted=row.defaulted,
        outcome=row.outcome,  # type: ignore[arg-type]
        version=row.version,
    )


class ReviewStore:
    """Load and save campaigns and items."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(
        self, transition: ReviewTransition, loaded: Campaign | None, now: datetime
    ) -> None:
        """Write what a review transition changed, its effects and its audit, at once.

        ``loaded`` is the campaign as it was read (None for a new one): when the transition
        changed it, the update must find that version still stored, and each changed item
        likewise its own. Raises StaleReview (or CampaignExists for a new campaign whose
        review already runs) and writes nothing then.
        """
        try:
            await self._write(transition, loaded, now)
        except IntegrityError as exc:
            if transition.created:
                raise CampaignExists(transition.campaign.review_id) from exc
            raise StaleReview(transition.campaign.id) from exc

    async def _write(
        self, transition: ReviewTransition, loaded: Campaign | None, now: datetime
    ) -> None:
        campaign = transition.campaign
        async with self.database.transaction() as session:
            if transition.created:
                session.add(ReviewCampaignRow(id=campaign.id, **_campaign_values(campaign)))
                await session.flush()
                session.add_all(
                    ReviewItemRow(campaign_id=campaign.id, idx=i.index, **_item_values(i))
                    for i in transition.items
                )
            else:
                if loaded is not None and campaign != loaded:
                    await self._update(
                        session,
                        update(ReviewCampaignRow).where(
                            col(ReviewCampaignRow.id) == campaign.id,
                            col(ReviewCampaignRow.version) == loaded.version,
                        ),
                        {**_campaign_values(campaign), "version": loaded.version + 1},
                        campaign.id,
                    )
                for item in transition.items:
                    await self._update(
                        session,
                        update(ReviewItemRow).where(
                            col(ReviewItemRow.campaign_id) == item.campaign_id,
                            col(ReviewItemRow.idx) == item.index,
                            col(ReviewItemRow.version) == item.version,
                        ),
                        {**_item_values(item), "version": item.version + 1},
                        campaign.id,
                    )
            for effect in transition.effects:
                session.add(outbox_row(effect, now))
            await audit_log.append(session, transition.audit, now)

    @staticmethod
    async def _update(session: Any, statement: Any, values: dict[str, Any], cid: str) -> None:
        result = await session.execute(
            statement.values(**values).execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise StaleReview(cid)

    # --- reading ------------------------------------------------------------------------

    async def campaign(self, campaign_id: str) -> Campaign | None:
        async with self.database.transaction() as session:
            row = await session.get(ReviewCampaignRow, campaign_id)
        return _campaign(row) if row is not None else None

    async def open_campaign_of(self, review_id: str) -> Campaign | None:
        """The open campaign of a policy review, if one runs."""
        query = select(ReviewCampaignRow).where(
            col(ReviewCampaignRow.review_id) == review_id,
            col(ReviewCampaignRow.kind) == "campaign",
            col(ReviewCampaignRow.status) != "closed",
        )
        async with self.database.transaction() as session:
            row = (await session.execute(query)).scalars().first()
        return _campaign(row) if row is not None else None

    async def latest_campaign_of(self, review_id: str) -> Campaign | None:
        """The campaign of a policy review that started last, open or closed (its cadence
        counts from there)."""
        query = (
            select(ReviewCampaignRow)
            .where(
                col(ReviewCampaignRow.review_id) == review_id,
                col(ReviewCampaignRow.kind) == "campaign",
            )
            .order_by(col(ReviewCampaignRow.started_at).desc())
            .limit(1)
        )
        async with self.database.transaction() as session:
            row = (await session.execute(query)).scalars().first()
        return _campaign(row) if row is not None else None

    async def campaigns(
        self, open_only: bool = True, limit: int = 50, kind: CampaignKind | None = None
    ) -> list[Campaign]:
        """Campaigns, newest first, optionally only the open ones and/or those of one kind."""
        query = (
            select(ReviewCampaignRow)
            .order_by(col(ReviewCampaignRow.started_at).desc())
            .limit(limit)
        )
        if open_only:
            query = query.where(col(ReviewCampaignRow.status) != "closed")
        if kind is not None:
            query = query.where(col(ReviewCampaignRow.kind) == kind)
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
        return [_campaign(r) for r in rows]

    async def campaign_for_request(self, request_id: str) -> Campaign | None:
        """The break-glass review of a request, if one was opened."""
        query = select(ReviewCampaignRow).where(col(ReviewCampaignRow.request_id) == request_id)
        async with self.database.transaction() as session:
            row = (await session.execute(query)).scalars().first()
        return _campaign(row) if row is not None else None

    async def item(self, campaign_id: str, index: int) -> ReviewItem | None:
        async with self.database.transaction() as session:
            row = await session.get(ReviewItemRow, (campaign_id, index))
        return _item(row) if row is not None else None

    async def items(
        self,
        campaign_id: str,
        outcomes: Sequence[str] | None = None,
        reviewer: str | None = None,
        limit: int | None = None,
    ) -> list[ReviewItem]:
        """A campaign's items in order, optionally only those with an outcome and/or those
        a reviewer is asked to decide."""
        query = (
            select(ReviewItemRow)
            .where(col(ReviewItemRow.campaign_id) == campaign_id)
            .order_by(col(ReviewItemRow.idx))
        )
        if outcomes is not None:
            query = query.where(col(ReviewItemRow.outcome).in_(list(outcomes)))
        if reviewer is not None:
            query = query.where(
                col(ReviewItemRow.reviewers).contains(json.dumps(reviewer), autoescape=True)
            )
        if limit is not None:
            query = query.limit(limit)
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
        return [_item(r) for r in rows]

    async def count(self, campaign_id: str, outcome: str | None = None) -> int:
        query = select(func.count()).where(col(ReviewItemRow.campaign_id) == campaign_id)
        if outcome is not None:
            query = query.where(col(ReviewItemRow.outcome) == outcome)
        async with self.database.transaction() as session:
            return int((await session.execute(query)).scalar_one())

    async def progress(self, campaign_id: str) -> dict[str, int]:
        """Items per outcome."""
        query = (
            select(col(ReviewItemRow.outcome), func.count())
            .where(col(ReviewItemRow.campaign_id) == campaign_id)
            .group_by(col(ReviewItemRow.outcome))
        )
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).all()
        return {str(outcome): int(n) for outcome, n in rows}

    async def to_review(self, reviewer: str, limit: int = 50) -> list[tuple[Campaign, int]]:
        """Open campaigns with items waiting for this reviewer, and how many each."""
        query = (
            select(ReviewCampaignRow, func.count())
            .join(ReviewItemRow, col(ReviewItemRow.campaign_id) == col(ReviewCampaignRow.id))
            .where(
                col(ReviewCampaignRow.status) != "closed",
                col(ReviewItemRow.outcome) == "undecided",
                col(ReviewItemRow.reviewers).contains(json.dumps(reviewer), autoescape=True),
            )
            .group_by(col(ReviewCampaignRow.id))
            .order_by(col(ReviewCampaignRow.due_at))
            .limit(limit)
        )
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).all()
        return [(_campaign(row), int(n)) for row, n in rows]
