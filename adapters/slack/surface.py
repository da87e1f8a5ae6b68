"""Slack ingress: the bolt app's listeners. The middleware (``adapters.slack.listeners``)
checks each delivery's signature and shape before bolt sees it, hands each listener the
verified person and answers a refusal, so a listener parses ids, makes one use-case call
and renders the result.

Button values carry only a request id and a stage token (a review's: its campaign id and
an item index), never who may decide.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.listeners import Listeners, Turn, error_message
from adapters.slack.payloads import Rejected
from bot.admin_commands import AdminCommands
from bot.button_values import id_and_number
from bot.forms import FORM_FIELDS, break_glass_on, request_form
from bot.home import home_data
from bot.ingress import Ingress, MessageRef, PrefilledForm
from bot.notifier import Notifier
from bot.review_ingress import AskReason, ReviewIngress, verdict_of
from bot.usecases import Clearance
from engine.directory import Person
from engine.refusals import Refused
from message_templates import field_errors, refusal_text, render_json

log = logging.getLogger(__name__)


def _value(state: dict[str, Any], block: str) -> str:
    """The value of input ``block`` (action id ``value``) in a submitted view's state; for
    checkboxes, the ticked options' values ("" when none is ticked)."""
    entry = state.get(block, {}).get("value", {})
    if entry.get("selected_option"):
        return str(entry["selected_option"].get("value", ""))
    if isinstance(entry.get("selected_options"), list):
        return ",".join(str(o.get("value", "")) for o in entry["selected_options"])
    return str(entry.get("value") or "")


def _item_token(value: str) -> tuple[str, int]:
    """A review button's value, ``<campaign>:<index>`` (-1, an item no campaign has, when
    the value is not one: the use case refuses it)."""
    campaign_id, index = id_and_number(value)
    return campaign_id, -1 if index is None else index


def _reason_errors(exc: Refused, view: dict[str, Any]) -> dict[str, str]:
    """A deny or review reason form has one input: every refusal shows under it."""
    return {"reason": refusal_text(exc)}


def _request_form_errors(exc: Refused, view: dict[str, Any]) -> dict[str, str]:
    # Slack shows errors only under inputs the modal has: others go on one that is.
    blocks = {b["block_id"] for b in view.get("blocks", []) if b.get("block_id")}
    fallback = "justification" if "justification" in blocks else "resource"
    return field_errors(exc, blocks, fallback)


async def _home_tab(turn: Turn) -> bool:
    return bool(turn.event.get("tab", "home") == "home")


