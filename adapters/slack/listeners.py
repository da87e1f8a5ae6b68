"""Slack listener middleware: every listener is handed the verified person, and a refusal
becomes Slack's answer for that kind of payload, so listeners only parse, call and render.

Before bolt sees a delivery, ``admit`` checks its signature, parses it and checks its
shape (``adapters.slack.payloads``), and that a listener here takes it: junk is refused
with a 4xx before anything is looked up. The actor is the payload's verified user id
mapped to a directory person, never a value carried in a button. Typed text that cannot
be stored is refused before that. When to ack differs by kind, because Slack waits at
most 3 s and some answers travel in the ack itself:

- an action is acked at once; a refusal is told to the clicker alone and the card stays;
- a command is acked once the person is known; a refusal before that is the ack's answer;
- a view submission is acked after its use case; a refusal is shown under the inputs;
- an event needs no ack; its listener says how a refusal is shown (home tab, thread).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.kwargs_injection.async_args import AsyncArgs
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from adapters.slack import payloads
from adapters.slack.payloads import Delivery, Rejected
from bot.usecases import Clearance
from engine.directory import Person
from engine.refusals import Refusal, Refused
from engine.text import unstorable_refusals
from message_templates import refusal_text, render_json

log = logging.getLogger(__name__)

# users.info's answers for an id it has no person for: an unknown person, not an outage.
_NO_SUCH_USER = frozenset({"user_not_found", "users_not_found", "account_inactive"})


def error_message(text: str) -> dict[str, Any]:
    """Slack's error message (text and blocks) carrying the text of a refusal."""
    return render_json("slack", "error", {"message": text})


class Turn:
    """One delivery from Slack as a listener sees it: the payload and how to answer."""

    def __init__(self, args: AsyncArgs) -> None:
        self.args = args
        self.body: dict[str, Any] = args.body
        self.acked = False

    async def ack(self, **response: Any) -> None:
        self.acked = True
        await self.args.ack(**response)

    @property
    def user_id(self) -> str:
        """The verified Slack user who sent this (command, action, view or event)."""
        if "user_id" in self.body:  # slash commands
            return str(self.body["user_id"])
        user = self.body.get("user")
        if isinstance(user, dict):  # actions and view submissions
            return str(user.get("id", ""))
        return str(self.event.get("user", ""))

    @property
    def trigger_id(self) -> str:
        """What opening a modal needs (valid for 3 s after the click or command)."""
        return str(self.body.get("trigger_id", ""))

    @property
    def value(self) -> str:
        """The clicked button's value: a request id, a stage token or a resource id."""
        return str((self.args.action or {}).get("value") or "")

    @property
    def view(self) -> dict[str, Any]:
        """The submitted view, or the modal an action was clicked in."""
        return self.args.view or self.body.get("view") or {}

    @property
    def command(self) -> dict[str, Any]:
        return self.args.command or {}

    @property
    def event(self) -> dict[str, Any]:
        return self.args.event or self.body.get("event") or {}

    async def tell(self, text: str) -> None:
        """Tell only this user: the command's answer while it is not acked, else an
        ephemeral reply (a clicked card stays as it is)."""
        if not self.acked:
            await self.ack(**error_message(text))
            return
        respond = self.args.respond
        # bolt hands out a respond that raises when the payload had no response_url (a
        # click inside a modal, a crafted payload): there is nowhere to say it then.
        if respond is None or not self.args.context.response_url:
            log.info("Slack refusal with nowhere to show it: %s", text)
            return
        await respond(replace_original=False, response_type="ephemeral", **error_message(text))


PersonHandler = Callable[[Person, Turn], Awaitable[None]]
TurnHandler = Callable[[Turn], Awaitable[None]]
ShowRefusal = Callable[[Turn, Refused], Awaitable[None]]
ViewErrors = Callable[[Refused, dict[str, Any]], dict[str, str]]
Guard = Callable[[Turn], Awaitable[bool]]
BoltListener = Callable[[AsyncArgs], Awaitable[None]]
# What bolt matches an action by: its action id, or its block and action ids (plain ids
# only, so that the shape check knows which actions a listener takes).
ActionMatch = str | dict[str, str]
BoltActionMatch = str | dict[str, str | re.Pattern[str]]
# Deliveries bolt answers by itself (its URL check when the app is set up, Slack's SSL check).
_ANSWERED_BY_BOLT = frozenset({"url_verification", "ssl_check"})


@dataclass(frozen=True)
class _Route:
    """What one registered listener takes: the shape check refuses what none takes."""

    kind: str
    name: str
    block_id: str | None = None
    in_view: bool = False  # the listener reads the modal its action was clicked in

    def takes(self, delivery: Delivery) -> bool:
        return (
            delivery.kind == self.kind
            and delivery.name == self.name
            and self.block_id in (None, delivery.block_id)
            and (delivery.in_view or not self.in_view)
        )


async def _tell_refusal(turn: Turn, exc: Refused) -> None:
    await turn.tell(refusal_text(exc))


