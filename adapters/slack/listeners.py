"""Slack listener middleware: every listener is handed the verified person, and a refusal
becomes Slack's answer for that kind of payload, so listeners only parse, call and render.

bolt has checked the signature. The actor is the payload's verified user id mapped to a
directory person, never a value carried in a button. When to ack differs by kind, because
Slack waits at most 3 s and some answers travel in the ack itself:

- an action is acked at once; a refusal is told to the clicker alone and the card stays;
- a command is acked once the person is known; a refusal before that is the ack's answer;
- a view submission is acked after its use case; a refusal is shown under the inputs;
- an event needs no ack; its listener says how a refusal is shown (home tab, thread).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.kwargs_injection.async_args import AsyncArgs

from bot.usecases import Clearance
from engine.directory import Person
from engine.refusals import Refused
from message_templates import refusal_text, render_json

log = logging.getLogger(__name__)


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
        if respond is None:  # a payload without a response_url: nowhere to say it
            log.info("Slack refusal with nowhere to show it: %s", text)
            return
        await respond(replace_original=False, response_type="ephemeral", **error_message(text))


PersonHandler = Callable[[Person, Turn], Awaitable[None]]
TurnHandler = Callable[[Turn], Awaitable[None]]
ShowRefusal = Callable[[Turn, Refused], Awaitable[None]]
ViewErrors = Callable[[Refused, dict[str, Any]], dict[str, str]]
Guard = Callable[[Turn], Awaitable[bool]]
BoltListener = Callable[[AsyncArgs], Awaitable[None]]
# What bolt matches an action by: its action id, or its block and action ids.
ActionMatch = str | re.Pattern[str] | dict[str, str | re.Pattern[str]]


async def _tell_refusal(turn: Turn, exc: Refused) -> None:
    await turn.tell(refusal_text(exc))


class Listeners:
    """Registers listeners on the bolt app through the middleware and counts their work,
    which goes on after the ack, so that shutdown can wait for it."""

    def __init__(self, app: AsyncApp, clearance: Clearance) -> None:
        self.app = app
        self.clearance = clearance
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def person(self, user_id: str) -> Person:
        """The directory person behind a verified Slack user: by Slack id, else by the
        email of their Slack profile."""

        async def email() -> str | None:
            info = await self.app.client.users_info(user=user_id)
            profile = (info.get("user") or {}).get("profile") or {}
            value = profile.get("email")
            return str(value) if value else None

        return await self.clearance.person_for_chat("slack", user_id, email)

    async def idle(self, limit: float = 10.0) -> None:
        """Wait until no listener is still working (graceful shutdown; tests)."""
        await asyncio.sleep(0)
        await asyncio.wait_for(self._idle.wait(), limit)

    # --- one registration per kind of payload ---------------------------------------------

    def action(self, constraints: ActionMatch, handler: PersonHandler) -> None:
        async def run(turn: Turn) -> None:
            await turn.ack()
            await handler(await self.person(turn.user_id), turn)

        self.app.action(constraints)(self._listener(run, _tell_refusal))

    def action_for_anyone(self, constraints: ActionMatch, handler: TurnHandler) -> None:
        """An action whose listener needs no person (it only shows; the use case it leads
        to checks who acts)."""

        async def run(turn: Turn) -> None:
            await turn.ack()
            await handler(turn)

        self.app.action(constraints)(self._listener(run, _tell_refusal))

    def command(self, name: str, handler: PersonHandler) -> None:
        async def run(turn: Turn) -> None:
            person = await self.person(turn.user_id)
            await turn.ack()
            await handler(person, turn)

        self.app.command(name)(self._listener(run, _tell_refusal))

    def view(self, callback_id: str, handler: PersonHandler, errors: ViewErrors) -> None:
        """A modal's submission; ``errors`` places a refusal under the modal's inputs."""

        async def run(turn: Turn) -> None:
            await handler(await self.person(turn.user_id), turn)
            await turn.ack()  # closes the modal; what follows arrives through the outbox

        async def refused(turn: Turn, exc: Refused) -> None:
            await turn.ack(response_action="errors", errors=errors(exc, turn.view))

        self.app.view(callback_id)(self._listener(run, refused))

    def event(
        self, name: str, handler: PersonHandler, refused: ShowRefusal, when: Guard | None = None
    ) -> None:
        """An event; ``when`` drops one before anyone is looked up (another tab, a retry)."""

        async def run(turn: Turn) -> None:
            if when is not None and not await when(turn):
                return
            await handler(await self.person(turn.user_id), turn)

        self.app.event(name)(self._listener(run, refused))

    def _listener(self, run: TurnHandler, refused: ShowRefusal) -> BoltListener:
        # bolt passes what a listener's parameter names ask for; ``args`` is all of it.
        async def listener(args: AsyncArgs) -> None:
            self._inflight += 1
            self._idle.clear()
            turn = Turn(args)
            try:
                await run(turn)
            except Refused as exc:  # unknown person, or the use case said no: say why
                await refused(turn, exc)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()

        return listener
