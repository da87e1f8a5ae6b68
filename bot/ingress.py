"""The flows every chat surface shares, over the use cases: a form submitted once, Extend
that either adds time or asks for it, a card action that may be out of date, and the
records a delivery is checked against.

A surface parses the platform's payload, makes one call here (or one plain use case in
``bot.usecases``) and renders the result; which refusals mean what lives here, not there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from bot.chat_records import InboundEvents, SentMessages
from bot.forms import extension_prefill, request_draft
from bot.usecases import EXTEND_NEEDS_REQUEST, Clearance
from engine.access_request import AccessRequest, Outcome
from engine.chat_records import SentMessage
from engine.refusals import Refusal, Refused

# Refusals that mean "the card someone acted on is out of date" (a double click, a retry,
# someone else decided first): nothing changed, and the card as it is now is the answer.
OUTDATED_CARD = frozenset(
    {"stale", "not_pending", "already_decided", "not_cancellable", "already_ended"}
)
# The template a form message is logged under once its submission made a request.
_SUBMITTED_FORM = "request_form"


@dataclass(frozen=True)
class MessageRef:
    """A chat message someone acted on: a form submitted from it, or a card clicked."""

    platform: str
    channel: str
    message_id: str

    @property
    def known(self) -> bool:
        """Whether the platform named the message (Teams leaves replyToId out at times)."""
        return bool(self.channel and self.message_id)


@dataclass(frozen=True)
class Extended:
    """Extend added the time at once; the requester also hears it through the outbox."""

    request: AccessRequest


@dataclass(frozen=True)
class PrefilledForm:
    """More time has to be asked for as a new request: open this form."""

    resource_id: str
    prefill: dict[str, str]


@dataclass(frozen=True)
class CardAction:
    """What a click on a request's card came to: ``outdated`` when it changed nothing
    because the card was out of date, and ``request`` as it is now either way."""

    request: AccessRequest
    outdated: bool = False


def submission_key(requester: str, form: MessageRef, values: Mapping[str, str]) -> str:
    """The idempotency key of a form submission. A form message the platform names is
    submitted once, whatever values it is sent with again (a double click, a redelivery,
    an old copy of the card edited); one it does not name, once per requester and values."""
    if form.known:
        what = json.dumps([requester, form.channel, form.message_id])
    else:
        what = json.dumps([requester, dict(values)], sort_keys=True)
    digest = hashlib.sha256(what.encode()).hexdigest()
    return f"{form.platform}:submit:{digest}"


class Ingress:
    """The chat surfaces' shared use cases, over ``Clearance`` and the chat records."""

    def __init__(self, clearance: Clearance, messages: SentMessages, events: InboundEvents) -> None:
        self.clearance = clearance
        self.messages = messages
        self.events = events

    async def first_time(self, key: str) -> bool:
        """True the first time a delivery is seen on any replica; False for a redelivery."""
        return await self.events.first_time(key, self.clearance.clock.now())

    async def clicked(self, message: MessageRef) -> SentMessage | None:
        """What a logged message someone acted on was about, or None."""
        if not message.known:
            return None
        return await self.messages.about(message.platform, message.channel, message.message_id)

    async def submit_once(
        self, requester: str, values: Mapping[str, str], form: MessageRef
    ) -> AccessRequest | None:
        """Submit a filled-in request form once per form message (``submission_key``).

        A repeat (a double click, a redelivery, the same form sent again with other
        values) gets the request the first one made, or None while that one is still being
        made. A refused submission releases its key, so the corrected form can be sent; it
        raises Refused as ``Clearance.submit`` does.
        """
        key = submission_key(requester, form, values)
        if not await self.first_time(key):
            return await self._made_by(requester, form)
        try:
            request = await self.clearance.submit(request_draft(requester, values))
        except Refused:
            await self.events.release(key)  # nothing was made: the form may be sent again
            raise
        if form.known:
            # Remember which request this form made, for the answer to a repeat.
            sent = SentMessage(
                request.id,
                form.platform,
                requester,
                _SUBMITTED_FORM,
                None,
                form.channel,
                form.message_id,
            )
            await self.messages.add(sent, None, self.clearance.clock.now())
        return request

    async def _made_by(self, requester: str, form: MessageRef) -> AccessRequest | None:
        sent = await self.clicked(form)
        if sent is None or sent.template != _SUBMITTED_FORM or sent.recipient != requester:
            return None
        return await self.clearance.get(sent.request_id)

    async def extend_or_form(self, request_id: str, actor: str) -> Extended | PrefilledForm:
        """Extend: more time at once where the resource allows it, else the request form
        prefilled to ask for it through approval. Raises Refused for anything else."""
        try:
            return Extended(await self.clearance.extend(request_id, actor))
        except Refused as exc:
            if exc.code not in EXTEND_NEEDS_REQUEST:
                raise
        request = await self.clearance.get(request_id)
        return PrefilledForm(request.resource_id, extension_prefill(request))

    async def decide(
        self,
        request_id: str,
        actor: str,
        outcome: Outcome,
        reason: str = "",
        expected_stage: int | None = None,
    ) -> CardAction:
        """An approver's click on a card: the decision, or the card was out of date."""
        return await self._on_card(
            request_id,
            actor,
            self.clearance.decide(request_id, actor, outcome, reason, expected_stage),
        )

    async def cancel(self, request_id: str, actor: str) -> CardAction:
        """The requester's Cancel on a card: withdrawn, or the card was out of date."""
        return await self._on_card(request_id, actor, self.clearance.cancel(request_id, actor))

    async def _on_card(
        self, request_id: str, actor: str, change: Awaitable[AccessRequest]
    ) -> CardAction:
        try:
            return CardAction(await change)
        except Refused as exc:
            if exc.code not in OUTDATED_CARD:
                raise
            # Only someone the request involves may see it as it is now; anyone else
            # hears the refusal and learns nothing about it.
            request = await self.clearance.get(request_id)
            if not request.involves(actor):
                raise
            return CardAction(request, outdated=True)

    async def visible(self, request_id: str, viewer: str) -> AccessRequest:
        """A request for someone it involves to look at; refused to anyone else."""
        request = await self.clearance.get(request_id)
        if not request.involves(viewer):
            raise Refused(Refusal("not_yours"))
        return request