class SlackSurface:
    """Builds the bolt AsyncApp and serves ``POST /slack/events``."""

    def __init__(
        self,
        clearance: Clearance,
        notifier: Notifier,
        admin: AdminCommands,
        ingress: Ingress,
        reviews: ReviewIngress,
        client: AsyncWebClient,
        signing_secret: str | None,
    ) -> None:
        self.clearance = clearance
        self.notifier = notifier
        self.admin = admin
        self.ingress = ingress
        self.reviews = reviews
        self.client = client
        # Without a signing secret (Socket Mode only) the HTTP route is never mounted.
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            request_verification_enabled=signing_secret is not None,
        )
        self.listeners = Listeners(self.app, clearance, signing_secret)
        self._register()

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp route for ``/slack/events`` (commands, interactivity and events)."""
        try:
            bolt_request = self.listeners.admit(
                await request.read(), request.headers, request.query_string
            )
        except Rejected as exc:
            log.info("Slack request refused (%d): %s", exc.status, exc.reason)
            return web.Response(status=exc.status, text=HTTPStatus(exc.status).phrase)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def idle(self, limit: float = 10.0) -> None:
        """Wait until no listener is still working (graceful shutdown; tests)."""
        await self.listeners.idle(limit)

    def _register(self) -> None:
        on = self.listeners
        on.command("/request-access", self.on_command)
        on.action({"block_id": "resource", "action_id": "value"}, self.on_form_changed, True)
        on.action({"block_id": "break_glass", "action_id": "value"}, self.on_form_changed, True)
        on.view("request_form", self.on_request_submitted, _request_form_errors)
        on.action("approve", self.on_approve)
        on.action_for_anyone("deny", self.on_deny_clicked)
        on.view("deny_form", self.on_deny_submitted, _reason_errors)
        on.action("cancel", self.on_cancel)
        on.action("done", self.on_done)
        on.action("extend", self.on_extend)
        on.action("rerequest", self.on_reopen_form)
        on.action("open_form", self.on_reopen_form)
        on.action("review_keep", self.on_review_keep)
        on.action("review_revoke", self.on_review_revoke)
        on.action("review_keep_all", self.on_review_keep_all)
        on.view("review_reason", self.on_review_reason, _reason_errors)
        on.event("app_home_opened", self.on_home_opened, self._home_refused, when=_home_tab)
        on.event("app_mention", self.on_mention, self._mention_refused, when=self._first_time)

    # --- the request form ---------------------------------------------------------------

    async def _open_form(
        self, trigger_id: str, person: Person, selected: str | None, prefill: dict[str, str]
    ) -> None:
        data = await request_form(self.clearance, person.email, selected, prefill)
        view = render_json("slack", "request_form", data)
        await self.client.views_open(trigger_id=trigger_id, view=view)

    async def on_command(self, person: Person, turn: Turn) -> None:
        selected = str(turn.command.get("text", "")).strip() or None
        await self._open_form(turn.trigger_id, person, selected, {})

    async def on_reopen_form(self, person: Person, turn: Turn) -> None:
        """Request again and the Home button: the form, prefilled with the resource."""
        await self._open_form(turn.trigger_id, person, turn.value or None, {})

    async def on_form_changed(self, person: Person, turn: Turn) -> None:
        """A resource was chosen or the emergency box ticked: the form for that, with what
        was typed kept (the duration starts again from the new choice's default)."""
        view = turn.view
        state = view["state"]["values"]
        values = {name: _value(state, name) for name in FORM_FIELDS}
        prefill = {"justification": values["justification"], "ticket": values["ticket"]}
        data = await request_form(
            self.clearance,
            person.email,
            values["resource"],
            prefill,
            break_glass=break_glass_on(values),
        )
        await self.client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=render_json("slack", "request_form", data),
        )

    async def on_request_submitted(self, person: Person, turn: Turn) -> None:
        view = turn.view
        values = {name: _value(view["state"]["values"], name) for name in FORM_FIELDS}
        # A replayed or retried submission of this view with these values files nothing
        # more and is acked as the first was (the modal closes); the confirmation DM goes
        # out through the outbox.
        await self.ingress.submit_once(
            person.email, values, MessageRef("slack", view["id"], view["hash"])
        )

    async def on_extend(self, person: Person, turn: Turn) -> None:
        """Extend: more time at once where the resource allows it, else a prefilled request."""
        outcome = await self.ingress.extend_or_form(turn.value, person.email)
        if isinstance(outcome, PrefilledForm):
            await self._open_form(turn.trigger_id, person, outcome.resource_id, outcome.prefill)
        # Extended: the requester hears it from the access_extended notice.

    # --- decisions on a card ------------------------------------------------------------

    async def on_approve(self, person: Person, turn: Turn) -> None:
        request_id, stage = id_and_number(turn.value)
        await self.clearance.decide(request_id, person.email, "approve", expected_stage=stage)

    async def on_deny_clicked(self, turn: Turn) -> None:
        request_id, _stage = id_and_number(turn.value)
        request = await self.clearance.get(request_id)
        data = {"r": await self.notifier.view(request, None), "private_metadata": turn.value}
        await self.client.views_open(
            trigger_id=turn.trigger_id, view=render_json("slack", "deny_form", data)
        )

    async def on_deny_submitted(self, person: Person, turn: Turn) -> None:
        request_id, stage = id_and_number(turn.view.get("private_metadata", ""))
        reason = _value(turn.view["state"]["values"], "reason")
        await self.clearance.decide(request_id, person.email, "deny", reason, expected_stage=stage)

    async def on_cancel(self, person: Person, turn: Turn) -> None:
        await self.clearance.cancel(turn.value, person.email)

    async def on_done(self, person: Person, turn: Turn) -> None:
        await self.clearance.revoke(turn.value, person.email)

    # --- access reviews -------------------------------------------------------------------

    async def on_review_keep(self, person: Person, turn: Turn) -> None:
        await self._review_clicked(person, turn, "keep")

    async def on_review_revoke(self, person: Person, turn: Turn) -> None:
        await self._review_clicked(person, turn, "revoke")

    async def _review_clicked(self, person: Person, turn: Turn, verdict: str) -> None:
        """Keep / Revoke (Justified / Not justified): decided at once, or the modal asks why.
        The card refreshes through the outbox."""
        campaign_id, index = _item_token(turn.value)
        outcome = await self.reviews.decide_or_ask(
            campaign_id, index, person.email, verdict_of(verdict, campaign_id, index)
        )
        if isinstance(outcome, AskReason):
            view = render_json("slack", "review_reason_form", outcome.data)
            await self.client.views_open(trigger_id=turn.trigger_id, view=view)

    async def on_review_reason(self, person: Person, turn: Turn) -> None:
        """The modal's reason: the verdict it was opened for, decided with it."""
        item, _, verdict = turn.view.get("private_metadata", "").rpartition(":")
        campaign_id, index = _item_token(item)
        reason = _value(turn.view["state"]["values"], "reason")
        await self.reviews.decide(
            campaign_id, index, person.email, verdict_of(verdict, campaign_id, index), reason
        )

    async def on_review_keep_all(self, person: Person, turn: Turn) -> None:
        await self.reviews.keep_all(turn.value, person.email)

    # --- App Home and admin commands ----------------------------------------------------

    async def on_home_opened(self, person: Person, turn: Turn) -> None:
        await self.client.views_publish(user_id=turn.user_id, view=await self.home_view(person))

    async def _home_refused(self, turn: Turn, exc: Refused) -> None:
        view = {"type": "home", "blocks": error_message(refusal_text(exc))["blocks"]}
        await self.client.views_publish(user_id=turn.user_id, view=view)

    async def home_view(self, person: Person) -> dict[str, Any]:
        data = await home_data(self.clearance, self.notifier, self.reviews.views, person)
        return render_json("slack", "home", data)

    async def _first_time(self, turn: Turn) -> bool:
        # Slack retries an event it thinks we missed; act on each event once, on any replica.
        event = turn.event
        key = turn.body.get("event_id") or event.get("client_msg_id") or event.get("ts")
        return await self.ingress.first_time(f"slack:{key}")

    async def on_mention(self, person: Person, turn: Turn) -> None:
        channel, thread = _where(turn.event)
        in_admin_channel = bool(channel) and channel == self.clearance.policy.admins.channel
        reply = await self.admin.run(
            person.email, in_admin_channel, str(turn.event.get("text", ""))
        )
        message = render_json("slack", "admin_reply", reply.data())
        await self.client.chat_postMessage(channel=channel, thread_ts=thread, **message)

    async def _mention_refused(self, turn: Turn, exc: Refused) -> None:
        channel, thread = _where(turn.event)
        await self.client.chat_postMessage(
            channel=channel, thread_ts=thread, **error_message(refusal_text(exc))
        )


def _where(event: dict[str, Any]) -> tuple[str, str | None]:
    """The channel and thread a mention is answered in."""
    thread = event.get("thread_ts") or event.get("ts")
    return str(event.get("channel", "")), str(thread) if thread else None


def manifest_data(url: str) -> dict[str, Any]:
    """Data for the Slack app manifest template (one paste creates the app)."""
    base = url.rstrip("/")
    return {"events_url": f"{base}/slack/events", "name": "Clearance"}


__all__ = ["SlackSurface", "manifest_data"]
