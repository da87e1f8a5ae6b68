"""Slack ingress: the bolt app's listeners. Each one verifies (bolt checked the signature),
parses ids from the payload, makes one use-case call and acks with a rendered result.

The actor is always the verified ``user.id`` of the payload, mapped to a directory person;
button values carry only a request id and a stage token, never who may decide.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin_commands import AdminCommands
from bot.forms import extension_prefill, request_form
from bot.home import home_data
from bot.notifier import Notifier
from bot.usecases import EXTEND_NEEDS_REQUEST, Clearance
from engine.directory import Person
from engine.drafts import RequestDraft
from engine.refusals import Refused
from message_templates import field_errors, refusal_text, render_json
from storage.chat_log import ChatLog

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]


def _value(state: dict[str, Any], block: str) -> str:
    """The value of input ``block`` (action id ``value``) in a submitted view's state."""
    entry = state.get(block, {}).get("value", {})
    if entry.get("selected_option"):
        return str(entry["selected_option"].get("value", ""))
    return str(entry.get("value") or "")


def _stage_token(value: str) -> tuple[str, int | None]:
    request_id, _, stage = value.partition(":")
    return request_id, int(stage) if stage.isdigit() else None


class SlackSurface:
    """Builds the bolt AsyncApp and serves ``POST /slack/events``."""

    def __init__(
        self,
        clearance: Clearance,
        notifier: Notifier,
        admin: AdminCommands,
        chat_log: ChatLog,
        client: AsyncWebClient,
        signing_secret: str | None,
    ) -> None:
        self.clearance = clearance
        self.notifier = notifier
        self.admin = admin
        self.chat_log = chat_log
        self.client = client
        # Without a signing secret (Socket Mode only) the HTTP route is never mounted.
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            request_verification_enabled=signing_secret is not None,
        )
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._register()

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp route for ``/slack/events`` (commands, interactivity and events)."""
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    # --- identity -----------------------------------------------------------------------

    async def person(self, user_id: str) -> Person:
        async def email() -> str | None:
            info = await self.client.users_info(user=user_id)
            profile = (info.get("user") or {}).get("profile") or {}
            value = profile.get("email")
            return str(value) if value else None

        return await self.clearance.person_for_chat("slack", user_id, email)

    @staticmethod
    def error(message: str) -> dict[str, Any]:
        return render_json("slack", "error", {"message": message})

    # --- listeners ----------------------------------------------------------------------

    def _register(self) -> None:
        app, t = self.app, self._tracked
        app.command("/request-access")(t(self.on_command))
        app.action({"block_id": "resource", "action_id": "value"})(t(self.on_resource_chosen))
        app.view("request_form")(t(self.on_request_submitted))
        app.action("approve")(t(self.on_approve))
        app.action("deny")(t(self.on_deny_clicked))
        app.view("deny_form")(t(self.on_deny_submitted))
        app.action("cancel")(t(self.on_cancel))
        app.action("done")(t(self.on_done))
        app.action("extend")(t(self.on_extend))
        app.action("rerequest")(t(self.on_reopen_form))
        app.action("open_form")(t(self.on_reopen_form))
        app.event("app_home_opened")(t(self.on_home_opened))
        app.event("app_mention")(t(self.on_mention))

    def _tracked(self, listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Count a listener's work, which goes on after the ack, until it is done."""

        @functools.wraps(listener)
        async def run(**kwargs: Any) -> None:
            self._inflight += 1
            self._idle.clear()
            try:
                await listener(**kwargs)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()

        return run

    async def idle(self, limit: float = 10.0) -> None:
        """Wait until no listener is still working (graceful shutdown; tests)."""
        await asyncio.sleep(0)
        await asyncio.wait_for(self._idle.wait(), limit)

    async def _open_form(
        self, trigger_id: str, person: Person, selected: str | None, prefill: dict[str, str]
    ) -> None:
        data = await request_form(self.clearance, person.email, selected, prefill)
        view = render_json("slack", "request_form", data)
        await self.client.views_open(trigger_id=trigger_id, view=view)

    async def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        try:
            person = await self.person(command["user_id"])
        except Refused as exc:
            await ack(**self.error(refusal_text(exc)))
            return
        await ack()
        await self._open_form(
            command["trigger_id"], person, command.get("text", "").strip() or None, {}
        )

    async def on_extend(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        """Extend: more time at once where the resource allows it, else a prefilled request."""
        await ack()
        person = await self.person(body["user"]["id"])
        request_id = str(action.get("value") or "")
        try:
            await self.clearance.extend(request_id, person.email)
        except Refused as exc:
            if exc.code not in EXTEND_NEEDS_REQUEST:
                await self._refuse(respond, refusal_text(exc))
                return
        else:
            return  # the requester hears it from the access_extended notice
        request = await self.clearance.get(request_id)
        await self._open_form(
            body["trigger_id"], person, request.resource_id, extension_prefill(request)
        )

    async def on_reopen_form(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Request again and the Home button: the form, prefilled with the resource."""
        await ack()
        person = await self.person(body["user"]["id"])
        value = str(action.get("value") or "")
        await self._open_form(body["trigger_id"], person, value or None, {})

    async def on_resource_chosen(self, ack: Ack, body: dict[str, Any]) -> None:
        await ack()
        view = body["view"]
        state = view["state"]["values"]
        person = await self.person(body["user"]["id"])
        prefill = {
            "justification": _value(state, "justification"),
            "ticket": _value(state, "ticket"),
        }
        data = await request_form(self.clearance, person.email, _value(state, "resource"), prefill)
        await self.client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=render_json("slack", "request_form", data),
        )

    async def on_request_submitted(
        self, ack: Ack, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        state = view["state"]["values"]
        blocks = {b["block_id"] for b in view.get("blocks", []) if b.get("block_id")}
        try:
            person = await self.person(body["user"]["id"])
            draft = RequestDraft(
                requester=person.email,
                resource_id=_value(state, "resource"),
                duration=_value(state, "duration") or None,
                justification=_value(state, "justification"),
                ticket=_value(state, "ticket") or None,
            )
            await self.clearance.submit(draft)
        except Refused as exc:
            # Slack shows errors only under inputs the modal has: others go on one that is.
            fallback = "justification" if "justification" in blocks else "resource"
            await ack(response_action="errors", errors=field_errors(exc, blocks, fallback))
            return
        await ack()  # the confirmation DM goes out through the outbox

    async def _refuse(self, respond: Callable[..., Awaitable[Any]], message: str) -> None:
        """Tell only the clicker why nothing happened; the card stays as it is."""
        await respond(replace_original=False, response_type="ephemeral", **self.error(message))

    async def _decide_and_tell(
        self, respond: Callable[..., Awaitable[Any]], call: Awaitable[Any]
    ) -> None:
        try:
            await call
        except Refused as exc:
            await self._refuse(respond, refusal_text(exc))

    async def on_approve(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        request_id, stage = _stage_token(str(action.get("value", "")))
        try:
            person = await self.person(body["user"]["id"])
        except Refused as exc:
            await self._refuse(respond, refusal_text(exc))
            return
        await self._decide_and_tell(
            respond,
            self.clearance.decide(request_id, person.email, "approve", expected_stage=stage),
        )

    async def on_deny_clicked(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        request_id, _stage = _stage_token(str(action.get("value", "")))
        request = await self.clearance.get(request_id)
        data = {
            "r": await self.notifier.view(request, None),
            "private_metadata": str(action["value"]),
        }
        await self.client.views_open(
            trigger_id=body["trigger_id"], view=render_json("slack", "deny_form", data)
        )

    async def on_deny_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id, stage = _stage_token(view.get("private_metadata", ""))
        reason = _value(view["state"]["values"], "reason")
        try:
            person = await self.person(body["user"]["id"])
            await self.clearance.decide(
                request_id, person.email, "deny", reason, expected_stage=stage
            )
        except Refused as exc:
            await ack(response_action="errors", errors={"reason": refusal_text(exc)})
            return
        await ack()

    async def on_cancel(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        person = await self.person(body["user"]["id"])
        await self._decide_and_tell(
            respond, self.clearance.cancel(str(action["value"]), person.email)
        )

    async def on_done(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        person = await self.person(body["user"]["id"])
        await self._decide_and_tell(
            respond, self.clearance.revoke(str(action["value"]), person.email)
        )

    async def on_home_opened(self, event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = event["user"]
        try:
            person = await self.person(user_id)
        except Refused as exc:
            view = {"type": "home", "blocks": self.error(refusal_text(exc))["blocks"]}
            await self.client.views_publish(user_id=user_id, view=view)
            return
        await self.client.views_publish(user_id=user_id, view=await self.home_view(person))

    async def home_view(self, person: Person) -> dict[str, Any]:
        data = await home_data(self.clearance, self.notifier, person)
        return render_json("slack", "home", data)

    async def on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Slack retries an event it thinks we missed; act on each event once, on any replica.
        key = f"slack:{body.get('event_id') or event.get('client_msg_id') or event.get('ts')}"
        if not await self.chat_log.first_time(key, self.clearance.clock.now()):
            return
        channel = str(event.get("channel", ""))
        thread = event.get("thread_ts") or event.get("ts")
        try:
            person = await self.person(str(event.get("user", "")))
        except Refused as exc:
            await self.client.chat_postMessage(
                channel=channel, thread_ts=thread, **self.error(refusal_text(exc))
            )
            return
        in_admin_channel = bool(channel) and channel == self.clearance.policy.admins.channel
        reply = await self.admin.run(person.email, in_admin_channel, str(event.get("text", "")))
        message = render_json("slack", "admin_reply", reply.data())
        await self.client.chat_postMessage(channel=channel, thread_ts=thread, **message)


def manifest_data(url: str) -> dict[str, Any]:
    """Data for the Slack app manifest template (one paste creates the app)."""
    base = url.rstrip("/")
    return {"events_url": f"{base}/slack/events", "name": "Clearance"}


__all__ = ["SlackSurface", "manifest_data"]
