"""Teams middleware: the verified sender of an activity as a directory person, and a
refusal as Teams' error (the invoke's answer for a card action, a card for a message),
so handlers only parse, call and render.

The route checked the Bot Framework token and the activity's shape; the actor is the
activity's sender (``from.aadObjectId`` / ``from.id``), never a value carried in a card.
Typed text that cannot be stored is refused before the sender is looked up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsInfo

from adapters.teams.activities import card_activity, message_response
from adapters.teams.payloads import typed_text
from bot.usecases import Clearance
from engine.directory import Person
from engine.refusals import Refused
from engine.text import unstorable_refusals
from message_templates import refusal_text, render_json

log = logging.getLogger(__name__)

Message = dict[str, Any]


def error_message(text: str) -> Message:
    """Teams' error message (summary and card) carrying the text of a refusal."""
    return render_json("teams", "error", {"message": text})


def refused_response(exc: Refused) -> InvokeResponse:
    """The answer to a card action that was refused: the reason; the card stays."""
    return message_response(error_message(refusal_text(exc))["summary"])


class Senders:
    """Resolves who sent an activity and runs a handler as them."""

    def __init__(self, clearance: Clearance) -> None:
        self.clearance = clearance

    async def person(self, ctx: TurnContext) -> Person:
        """The directory person behind the verified sender: by Teams id, else roster email.
        Refuses first what they typed when it cannot be stored: it would fail half-way
        through the action (its row or its audit event)."""
        activity = ctx.activity
        if unstorable := unstorable_refusals(typed_text(activity.text, activity.value)):
            raise Refused(*unstorable)
        sender = ctx.activity.from_property
        aad_id = (sender.aad_object_id if sender else None) or None
        user_id = (sender.id if sender else None) or ""

        async def email() -> str | None:
            if aad_id and user_id:
                by_id = await self.clearance.directory.person_by_chat_id("teams", user_id)
                if by_id is not None:
                    return by_id.email
            return await self.roster_email(ctx)

        return await self.clearance.person_for_chat("teams", aad_id or user_id, email)

    async def roster_email(self, ctx: TurnContext) -> str | None:
        """The sender's email from the team or chat roster, or None when Teams has none."""
        sender = ctx.activity.from_property
        if sender is None or not sender.id:
            return None
        try:
            member = await TeamsInfo.get_member(ctx, sender.id)
        except Exception as exc:  # not in the roster, or Teams is down: no email then
            log.info("Teams roster lookup failed for %s: %s", sender.id, type(exc).__name__)
            return None
        value = member.email or member.user_principal_name
        return str(value) if value else None

    async def invoke(
        self, ctx: TurnContext, handler: Callable[[Person], Awaitable[InvokeResponse]]
    ) -> InvokeResponse:
        """Answer a card action as its sender; a refusal (unknown person or request, or
        the use case said no) is the answer and nothing changed."""
        try:
            return await handler(await self.person(ctx))
        except Refused as exc:
            return refused_response(exc)

    async def message(
        self, ctx: TurnContext, handler: Callable[[Person], Awaitable[Message]]
    ) -> None:
        """Reply to a chat message as its sender with the card ``handler`` renders, or
        with the refusal."""
        try:
            reply = await handler(await self.person(ctx))
        except Refused as exc:
            reply = error_message(refusal_text(exc))
        await ctx.send_activity(card_activity(reply))
