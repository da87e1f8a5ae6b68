"""The review flows both chat surfaces share: a Keep or Revoke click that either decides
or asks for the reason, Keep all remaining, and a reviewer's card as it is now.

A surface parses the platform's payload (a campaign id and an item index, never who may
decide), makes one call here and renders the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.review_views import ReviewViews
from bot.reviews import Reviews
from engine.refusals import Refusal, Refused
from engine.review_items import Campaign, ReviewItem, Verdict
from message_templates import field_errors

_VERDICTS: dict[str, Verdict] = {"keep": "keep", "revoke": "revoke"}
_REASON = "reason"


def verdict_of(value: str, campaign_id: str, index: int) -> Verdict:
    """A verdict a card carried back (``keep`` or ``revoke``); anything else names no
    decision on this item and is refused."""
    verdict = _VERDICTS.get(value)
    if verdict is None:
        raise Refused(Refusal("unknown_review_item", campaign=campaign_id, item=index))
    return verdict


@dataclass(frozen=True)
class Decided:
    """The click decided the item; the cards refresh through the outbox."""

    item: ReviewItem


@dataclass(frozen=True)
class AskReason:
    """The verdict needs a reason: show this form (``review_reason_form`` data)."""

    data: dict[str, Any]


class ReviewIngress:
    """The chat surfaces' review use cases, over ``Reviews`` and what the cards show."""

    def __init__(self, reviews: Reviews, views: ReviewViews) -> None:
        self.reviews = reviews
        self.views = views

    async def decide_or_ask(
        self,
        campaign_id: str,
        index: int,
        actor: str,
        verdict: Verdict,
        reason: str = "",
        asked: bool = False,
    ) -> Decided | AskReason:
        """A reviewer's Keep / Revoke (Justified / Not justified) on a card.

        The engine says whether the verdict needs a reason (``engine.reviews.needs_reason``):
        without one, the answer is the form that asks for it, with the refusal under the
        input once the reviewer was ``asked`` already (a reason input was sent). Any other
        refusal (not theirs, decided already, closed) is raised: nothing changed.
        """
        try:
            return Decided(await self.reviews.decide(campaign_id, index, actor, verdict, reason))
        except Refused as exc:
            if _REASON not in exc.by_field():
                raise
            campaign = await self.reviews.get(campaign_id)
            item = await self.reviews.item(campaign.id, index)
            errors = field_errors(exc, (_REASON,), _REASON) if asked else {}
            form = await self.views.reason_form(campaign, item, verdict, errors, {_REASON: reason})
            return AskReason(form)

    async def decide(
        self, campaign_id: str, index: int, actor: str, verdict: Verdict, reason: str
    ) -> ReviewItem:
        """The reason form was sent: decide with its reason (Refused says what to fix)."""
        return await self.reviews.decide(campaign_id, index, actor, verdict, reason)

    async def keep_all(self, campaign_id: str, actor: str) -> int:
        """Keep all the reviewer's remaining low and medium risk items; how many."""
        return await self.reviews.keep_all(campaign_id, actor)

    async def card(self, campaign_id: str, viewer: str) -> tuple[Campaign, dict[str, Any]]:
        """The reviewer's card as it is now (refused to anyone with no items in it)."""
        return await self.views.card_for(campaign_id, viewer)
