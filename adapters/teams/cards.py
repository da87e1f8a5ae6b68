"""Clearance's Teams messages as one viewer sees them, rendered from
``message_templates/teams`` with the data ``bot/`` builds (request views, form, home,
review cards)."""

from __future__ import annotations

from typing import Any

from bot.forms import request_form
from bot.home import home_data
from bot.notifier import Notifier
from bot.review_ingress import ReviewIngress
from bot.review_views import card_template
from bot.usecases import Clearance
from engine.access_request import AccessRequest
from engine.directory import Person
from message_templates import render_json

Message = dict[str, Any]


class Cards:
    """Renders request cards, the request form, review cards and the home card for a viewer."""

    def __init__(self, clearance: Clearance, notifier: Notifier, reviews: ReviewIngress) -> None:
        self.clearance = clearance
        self.notifier = notifier
        self.reviews = reviews

    async def card(self, template: str, request: AccessRequest, viewer: str | None) -> Message:
        """A card about one request (approval card, confirmation, notices)."""
        return render_json("teams", template, {"r": await self.notifier.view(request, viewer)})

    async def form(
        self,
        person: Person,
        selected: str | None,
        prefill: dict[str, str],
        break_glass: bool = False,
        **extra: Any,
    ) -> Message:
        """The request form with what ``person`` may request, ``selected`` chosen (asked for
        as break-glass with ``break_glass``, where the resource offers it)."""
        data = await request_form(self.clearance, person.email, selected, prefill, break_glass)
        return render_json("teams", "request_form", {**data, **extra})

    async def submitted_form(self, request: AccessRequest, viewer: str) -> Message:
        """The request form once it made ``request``: what it filed, nothing to press."""
        view = await self.notifier.view(request, viewer)
        return render_json("teams", "request_form", {"submitted": view})

    async def deny_form(self, request: AccessRequest, **extra: Any) -> Message:
        """The card that asks an approver for the reason of a denial."""
        view = await self.notifier.view(request, None)
        return render_json("teams", "deny_form", {"r": view, **extra})

    async def review(self, campaign_id: str, viewer: str) -> Message:
        """A reviewer's card as it is now (refused to anyone it has no items for)."""
        campaign, data = await self.reviews.card(campaign_id, viewer)
        return render_json("teams", card_template(campaign), data)

    def review_reason(self, data: dict[str, Any]) -> Message:
        """The card that asks a reviewer why (``bot.review_ingress.AskReason``)."""
        return render_json("teams", "review_reason_form", data)

    async def home(self, person: Person) -> Message:
        """What waits for ``person``, what they asked for and what they hold."""
        data = await home_data(self.clearance, self.notifier, self.reviews.views, person)
        return render_json("teams", "home", data)
