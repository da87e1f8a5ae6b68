"""Clearance's Teams messages as one viewer sees them, rendered from
``message_templates/teams`` with the data ``bot/`` builds (request views, form, home)."""

from __future__ import annotations

from typing import Any

from bot.forms import request_form
from bot.home import home_data
from bot.notifier import Notifier
from bot.usecases import Clearance
from engine.access_request import AccessRequest
from engine.directory import Person
from message_templates import render_json

Message = dict[str, Any]


class Cards:
    """Renders request cards, the request form and the home card for a viewer."""

    def __init__(self, clearance: Clearance, notifier: Notifier) -> None:
        self.clearance = clearance
        self.notifier = notifier

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

    async def deny_form(self, request: AccessRequest, **extra: Any) -> Message:
        """The card that asks an approver for the reason of a denial."""
        view = await self.notifier.view(request, None)
        return render_json("teams", "deny_form", {"r": view, **extra})

    async def home(self, person: Person) -> Message:
        """What waits for ``person``, what they asked for and what they hold."""
        return render_json("teams", "home", await home_data(self.clearance, self.notifier, person))
