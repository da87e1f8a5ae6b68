"""Outbox handlers that talk to reviewers and admins about access reviews: one card per
reviewer per campaign, the cards refreshed after each decision, reminders, and the
admins' posts (summary, held revocations, escalation, a break-glass "not justified").

Sending goes through ``bot.delivery`` as the request notifier's does: once per job and
recipient, logged so that a card can be updated in place, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.chat import Chat
from bot.chat_records import SentMessages
from bot.delivery import Delivery
from bot.dispatcher import Dispatcher
from bot.review_views import REVIEW_CARDS, ReviewViews, card_template
from engine.chat_records import SentMessage
from engine.effects import (
    Effect,
    NotifyAdminsOfReview,
    NotifyReviewer,
    RefreshReviewCards,
    ReviewRemindAt,
)
from engine.review_items import Campaign
from message_templates import wording
from storage.outbox import OutboxItem


class ReviewNotifier:
    """Turns review effects into messages on every configured chat platform."""

    def __init__(self, views: ReviewViews, chats: Sequence[Chat], sent: SentMessages) -> None:
        self.views = views
        self.reviews = views.reviews
        clearance = views.clearance
        self.delivery = Delivery(chats, sent, clearance.directory, clearance.clock)

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(NotifyReviewer.kind, self.notify_reviewer)
        dispatcher.register(RefreshReviewCards.kind, self.refresh_cards)
        dispatcher.register(NotifyAdminsOfReview.kind, self.notify_admins)
        dispatcher.register(ReviewRemindAt.kind, self.remind)

    async def notify_reviewer(self, job: OutboxItem[NotifyReviewer]) -> None:
        campaign = await self.reviews.get(job.effect.campaign_id)
        if campaign.is_open:
            await self._card(job, campaign, job.effect.reviewer, job.effect.nudge)

    async def remind(self, job: OutboxItem[ReviewRemindAt]) -> None:
        """Half-time and the day before: each reviewer who still has items gets their card
        again, marked as a reminder."""
        campaign = await self.reviews.get(job.effect.campaign_id)
        if campaign.status != "open":
            return  # closed, or waiting for an admin: nothing a reviewer can do now
        undecided = await self.reviews.store.items(campaign.id, ["undecided"])
        for reviewer in sorted({r for item in undecided for r in item.reviewers}):
            await self._card(job, campaign, reviewer, nudge=True)

    async def refresh_cards(self, job: OutboxItem[RefreshReviewCards]) -> None:
        campaign = await self.reviews.get(job.effect.campaign_id)
        only = job.effect.reviewer

        async def data_for(sent: SentMessage) -> dict[str, Any] | None:
            if only is not None and sent.recipient != only:
                return None  # a card that does not show the changed items stays as it is
            return await self.views.card(campaign, sent.recipient)

        await self.delivery.refresh(campaign.id, REVIEW_CARDS, data_for)

    async def notify_admins(self, job: OutboxItem[NotifyAdminsOfReview]) -> None:
        effect = job.effect
        campaign = await self.reviews.get(effect.campaign_id)
        data = await self.views.admin(campaign, effect.index)
        await self.delivery.admins(job.id, campaign.id, "admin_" + effect.template, data)

    async def _card(
        self, job: OutboxItem[Effect], campaign: Campaign, reviewer: str, nudge: bool
    ) -> None:
        data = await self.views.card(campaign, reviewer, nudge)
        if not data["open"]:
            return  # decided, or handed to other reviewers, since this was planned
        # The chat log files messages under a request id; a review card is filed under its
        # campaign's id (C-…, never a request's R-…), which is what refreshing looks up.
        template = card_template(campaign)
        if not await self.delivery.direct(job.id, campaign.id, reviewer, template, data):
            message = wording(
                "reviews", "reviewer_unreachable", reviewer=reviewer, c=data["c"], open=data["open"]
            )
            await self.delivery.alert_admins("error", {"message": message})
