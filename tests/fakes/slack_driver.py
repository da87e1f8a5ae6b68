"""Sends Slack-shaped, correctly signed requests to ``/slack/events``, as Slack would.

Bodies follow Slack's real payloads: slash commands are form-encoded, interactivity is a
form field ``payload`` holding JSON, events are JSON. Signatures use v0 HMAC-SHA256 over
``v0:{timestamp}:{body}`` with the signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

SIGNING_SECRET = "test-signing-secret"


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackDriver:
    """Plays Slack's side towards the bot's HTTP endpoint."""

    def __init__(self, events_url: str, response_base: str, secret: str = SIGNING_SECRET) -> None:
        self.events_url = events_url
        self.response_base = response_base.rstrip("/")
        self.secret = secret
        self._ids = itertools.count(1)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SlackDriver:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    def trigger(self) -> str:
        return f"trigger-{next(self._ids)}"

    async def post(
        self,
        body: str,
        content_type: str,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        assert self.session is not None
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature(secret or self.secret, ts, body),
            **(headers or {}),
        }
        async with self.session.post(self.events_url, data=body.encode(), headers=sent) as resp:
            return resp.status, await resp.text()

    async def command(
        self, user_id: str, text: str = "", trigger_id: str | None = None, **kw: Any
    ) -> tuple[int, str]:
        body = urlencode(
            {
                "token": "legacy",
                "team_id": "T0TEAM",
                "team_domain": "test",
                "channel_id": "C0GENERAL",
                "channel_name": "general",
                "user_id": user_id,
                "user_name": user_id.lower(),
                "command": "/request-access",
                "text": text,
                "api_app_id": "A0APP",
                "response_url": f"{self.response_base}/cmd-{next(self._ids)}",
                "trigger_id": trigger_id or self.trigger(),
            }
        )
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def interactive(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    def _base(self, kind: str, user_id: str) -> dict[str, Any]:
        return {
            "type": kind,
            "user": {"id": user_id, "username": user_id.lower(), "team_id": "T0TEAM"},
            "api_app_id": "A0APP",
            "token": "legacy",
            "team": {"id": "T0TEAM", "domain": "test"},
            "trigger_id": self.trigger(),
        }

    async def click(
        self,
        user_id: str,
        message: dict[str, Any],
        action_id: str,
        block_id: str | None = None,
        **kw: Any,
    ) -> tuple[int, str]:
        """Click the button ``action_id`` (in block ``block_id``, when several blocks have
        one) on a message the fake Slack holds."""
        button = find_action(message["blocks"], action_id, block_id)
        payload = {
            **self._base("block_actions", user_id),
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": message["channel"],
                "is_ephemeral": False,
            },
            "channel": {"id": message["channel"], "name": "directmessage"},
            "message": {"ts": message["ts"], "blocks": message["blocks"], "text": message["text"]},
            "response_url": f"{self.response_base}/act-{next(self._ids)}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": button.get("block_id", "b"),
                    "value": button.get("value", ""),
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self.interactive(payload, **kw)

    async def click_value(
        self, user_id: str, action_id: str, value: str, channel: str = "D0X", **kw: Any
    ) -> tuple[int, str]:
        """Click a button with a crafted value (a forged or stale button)."""
        payload = {
            **self._base("block_actions", user_id),
            "container": {"type": "message", "message_ts": "1.0", "channel_id": channel},
            "channel": {"id": channel, "name": "directmessage"},
            "response_url": f"{self.response_base}/act-{next(self._ids)}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self.interactive(payload, **kw)

    async def choose(
        self, user_id: str, view: dict[str, Any], block_id: str, value: str
    ) -> tuple[int, str]:
        """Pick an option in a select that dispatches its action (inside a modal)."""
        payload = {
            **self._base("block_actions", user_id),
            "container": {"type": "view", "view_id": view["id"]},
            "view": {
                **view,
                "state": {
                    "values": {
                        block_id: {
                            "value": {"type": "static_select", "selected_option": {"value": value}}
                        }
                    }
                },
            },
            "actions": [
                {
                    "type": "static_select",
                    "action_id": "value",
                    "block_id": block_id,
                    "selected_option": {"value": value},
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self.interactive(payload)

    async def check(
        self, user_id: str, view: dict[str, Any], block_id: str, ticked: bool = True
    ) -> tuple[int, str]:
        """Tick (or untick) the one checkbox of a block that dispatches its action. The
        view's state holds every input as shown (Slack sends them all), with this change."""
        element = view_block(view, block_id)["element"]
        selected = element["options"][:1] if ticked else []
        state = {
            **shown_state(view),
            block_id: {"value": {"type": "checkboxes", "selected_options": selected}},
        }
        payload = {
            **self._base("block_actions", user_id),
            "container": {"type": "view", "view_id": view["id"]},
            "view": {**view, "state": {"values": state}},
            "actions": [
                {
                    "type": "checkboxes",
                    "action_id": "value",
                    "block_id": block_id,
                    "selected_options": selected,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self.interactive(payload)

    async def submit(
        self,
        user_id: str,
        view: dict[str, Any],
        values: dict[str, str],
        forged: dict[str, dict[str, Any]] | None = None,
        **kw: Any,
    ) -> tuple[int, str]:
        """Submit a modal with ``values`` by block id (selects, text inputs and checkboxes:
        "true" ticks a checkbox's first option). ``forged`` adds state entries for inputs
        the modal does not have, as a crafted payload would."""
        return await self.interactive(self.submission(user_id, view, values, forged), **kw)

    def submission(
        self,
        user_id: str,
        view: dict[str, Any],
        values: dict[str, str],
        forged: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The view_submission payload ``submit`` sends."""
        state: dict[str, Any] = {}
        for block in view.get("blocks", []):
            block_id = block.get("block_id")
            if block_id not in values:
                continue
            element = block.get("element", {})
            if element.get("type") in ("static_select", "external_select"):
                entry = {"type": element["type"], "selected_option": {"value": values[block_id]}}
            elif element.get("type") == "checkboxes":
                ticked = element["options"][:1] if values[block_id] == "true" else []
                entry = {"type": "checkboxes", "selected_options": ticked}
            else:
                entry = {"type": "plain_text_input", "value": values[block_id]}
            state[block_id] = {"value": entry}
        state.update({block_id: {"value": entry} for block_id, entry in (forged or {}).items()})
        return {
            **self._base("view_submission", user_id),
            "view": {**view, "state": {"values": state}},
            "response_urls": [],
        }

    async def event(
        self, event: dict[str, Any], event_id: str | None = None, **kw: Any
    ) -> tuple[int, str]:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": "T0TEAM",
                "api_app_id": "A0APP",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{next(self._ids):08d}",
                "event_time": int(time.time()),
            }
        )
        return await self.post(body, "application/json", **kw)

    async def mention(self, user_id: str, channel: str, text: str, **kw: Any) -> tuple[int, str]:
        ts = f"{time.time():.6f}"
        return await self.event(
            {
                "type": "app_mention",
                "user": user_id,
                "text": f"<@UBOT> {text}",
                "ts": ts,
                "channel": channel,
                "event_ts": ts,
            },
            **kw,
        )


def shown_state(view: dict[str, Any]) -> dict[str, Any]:
    """The state values of a view's inputs as it was opened: their initial values."""
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") != "input" or "action_id" not in element:
            continue
        entry: dict[str, Any] = {"type": element["type"]}
        if "initial_option" in element:
            entry["selected_option"] = element["initial_option"]
        elif element["type"] == "checkboxes":
            entry["selected_options"] = element.get("initial_options", [])
        elif "initial_value" in element:
            entry["value"] = element["initial_value"]
        state[block["block_id"]] = {element["action_id"]: entry}
    return state


def view_block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    """The block of a view with ``block_id``."""
    for block in view.get("blocks", []):
        if block.get("block_id") == block_id:
            return dict(block)
    raise AssertionError(f"no block {block_id!r} in {json.dumps(view)[:500]}")


def find_action(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None = None
) -> dict[str, Any]:
    """The interactive element with ``action_id`` in Block Kit blocks (with its block_id),
    in the block ``block_id`` when one is named."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        for element in block.get("elements", []) + (
            [block["accessory"]] if "accessory" in block else []
        ):
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return {**element, "block_id": block.get("block_id", "")}
    raise AssertionError(f"no element with action_id {action_id!r} in {json.dumps(blocks)[:500]}")


def has_action(blocks: list[dict[str, Any]], action_id: str) -> bool:
    try:
        find_action(blocks, action_id)
    except AssertionError:
        return False
    return True
