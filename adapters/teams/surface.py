"""Teams ingress: ``POST /api/messages``. The route verifies the Bot Framework token; the
activity handler answers 1:1 messages, admin commands in channels and installs, and hands
card actions (``adapters.teams.card_actions``) their invokes.

The actor is always the verified sender of the activity, mapped to a directory person by
the middleware (``adapters.teams.middleware``), which also turns a refusal into Teams'
answer; handlers parse, make one use-case call and render.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import replace
from http import HTTPStatus

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext, serializer_helper
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes
from botframework.connector.auth import BotFrameworkAuthentication
from msrest.serialization import Model

from adapters.teams.activities import channel_of, conversation_of, is_personal, tenant_of
from adapters.teams.card_actions import CardActions
from adapters.teams.cards import Cards, Message
from adapters.teams.middleware import Senders, refused_response
from adapters.teams.payloads import Malformed, check
from bot.admin_commands import AdminCommands
from bot.chat_records import TeamsConversationStore
from bot.ingress import Ingress
from bot.notifier import Notifier
from bot.review_ingress import ReviewIngress
from bot.usecases import Clearance
from engine.chat_records import PERSONAL
from engine.directory import Person
from engine.refusals import Refusal, Refused
from message_templates import render_json

log = logging.getLogger(__name__)

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


class TeamsBot(TeamsActivityHandler):  # type: ignore[misc]  # botbuilder is untyped
    """The activity handler: 1:1 requests, admin commands in the admin channel, card actions
    and the conversations the bot may later write to."""

    def __init__(
        self,
        clearance: Clearance,
        notifier: Notifier,
        admin: AdminCommands,
        ingress: Ingress,
        conversations: TeamsConversationStore,
        reviews: ReviewIngress,
    ) -> None:
        self.clearance = clearance
        self.admin = admin
        self.ingress = ingress
        self.conversations = conversations
        self.senders = Senders(clearance)
        self.cards = Cards(clearance, notifier, reviews)
        self.card_actions = CardActions(clearance, ingress, self.cards, self.senders, reviews)

    # --- messages -----------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        if is_personal(turn_context.activity):
            await self.on_personal_message(turn_context)
        else:
            await self.on_channel_message(turn_context)

    async def on_personal_message(self, ctx: TurnContext) -> None:
        """A request, status or help in the 1:1 chat: answered with a card."""
        await self.remember(ctx)
        await self.senders.message(ctx, functools.partial(self.personal_reply, ctx))

    async def personal_reply(self, ctx: TurnContext, person: Person) -> Message:
        command, resource = parse_personal(ctx.activity.text or "")
        if command == "request":
            return await self.cards.form(person, resource, {})
        # status, help and anything else: what Clearance can do for this person
        return await self.cards.home(person)

    async def on_channel_message(self, ctx: TurnContext) -> None:
        """Admin commands: the bot was mentioned in a channel or group chat."""
        activity = ctx.activity
        # A redelivered message is acted on once, on any replica.
        if not await self.ingress.first_time(f"teams:{activity.id}"):
            return
        # A malformed mention entity is skipped: the command parser strips <at> tags too.
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            TurnContext.remove_recipient_mention(activity)
        await self.remember(ctx)  # the admin feed can be posted to this team from now on
        await self.senders.message(ctx, functools.partial(self.admin_reply, ctx))

    async def admin_reply(self, ctx: TurnContext, person: Person) -> Message:
        activity = ctx.activity
        admin_channel = self.clearance.policy.admins.teams_channel
        in_admin_channel = bool(admin_channel) and channel_of(activity) == admin_channel
        reply = await self.admin.run(person.email, in_admin_channel, activity.text or "")
        return render_json("teams", "admin_reply", reply.data())

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
        if conversation.kind == PERSONAL:
            known = await self.conversations.get(conversation.conversation_id)
            if known is not None and known.email and known.service_url == conversation.service_url:
                return
            conversation = replace(conversation, email=await self.senders.roster_email(ctx))
        await self.conversations.save(conversation, self.clearance.clock.now())

    # --- card actions (Action.Execute) ---------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name != "adaptiveCard/action":
            response: InvokeResponse = await super().on_invoke_activity(turn_context)
            return response
        return await self.card_actions.run(turn_context)


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
        self.adapter.on_turn_error = self.turn_failed

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp route for ``/api/messages`` (every activity Teams sends the bot)."""
        try:
            body = await request.json()
            # The shape first: botbuilder reads ids and the serviceUrl without asking.
            check(body)
            activity = Activity().deserialize(body)
        except Malformed as exc:
            log.info("Teams request refused (400): %s", exc)
            return web.Response(status=HTTPStatus.BAD_REQUEST)
        except Exception:  # not JSON (nor UTF-8), or msrest could not read a field
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

    async def turn_failed(self, ctx: TurnContext, error: Exception) -> None:
        """A turn that raised (a reply that could not be sent, a database that failed): one
        line in the log, the traceback only at DEBUG, and an answer all the same. A 5xx
        would make the channel deliver the activity again and repeat what did happen; a
        button press gets told to try again, as that answer is the HTTP response."""
        activity = ctx.activity
        what = (str(error).splitlines() or [""])[0][:200]
        log.warning(
            "Teams turn failed (%s %s): %s: %s",
            activity.type,
            activity.name or activity.id or "",
            type(error).__name__,
            what,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        if activity.type == ActivityTypes.invoke:
            answer = refused_response(Refused(Refusal("try_again")))
            await ctx.send_activity(Activity(type=ActivityTypes.invoke_response, value=answer))
