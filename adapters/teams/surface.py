"""Teams ingress: ``POST /api/messages``. The route verifies the Bot Framework token; the
activity handler parses ids, makes one use-case call and answers with a rendered template.

The actor is always the verified sender of the activity (``from.aadObjectId`` / ``from.id``)
mapped to a directory person; card buttons carry only a request id and a stage, never who
may decide. Card actions are ``Action.Execute`` invokes answered with an Adaptive Card (the
card replaced in place) or a short message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext, serializer_helper
from botbuilder.core.teams import TeamsActivityHandler, TeamsInfo
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity
from botframework.connector.auth import BotFrameworkAuthentication
from msrest.serialization import Model

from adapters.teams.activities import (
    card_activity,
    card_response,
    channel_of,
    conversation_of,
    is_personal,
    message_response,
    tenant_of,
)
from bot.admin_commands import AdminCommands
from bot.forms import extension_prefill, request_form
from bot.home import home_data
from bot.notifier import LIVE_TEMPLATES, Notifier
from bot.usecases import EXTEND_NEEDS_REQUEST, Clearance
from engine.access_request import AccessRequest
from engine.directory import Person
from engine.drafts import RequestDraft
from engine.refusals import Refusal, Refused
from message_templates import field_errors, refusal_text, render_json
from storage.chat_log import ChatLog, SentMessage
from storage.conversations import TeamsConversations

log = logging.getLogger(__name__)

Message = dict[str, Any]
Verb = Callable[[TurnContext, Person, dict[str, Any]], Awaitable[InvokeResponse]]

# Refusals that mean "this card is out of date": the answer is the card as it is now.
_OUTDATED = ("stale", "not_pending", "already_decided", "not_cancellable", "already_ended")
_REQUEST = re.compile(r"^/?request(?:[\s_-]+access)?(?:\s+(?P<resource>\S+))?\s*$", re.I)
_STATUS = re.compile(r"^/?(?:status|my\s+requests|home)\s*$", re.I)
_TAGS = re.compile(r"<[^>]{0,200}>")


def parse_personal(text: str) -> tuple[str, str | None]:
    """What a 1:1 message asks for: ("request", resource or None), ("status"|"help", None)."""
    text = " ".join(_TAGS.sub(" ", text or "").split())
    if match := _REQUEST.match(text):
        return "request", match.group("resource")
    if _STATUS.match(text):
        return "status", None
    return "help", None


def _stage(data: dict[str, Any]) -> int | None:
    value = data.get("stage")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


class TeamsBot(TeamsActivityHandler):  # type: ignore[misc]  # botbuilder is untyped
    """The activity handler: 1:1 requests, admin commands in the admin channel, card actions
    and the conversations the bot may later write to."""

    def __init__(
        self,
        clearance: Clearance,
        notifier: Notifier,
        admin: AdminCommands,
        chat_log: ChatLog,
        conversations: TeamsConversations,
    ) -> None:
        self.clearance = clearance
        self.notifier = notifier
        self.admin = admin
        self.chat_log = chat_log
        self.conversations = conversations
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
        }

    # --- identity -----------------------------------------------------------------------

    async def person(self, ctx: TurnContext) -> Person:
        """The directory person behind the verified sender: by Teams id, else roster email."""
        sender = ctx.activity.from_property
        aad_id = (sender.aad_object_id if sender else None) or None
        user_id = (sender.id if sender else None) or ""

        async def email() -> str | None:
            if aad_id and user_id:
                by_id = await self.clearance.directory.person_by_chat_id("teams", user_id)
                if by_id is not None:
                    return by_id.email
            return await self._roster_email(ctx)

        return await self.clearance.person_for_chat("teams", aad_id or user_id, email)

    async def _roster_email(self, ctx: TurnContext) -> str | None:
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

    # --- rendering ----------------------------------------------------------------------

    @staticmethod
    def error(message: str) -> Message:
        return render_json("teams", "error", {"message": message})

    def refusal(self, exc: Refused) -> InvokeResponse:
        return message_response(self.error(refusal_text(exc))["summary"])

    async def card(self, template: str, request: AccessRequest, viewer: str | None) -> Message:
        return render_json("teams", template, {"r": await self.notifier.view(request, viewer)})

    async def form(
        self, person: Person, selected: str | None, prefill: dict[str, str], **extra: Any
    ) -> Message:
        data = await request_form(self.clearance, person.email, selected, prefill)
        return render_json("teams", "request_form", {**data, **extra})

    async def home(self, person: Person) -> Message:
        return render_json("teams", "home", await home_data(self.clearance, self.notifier, person))

    async def clicked(self, ctx: TurnContext) -> SentMessage | None:
        """The logged message whose card was acted on (Teams names it in replyToId)."""
        activity = ctx.activity
        if not activity.reply_to_id or activity.conversation is None:
            return None
        return await self.chat_log.about("teams", activity.conversation.id, activity.reply_to_id)

    async def current(self, ctx: TurnContext, person: Person, request_id: str) -> InvokeResponse:
        """The acted-on card as it is now for this viewer: an approval card where one was
        clicked, else the home card (whose lists carry the same buttons)."""
        sent = await self.clicked(ctx)
        if sent is not None and sent.request_id == request_id and sent.template in LIVE_TEMPLATES:
            request = await self.clearance.get(request_id)
            return card_response(await self.card(sent.template, request, person.email))
        return card_response(await self.home(person))

    async def outdated_or_refused(
        self, ctx: TurnContext, person: Person, request_id: str, exc: Refused
    ) -> InvokeResponse:
        """A double click or a stale card gets the card as it is now; anything else (and
        anyone who may not see the request) gets the reason, and nothing changed."""
        if exc.code in _OUTDATED:
            request = await self.clearance.get(request_id)
            if request.involves(person.email):
                return await self.current(ctx, person, request_id)
        return self.refusal(exc)

    # --- messages -----------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        if is_personal(turn_context.activity):
            await self.remember(turn_context)
            await self.on_personal_message(turn_context)
        else:
            await self.on_channel_message(turn_context)

    async def on_personal_message(self, ctx: TurnContext) -> None:
        try:
            person = await self.person(ctx)
        except Refused as exc:
            await ctx.send_activity(card_activity(self.error(refusal_text(exc))))
            return
        command, resource = parse_personal(ctx.activity.text or "")
        if command == "request":
            message = await self.form(person, resource, {})
        else:  # status, help and anything else: what Clearance can do for this person
            message = await self.home(person)
        await ctx.send_activity(card_activity(message))

    async def on_channel_message(self, ctx: TurnContext) -> None:
        """Admin commands: the bot was mentioned in a channel or group chat."""
        activity = ctx.activity
        # A redelivered message is acted on once, on any replica.
        if not await self.chat_log.first_time(f"teams:{activity.id}", self.clearance.clock.now()):
            return
        # A malformed mention entity is skipped: the command parser strips <at> tags too.
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            TurnContext.remove_recipient_mention(activity)
        await self.remember(ctx)  # the admin feed can be posted to this team from now on
        try:
            person = await self.person(ctx)
        except Refused as exc:
            await ctx.send_activity(card_activity(self.error(refusal_text(exc))))
            return
        admin_channel = self.clearance.policy.admins.teams_channel
        in_admin_channel = bool(admin_channel) and channel_of(activity) == admin_channel
        reply = await self.admin.run(person.email, in_admin_channel, activity.text or "")
        await ctx.send_activity(card_activity(render_json("teams", "admin_reply", reply.data())))

    # --- installs: the conversations the bot may write to later -------------------------

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        bot_id = activity.recipient.id if activity.recipient else None
        if any(m.id == bot_id for m in activity.members_removed or []):
            await self.conversations.forget(conversation_of(activity).conversation_id)
        elif is_personal(activity) or any(m.id == bot_id for m in activity.members_added or []):
            await self.remember(turn_context)

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if (activity.action or "").lower().startswith("remove"):
            await self.conversations.forget(conversation_of(activity).conversation_id)
        else:
            await self.remember(turn_context)

    async def remember(self, ctx: TurnContext) -> None:
        """Keep the conversation so proactive messages can reach it; a 1:1 chat is kept
        with the person's roster email, which finds them when the directory has no
        Teams id for them."""
        conversation = conversation_of(ctx.activity)
        if not conversation.conversation_id or not conversation.service_url:
            return
        if conversation.kind == "personal":
            known = await self.conversations.get(conversation.conversation_id)
            if known is not None and known.email and known.service_url == conversation.service_url:
                return
            conversation = replace(conversation, email=await self._roster_email(ctx))
        await self.conversations.save(conversation, self.clearance.clock.now())

    # --- card actions (Action.Execute) ---------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        activity = turn_context.activity
        if activity.name != "adaptiveCard/action":
            response: InvokeResponse = await super().on_invoke_activity(turn_context)
            return response
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("action")
        action = action if isinstance(action, dict) else {}
        data = action.get("data")
        data = data if isinstance(data, dict) else {}
        handler = self.verbs.get(str(action.get("verb") or ""))
        if handler is None or action.get("type") != "Action.Execute":
            return InvokeResponse(
                status=int(HTTPStatus.BAD_REQUEST),
                body={
                    "statusCode": int(HTTPStatus.BAD_REQUEST),
                    "type": "application/vnd.microsoft.error",
                    "value": {"code": "BadRequest", "message": "unknown card action"},
                },
            )
        try:
            person = await self.person(turn_context)
            return await handler(turn_context, person, data)
        except Refused as exc:  # unknown person or request: say why, change nothing
            return self.refusal(exc)

    async def on_refresh(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Teams asks for this viewer's own version of an approval card."""
        request = await self.clearance.get(_text(data, "request_id"))
        if not request.involves(person.email):
            return self.refusal(Refused(Refusal("not_yours")))
        return card_response(await self.card("approval_card", request, person.email))

    async def on_approve(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        request_id = _text(data, "request_id")
        try:
            await self.clearance.decide(
                request_id, person.email, "approve", expected_stage=_stage(data)
            )
        except Refused as exc:
            return await self.outdated_or_refused(ctx, person, request_id, exc)
        return await self.current(ctx, person, request_id)

    async def on_deny(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        request_id, stage = _text(data, "request_id"), _stage(data)
        reason = _text(data, "reason")
        try:
            await self.clearance.decide(
                request_id, person.email, "deny", reason, expected_stage=stage
            )
        except Refused as exc:
            if "reason" not in field_errors(exc):
                return await self.outdated_or_refused(ctx, person, request_id, exc)
            # An approver who may deny: ask for the reason (an error only if one was typed).
            request = await self.clearance.get(request_id)
            extra = {
                "private_metadata": f"{request_id}:{stage if stage is not None else ''}",
                "errors": field_errors(exc) if "reason" in data else {},
                "prefill": {"reason": reason},
            }
            return card_response(
                render_json(
                    "teams", "deny_form", {"r": await self.notifier.view(request, None), **extra}
                )
            )
        return await self.current(ctx, person, request_id)

    async def on_cancel(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        request_id = _text(data, "request_id")
        try:
            request = await self.clearance.cancel(request_id, person.email)
        except Refused as exc:
            return await self.outdated_or_refused(ctx, person, request_id, exc)
        return card_response(await self.card("request_submitted", request, person.email))

    async def on_done(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """I'm done: the access ends now; the card stays, Teams shows the outcome."""
        request = await self.clearance.revoke(_text(data, "request_id"), person.email)
        return message_response((await self.card("access_ended", request, person.email))["summary"])

    async def on_extend(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Extend: more time at once where the resource allows it, else a prefilled request."""
        request_id = _text(data, "request_id")
        try:
            request = await self.clearance.extend(request_id, person.email)
        except Refused as exc:
            if exc.code not in EXTEND_NEEDS_REQUEST:
                return self.refusal(exc)
        else:
            extended = await self.card("access_extended", request, person.email)
            return message_response(extended["summary"])
        request = await self.clearance.get(request_id)
        return await self._new_form(ctx, person, request.resource_id, extension_prefill(request))

    async def on_rerequest(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Request again: the form, for the same resource, as a new message (the notice stays)."""
        return await self._new_form(ctx, person, _text(data, "resource_id") or None, {})

    async def _new_form(
        self, ctx: TurnContext, person: Person, selected: str | None, prefill: dict[str, str]
    ) -> InvokeResponse:
        form = await self.form(person, selected, prefill)
        await ctx.send_activity(card_activity(form))
        return message_response(form["summary"])

    async def on_open_form(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        """Request access (home) and Next (a resource was chosen): the form, in place."""
        prefill = {
            k: _text(data, k) for k in ("justification", "ticket", "duration") if _text(data, k)
        }
        return card_response(await self.form(person, _text(data, "resource") or None, prefill))

    async def on_submit_request(
        self, ctx: TurnContext, person: Person, data: dict[str, Any]
    ) -> InvokeResponse:
        values = {k: _text(data, k) for k in ("resource", "duration", "justification", "ticket")}
        prefill = {k: values[k] for k in ("duration", "justification", "ticket")}
        if values["resource"] != _text(data, "form_resource"):
            # Another resource was chosen in the form: show what that one needs first.
            return card_response(await self.form(person, values["resource"] or None, prefill))
        # A double click or a redelivery of the same form with the same values submits once.
        key = self._submit_key(ctx, values)
        if not await self.chat_log.first_time(key, self.clearance.clock.now()):
            return await self._already_submitted(ctx, person, values["resource"], prefill)
        draft = RequestDraft(
            requester=person.email,
            resource_id=values["resource"],
            duration=values["duration"] or None,
            justification=values["justification"],
            ticket=values["ticket"] or None,
        )
        try:
            request = await self.clearance.submit(draft)
        except Refused as exc:
            await self.chat_log.release(key)  # nothing was made: the form may be sent again
            # Errors about anything the form has no input for are listed on top of it.
            errors = field_errors(exc, values)
            return card_response(
                await self.form(person, values["resource"], prefill, errors=errors)
            )
        await self._log_form(ctx, person, request)
        # The confirmation (with Cancel) arrives as its own message through the outbox,
        # as on Slack; the form answers with the confirmation's summary.
        return message_response(
            (await self.card("request_submitted", request, person.email))["summary"]
        )

    @staticmethod
    def _submit_key(ctx: TurnContext, values: dict[str, str]) -> str:
        activity = ctx.activity
        conversation = activity.conversation.id if activity.conversation else ""
        where = f"{conversation}:{activity.reply_to_id or ''}"
        digest = hashlib.sha256((where + json.dumps(values, sort_keys=True)).encode()).hexdigest()
        return f"teams:submit:{digest}"

    async def _log_form(self, ctx: TurnContext, person: Person, request: AccessRequest) -> None:
        """Remember which request a form message produced, for a repeated submission."""
        activity = ctx.activity
        if not activity.reply_to_id or activity.conversation is None:
            return
        sent = SentMessage(
            request.id,
            "teams",
            person.email,
            "request_form",
            None,
            activity.conversation.id,
            activity.reply_to_id,
        )
        await self.chat_log.add(sent, None, self.clearance.clock.now())

    async def _already_submitted(
        self, ctx: TurnContext, person: Person, resource: str, prefill: dict[str, str]
    ) -> InvokeResponse:
        """The answer to a repeated submission: what the first one made, or (while it is
        still being made) the form as it was sent."""
        sent = await self.clicked(ctx)
        if sent is not None and sent.template == "request_form":
            request = await self.clearance.get(sent.request_id)
            submitted = await self.card("request_submitted", request, person.email)
            return message_response(submitted["summary"])
        return card_response(await self.form(person, resource or None, prefill))


class TeamsSurface:
    """Serves ``POST /api/messages``: authenticates, then runs the activity through the bot."""

    def __init__(
        self,
        bot: TeamsBot,
        auth: BotFrameworkAuthentication,
        authenticated: bool,
        tenant_id: str | None = None,
    ) -> None:
        self.bot = bot
        self.auth = auth
        self.authenticated = authenticated
        self.tenant_id = tenant_id
        self.adapter = CloudAdapter(auth)

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp route for ``/api/messages`` (every activity Teams sends the bot)."""
        try:
            body = await request.json()
            activity = Activity().deserialize(body)
        except Exception:  # not JSON, or not an activity
            return web.Response(status=HTTPStatus.BAD_REQUEST)
        if not isinstance(body, dict) or not activity.type:
            return web.Response(status=HTTPStatus.BAD_REQUEST)
        header = request.headers.get("Authorization", "") if self.authenticated else ""
        try:
            auth = await self.auth.authenticate_request(activity, header)
        except Exception as exc:
            # Missing, malformed, expired, badly signed or someone else's token: every
            # failure of the check is a 401 and nothing runs (never a 500).
            log.info("Teams request refused: %s", type(exc).__name__)
            return web.Response(status=HTTPStatus.UNAUTHORIZED)
        if self.tenant_id and tenant_of(activity) != self.tenant_id:
            log.warning("Teams request from another tenant (%s) refused", tenant_of(activity))
            return web.Response(status=HTTPStatus.FORBIDDEN)
        invoke = await self.adapter.process_activity(auth, activity, self.bot.on_turn)
        if invoke is None:
            return web.Response(status=HTTPStatus.OK)
        # Models are serialized here, once; plain dicts (a text answer) go out as they are.
        payload = serializer_helper(invoke.body) if isinstance(invoke.body, Model) else invoke.body
        return web.json_response(payload, status=invoke.status or HTTPStatus.OK)
