"""Teams card actions: the ``Action.Execute`` verbs of Clearance's Adaptive Cards.

Each verb parses ids from the action's data, makes one use-case call as the verified
sender (``adapters.teams.middleware``) and answers the invoke: with a card that replaces
the clicked one in place, or with a short message while the card stays. Card data carries
only a request id and a stage (a review's: its campaign id and an item index), never who
may decide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from botbuilder.core import InvokeResponse, TurnContext

from adapters.teams.activities import card_activity, card_response, message_response, replied_to
from adapters.teams.cards import Cards
from adapters.teams.middleware import Senders
from bot.button_values import small_number
from bot.forms import FORM_FIELDS, break_glass_on
from bot.ingress import Extended, Ingress
from bot.notifier import LIVE_TEMPLATES
from bot.review_ingress import AskReason, ReviewIngress, verdict_of
from bot.usecases import Clearance
from engine.directory import Person
from engine.refusals import Refused
from message_templates import field_errors

Verb = Callable[[TurnContext, Person, dict[str, Any]], Awaitable[InvokeResponse]]


def _unknown_action() -> InvokeResponse:
    return InvokeResponse(
        status=int(HTTPStatus.BAD_REQUEST),
        body={
            "statusCode": int(HTTPStatus.BAD_REQUEST),
            "type": "application/vnd.microsoft.error",
            "value": {"code": "BadRequest", "message": "unknown card action"},
        },
    )


def _number(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return small_number(value) if isinstance(value, str) else None


def _stage(data: dict[str, Any]) -> int | None:
    return _number(data, "stage")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class CardActions:
    """Runs an ``adaptiveCard/action`` invoke through its verb."""

    def __init__(
        self,
        clearance: Clearance,
        ingress: Ingress,
        cards: Cards,
        senders: Senders,
        reviews: ReviewIngress,
    ) -> None:
        self.clearance = clearance
        self.ingress = ingress
        self.cards = cards
        self.senders = senders
        self.reviews = reviews
        self.verbs: dict[str, Verb] = {
            "refresh": self.on_refresh,
            "approve": self.on_approve,
            "deny": self.on_deny,
            "cancel": self.on_cancel,
            "done": self.on_done,
            "extend": self.on_extend,
            "rerequest": self.on_rerequest,
            "open_form": self.on_open_form,
            "submit_request": self.on_submit_request,
            "review_keep": self.on_review_keep,
            "review_revoke": self.on_review_revoke,
            "review_keep_all": self.on_review_keep_all,
            "review_open": self.on_review_open,
        }

    async def run(self, ctx: TurnContext) -> InvokeResponse:
        action = _dict(_dict(ctx.activity.value).get("action"))
        data = _dict(action.get("data"))
        verb = self.verbs.get(str(action.get("verb") or ""))
        if verb is None or action.get("type") != "Action.Execute":
            return _unknown_action()

        async def as_sender(person: Person) -> InvokeResponse:
            return await verb(ctx, person, data)

        return await self.senders.invoke(ctx, as_sender)

    async def current(self, ctx: TurnContext, person: Person, request_id: str) -> InvokeResponse:
        """The acted-on card as it is now for this viewer: an approval card where one was
        clicked, else the home card (whose lists carry the same buttons)."""
        sent = await self.ingress.clicked(replied_to(ctx.activity))
        if sent is not None and sent.request_id == request_id and sent.template in LIVE_TEMPLATES:
            request = await self.clearance.get(request_id)
            return card_response(await self.cards.card(sent.template, request, person.email))
        return card_response(await self.cards.home(person))

    # --- approvers ------------------------------------------------------------------------

    async def on_refresh(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Teams asks for this viewer's own version of an approval card."""
        request = await self.ingress.visible(_text(data, "request_id"), person.email)
        return card_response(await self.cards.card("approval_card", request, person.email))

    async def on_approve(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Approve; a double click or a stale card gets the card as it is now."""
        request_id = _text(data, "request_id")
        await self.ingress.decide(request_id, person.email, "approve", expected_stage=_stage(data))
        return await self.current(ctx, person, request_id)

    async def on_deny(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        request_id, stage = _text(data, "request_id"), _stage(data)
        reason = _text(data, "reason")
        try:
            await self.ingress.decide(
                request_id, person.email, "deny", reason, expected_stage=stage
            )
        except Refused as exc:
            if "reason" not in field_errors(exc):
                raise
            # An approver who may deny: ask for the reason (an error only if one was typed).
            request = await self.clearance.get(request_id)
            form = await self.cards.deny_form(
                request,
                private_metadata=f"{request_id}:{stage if stage is not None else ''}",
                errors=field_errors(exc) if "reason" in data else {},
                prefill={"reason": reason},
            )
            return card_response(form)
        return await self.current(ctx, person, request_id)

    # --- requesters -----------------------------------------------------------------------

    async def on_cancel(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        request_id = _text(data, "request_id")
        cancelled = await self.ingress.cancel(request_id, person.email)
        if cancelled.outdated:
            return await self.current(ctx, person, request_id)
        return card_response(
            await self.cards.card("request_submitted", cancelled.request, person.email)
        )

    async def on_done(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """I'm done: the access ends now; the card stays, Teams shows the outcome."""
        request = await self.clearance.revoke(_text(data, "request_id"), person.email)
        ended = await self.cards.card("access_ended", request, person.email)
        return message_response(ended["summary"])

    async def on_extend(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Extend: more time at once where the resource allows it, else a prefilled request."""
        outcome = await self.ingress.extend_or_form(_text(data, "request_id"), person.email)
        if isinstance(outcome, Extended):
            extended = await self.cards.card("access_extended", outcome.request, person.email)
            return message_response(extended["summary"])
        return await self._new_form(ctx, person, outcome.resource_id, outcome.prefill)

    async def on_rerequest(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Request again: the form, for the same resource, as a new message (the notice stays)."""
        return await self._new_form(ctx, person, _text(data, "resource_id") or None, {})

    async def _new_form(
        self, ctx: TurnContext, person: Person, selected: str | None, prefill: dict[str, str]
    ) -> InvokeResponse:
        form = await self.cards.form(person, selected, prefill)
        await ctx.send_activity(card_activity(form))
        return message_response(form["summary"])

    async def on_open_form(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Request access (home) and Next (a resource was chosen): the form, in place."""
        prefill = {
            k: _text(data, k) for k in ("justification", "ticket", "duration") if _text(data, k)
        }
        return card_response(
            await self.cards.form(person, _text(data, "resource") or None, prefill)
        )

    async def on_submit_request(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        values = {k: _text(data, k) for k in FORM_FIELDS}
        prefill = {k: values[k] for k in ("duration", "justification", "ticket")}
        glass = break_glass_on(values)
        if values["resource"] != _text(data, "form_resource"):
            # Another resource was chosen in the form: show what that one needs first.
            form = await self.cards.form(person, values["resource"] or None, prefill, glass)
            return card_response(form)
        if glass != break_glass_on(data, "form_break_glass"):
            # The emergency toggle changed since the form was drawn: show the form for what
            # it says now (break-glass's cap as the duration) before anything is granted.
            del prefill["duration"]
            return card_response(await self.cards.form(person, values["resource"], prefill, glass))
        # A double click or a redelivery of the same form with the same values submits once.
        try:
            request = await self.ingress.submit_once(person.email, values, replied_to(ctx.activity))
        except Refused as exc:
            # Errors about anything the form has no input for are listed on top of it.
            errors = field_errors(exc, values)
            return card_response(
                await self.cards.form(person, values["resource"], prefill, glass, errors=errors)
            )
        if request is None:  # a repeat while the first is still being made: the form again
            form = await self.cards.form(person, values["resource"] or None, prefill, glass)
            return card_response(form)
        # The form is replaced in place by what it filed, with no input nor Request left:
        # an old error or an edited copy cannot file a second request (a repeat from this
        # form gets this card again). The confirmation (with Cancel) arrives as its own
        # message through the outbox, as on Slack.
        return card_response(await self.cards.submitted_form(request, person.email))

    # --- reviewers ------------------------------------------------------------------------

    async def on_review_keep(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        return await self._review(person, data, "keep")

    async def on_review_revoke(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        return await self._review(person, data, "revoke")

    async def _review(self, person: Person, data: dict[str, Any], verdict: str) -> InvokeResponse:
        """Keep / Revoke (Justified / Not justified), the item's reason typed in place on
        the card (``reason_<index>``) or on the reason form (``reason``): the card as it is
        now, or the form asking why."""
        campaign_id = _text(data, "campaign_id")
        index = _number(data, "index")
        index = -1 if index is None else index  # names no item: the use case refuses it
        key = f"reason_{index}" if f"reason_{index}" in data else "reason"
        outcome = await self.reviews.decide_or_ask(
            campaign_id,
            index,
            person.email,
            verdict_of(verdict, campaign_id, index),
            _text(data, key),
            asked=key in data,
        )
        if isinstance(outcome, AskReason):
            return card_response(self.cards.review_reason(outcome.data))
        return card_response(await self.cards.review(campaign_id, person.email))

    async def on_review_keep_all(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        campaign_id = _text(data, "campaign_id")
        await self.reviews.keep_all(campaign_id, person.email)
        return card_response(await self.cards.review(campaign_id, person.email))

    async def on_review_open(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Open review on the status card: the reviewer's card, in place."""
        return card_response(await self.cards.review(_text(data, "campaign_id"), person.email))