class Listeners:
    """Registers listeners on the bolt app through the middleware and counts their work,
    which goes on after the ack, so that shutdown can wait for it."""

    def __init__(self, app: AsyncApp, clearance: Clearance, signing_secret: str | None) -> None:
        self.app = app
        self.clearance = clearance
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._routes: list[_Route] = []
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def person(self, user_id: str) -> Person:
        """The directory person behind a verified Slack user: by Slack id, else by the
        email of their Slack profile."""

        async def email() -> str | None:
            try:
                info = await self.app.client.users_info(user=user_id)
            except SlackApiError as exc:
                if exc.response.get("error") in _NO_SUCH_USER:
                    return None  # so: not someone Clearance knows, said politely
                raise
            profile = (info.get("user") or {}).get("profile") or {}
            value = profile.get("email")
            return str(value) if value else None

        return await self.clearance.person_for_chat("slack", user_id, email)

    async def idle(self, limit: float = 10.0) -> None:
        """Wait until no listener is still working (graceful shutdown; tests)."""
        await asyncio.sleep(0)
        await asyncio.wait_for(self._idle.wait(), limit)

    def admit(self, raw: bytes, headers: Mapping[str, str], query: str) -> AsyncBoltRequest:
        """The bolt request for a delivery over HTTP, once it is known to be signed (else
        Rejected 401), well-formed (400) and for a listener here (404)."""
        if self._verifier is None or not payloads.verified(self._verifier, raw, headers):
            raise Rejected(401, "not signed with the signing secret")
        delivery = payloads.read(raw, headers.get("Content-Type", ""))
        if delivery.kind not in _ANSWERED_BY_BOLT and not any(
            route.takes(delivery) for route in self._routes
        ):
            raise Rejected(404, f"no listener for {delivery.kind} {delivery.name[:80]!r}")
        try:
            # bolt takes a parsed body only as in Socket Mode, where it does not check the
            # signature again: the check above is the same (secret, window, verifier), and
            # bolt's own parser would read a command whose text says "payload" as empty.
            return AsyncBoltRequest(
                body=delivery.body,
                query=query,
                headers=dict(headers),
                mode="socket_mode",
            )
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # bolt reads ids (team, enterprise, channel, authorizations) out of where Slack
            # puts them; one of another type there makes that raise.
            raise Rejected(400, f"bolt could not read its ids: {type(exc).__name__}") from None

    # --- one registration per kind of payload ---------------------------------------------

    def action(
        self, constraints: ActionMatch, handler: PersonHandler, in_view: bool = False
    ) -> None:
        """A click; ``in_view``: the listener reads the modal it was clicked in, so a
        click from anywhere else is malformed."""

        async def run(turn: Turn) -> None:
            await turn.ack()
            await handler(await self.person(turn.user_id), turn)

        self.app.action(self._route_action(constraints, in_view))(
            self._listener(run, _tell_refusal)
        )

    def action_for_anyone(self, constraints: ActionMatch, handler: TurnHandler) -> None:
        """An action whose listener needs no person (it only shows; the use case it leads
        to checks who acts)."""

        async def run(turn: Turn) -> None:
            await turn.ack()
            await handler(turn)

        self.app.action(self._route_action(constraints, in_view=False))(
            self._listener(run, _tell_refusal)
        )

    def _route_action(self, constraints: ActionMatch, in_view: bool) -> BoltActionMatch:
        """Note what the action listener takes; what bolt matches it by."""
        if isinstance(constraints, str):
            self._routes.append(_Route("action", constraints, in_view=in_view))
            return constraints
        route = _Route("action", constraints["action_id"], constraints.get("block_id"), in_view)
        self._routes.append(route)
        return dict[str, str | re.Pattern[str]](constraints)

    def command(self, name: str, handler: PersonHandler) -> None:
        async def run(turn: Turn) -> None:
            person = await self.person(turn.user_id)
            await turn.ack()
            await handler(person, turn)

        self._routes.append(_Route("command", name))
        self.app.command(name)(self._listener(run, _tell_refusal))

    def view(self, callback_id: str, handler: PersonHandler, errors: ViewErrors) -> None:
        """A modal's submission; ``errors`` places a refusal under the modal's inputs."""

        async def run(turn: Turn) -> None:
            await handler(await self.person(turn.user_id), turn)
            await turn.ack()  # closes the modal; what follows arrives through the outbox

        async def refused(turn: Turn, exc: Refused) -> None:
            await turn.ack(response_action="errors", errors=errors(exc, turn.view))

        self._routes.append(_Route("view", callback_id))
        self.app.view(callback_id)(self._listener(run, refused))

    def event(
        self, name: str, handler: PersonHandler, refused: ShowRefusal, when: Guard | None = None
    ) -> None:
        """An event; ``when`` drops one before anyone is looked up (another tab, a retry)."""

        async def run(turn: Turn) -> None:
            turn.acked = True  # bolt acked the event before its listener ran
            if when is not None and not await when(turn):
                return
            await handler(await self.person(turn.user_id), turn)

        self._routes.append(_Route("event", name))
        self.app.event(name)(self._listener(run, refused))

    def _listener(self, run: TurnHandler, refused: ShowRefusal) -> BoltListener:
        # bolt passes what a listener's parameter names ask for; ``args`` is all of it.
        async def listener(args: AsyncArgs) -> None:
            self._inflight += 1
            self._idle.clear()
            turn = Turn(args)
            try:
                try:
                    # Text that could not be stored would fail half-way through the action
                    # (its row or its audit event): refused before anyone is looked up.
                    if unstorable := unstorable_refusals(payloads.typed_text(turn.body)):
                        raise Refused(*unstorable)
                    await run(turn)
                except Refused as exc:  # unknown person, or the use case said no: say why
                    await refused(turn, exc)  # which may be a Slack API call of its own
            except SlackApiError as exc:
                # Slack said no to a call (an expired trigger, a rate limit, an outage): a
                # fact about Slack, one line; the person still waiting hears to try again.
                where = str(getattr(exc.response, "api_url", "")).rsplit("/", 1)[-1]
                log.warning("Slack API call %s failed: %s", where, exc.response.get("error"))
                if not turn.acked:
                    await refused(turn, Refused(Refusal("try_again")))
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()

        return listener
