"""Sends Teams-shaped activities to ``/api/messages``, as the Bot Framework channel would.

Activities follow what Teams sends: ``conversationUpdate`` / ``installationUpdate`` when
the bot is installed, ``message`` for chat text (with an ``<at>`` mention entity in
channels), and ``invoke`` ``adaptiveCard/action`` for ``Action.Execute`` (the inputs merged
into ``action.data``, ``replyToId`` naming the card's message). ``serviceUrl`` points at the
fake connector. With ``keys`` set, each request carries a token signed by that key.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.fakes.teams_connector import BOT_ID, TENANT, SigningKeys


@dataclass(frozen=True)
class TeamsUser:
    """A Teams account: its 29: id, its AAD object id, its name."""

    id: str
    aad: str | None
    name: str

    @property
    def chat(self) -> str:
        """The id of this user's 1:1 conversation with the bot."""
        return f"a:1{self.id}"


class TeamsDriver:
    """Plays the Bot Framework channel's side towards the bot's endpoint."""

    def __init__(self, endpoint: str, service_url: str, keys: SigningKeys | None = None) -> None:
        self.endpoint = endpoint
        self.service_url = service_url
        self.keys = keys
        self._ids = itertools.count(1)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TeamsDriver:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    def next_id(self) -> str:
        return f"f:{next(self._ids):08d}"

    # --- transport ----------------------------------------------------------------------

    async def post(
        self, activity: dict[str, Any], authorization: str | None = None
    ) -> tuple[int, Any]:
        """POST one activity; the answer's JSON body (or text, or None)."""
        assert self.session is not None
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        elif self.keys is not None:
            headers["Authorization"] = "Bearer " + self.keys.token(self.service_url)
        async with self.session.post(
            self.endpoint, data=json.dumps(activity), headers=headers
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return resp.status, text

    # --- activities ---------------------------------------------------------------------

    def _base(self, kind: str, user: TeamsUser, conversation: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": kind,
            "id": self.next_id(),
            "timestamp": "2026-03-02T09:00:00.000Z",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": user.id, "name": user.name, "aadObjectId": user.aad},
            "conversation": conversation,
            "recipient": {"id": BOT_ID, "name": "Clearance"},
            "channelData": {"tenant": {"id": TENANT}},
            "locale": "en-US",
        }

    def personal(self, user: TeamsUser) -> dict[str, Any]:
        return {"id": user.chat, "conversationType": "personal", "tenantId": TENANT}

    def install_activity(self, user: TeamsUser) -> dict[str, Any]:
        activity = self._base("conversationUpdate", user, self.personal(user))
        activity["membersAdded"] = [{"id": BOT_ID}]
        return activity

    async def install(self, user: TeamsUser) -> tuple[int, Any]:
        """The user adds the bot (personal scope): Teams tells the bot the chat exists."""
        return await self.post(self.install_activity(user))

    async def uninstall(self, user: TeamsUser) -> tuple[int, Any]:
        activity = self._base("installationUpdate", user, self.personal(user))
        activity["action"] = "remove"
        return await self.post(activity)

    async def add_to_team(self, user: TeamsUser, team: str) -> tuple[int, Any]:
        """The bot is added to a team (its General channel id is the team id)."""
        activity = self._base(
            "conversationUpdate",
            user,
            {"id": team, "conversationType": "channel", "isGroup": True, "tenantId": TENANT},
        )
        activity["membersAdded"] = [{"id": BOT_ID}]
        activity["channelData"].update(team={"id": team}, eventType="teamMemberAdded")
        return await self.post(activity)

    async def say(self, user: TeamsUser, text: str, **extra: Any) -> tuple[int, Any]:
        """A 1:1 message to the bot."""
        activity = self._base("message", user, self.personal(user))
        activity.update(text=text, textFormat="plain", **extra)
        return await self.post(activity)

    def mention_activity(self, user: TeamsUser, channel: str, text: str) -> dict[str, Any]:
        team = channel  # one team whose channels the tests use
        activity = self._base(
            "message",
            user,
            {
                "id": f"{channel};messageid={next(self._ids)}",
                "conversationType": "channel",
                "isGroup": True,
                "tenantId": TENANT,
            },
        )
        activity["text"] = f"<at>Clearance</at> {text}"
        activity["entities"] = [
            {
                "type": "mention",
                "mentioned": {"id": BOT_ID, "name": "Clearance"},
                "text": "<at>Clearance</at>",
            }
        ]
        activity["channelData"].update(
            channel={"id": channel}, team={"id": team}, teamsChannelId=channel
        )
        return activity

    async def mention(self, user: TeamsUser, channel: str, text: str) -> tuple[int, Any]:
        """``@Clearance <text>`` in a channel."""
        return await self.post(self.mention_activity(user, channel, text))

    def invoke_activity(
        self,
        user: TeamsUser,
        verb: str,
        data: dict[str, Any],
        conversation: str | None = None,
        reply_to: str | None = None,
        trigger: str = "manual",
    ) -> dict[str, Any]:
        activity = self._base(
            "invoke",
            user,
            {"id": conversation or user.chat, "conversationType": "personal", "tenantId": TENANT},
        )
        activity.update(
            name="adaptiveCard/action",
            value={
                "action": {"type": "Action.Execute", "id": verb, "verb": verb, "data": data},
                "trigger": trigger,
            },
        )
        if reply_to:
            activity["replyToId"] = reply_to
        return activity

    async def execute(
        self,
        user: TeamsUser,
        message: dict[str, Any],
        verb: str,
        inputs: dict[str, Any] | None = None,
        again: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """Press the ``Action.Execute`` with ``verb`` on a card the fake connector holds,
        with the card's input values (defaults, overridden by ``inputs``) merged into its
        data. ``again`` resends an earlier invoke unchanged (a platform retry)."""
        if again is not None:
            return await self.post(again)
        return await self.post(self.press(user, message, verb, inputs, where))

    def press(
        self,
        user: TeamsUser,
        message: dict[str, Any],
        verb: str,
        inputs: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The invoke activity pressing ``verb`` on ``message`` would send (the action whose
        data has ``where``'s values, when several have the verb)."""
        action = find_action(message["card"], verb, where)
        data = {**input_values(message["card"]), **(action.get("data") or {})}
        data.update(inputs or {})
        return self.invoke_activity(
            user, verb, data, conversation=message["conversation"], reply_to=message["id"]
        )

    async def refresh(self, user: TeamsUser, message: dict[str, Any]) -> tuple[int, Any]:
        """Teams asks for this user's own view of a card (its ``refresh`` action)."""
        refresh = message["card"]["refresh"]["action"]
        activity = self.invoke_activity(
            user,
            refresh["verb"],
            dict(refresh.get("data") or {}),
            conversation=message["conversation"],
            reply_to=message["id"],
            trigger="automatic",
        )
        return await self.post(activity)


# --- reading cards ----------------------------------------------------------------------


def actions(node: Any) -> list[dict[str, Any]]:
    """Every action of a card: its actions, ShowCard cards, ActionSets, refresh."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and node["type"].startswith("Action."):
            found.append(node)
        for key, value in node.items():
            if key != "refresh":
                found.extend(actions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(actions(item))
    return found


def find_action(
    card: dict[str, Any], verb: str, where: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``Action.Execute`` with ``verb`` on a card (nested in ShowCards and ActionSets),
    the first whose data holds ``where``'s values when given."""
    for action in actions(card):
        if action.get("type") != "Action.Execute" or action.get("verb") != verb:
            continue
        data = action.get("data") or {}
        if all(data.get(k) == v for k, v in (where or {}).items()):
            return action
    raise AssertionError(f"no Action.Execute {verb!r} in {json.dumps(card)[:600]}")


def has_action(card: dict[str, Any] | None, verb: str) -> bool:
    return card is not None and any(
        a.get("type") == "Action.Execute" and a.get("verb") == verb for a in actions(card)
    )


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every input element of a card's body, by id."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("type", "")).startswith("Input.") and node.get("id"):
                found[node["id"]] = node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card.get("body"))
    return found


def input_values(card: dict[str, Any]) -> dict[str, Any]:
    """The values a card's inputs hold before anyone types: what Teams would send."""
    return {key: node["value"] for key, node in inputs(card).items() if "value" in node}


def card_text(card: dict[str, Any] | None) -> str:
    """A card as sent (JSON, markdown escapes and all), for assertions about markup."""
    return json.dumps(card, ensure_ascii=False) if card is not None else ""


def shown(card: dict[str, Any] | None) -> str:
    """Roughly what a reader sees: the card's strings with markdown escapes removed."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            texts.append(re.sub(r"\\(.)", r"\1", node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return "\n".join(texts)
