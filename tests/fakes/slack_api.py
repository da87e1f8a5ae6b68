"""A local HTTP server that speaks the Slack Web API methods Clearance calls.

It keeps real state (users, DM channels, messages, views, user groups), checks the bot
token and the arguments Slack requires, enforces single-use trigger ids, and records
every call so tests can assert what the bot did. Point ``SLACK_API_URL`` at ``.api_url``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

TOKEN = "xoxb-test-token"


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class FakeSlack:
    """State of one fake workspace and its Web API."""

    token: str = TOKEN
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # method -> Slack error to answer
    used_triggers: set[str] = field(default_factory=set)
    view_by_trigger: dict[str, str] = field(default_factory=dict)
    bot_user_id: str = "UBOT"
    down: bool = False  # answer 503 to everything, as during a Slack outage
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    url: str = ""

    # --- workspace setup ----------------------------------------------------------------

    def add_user(self, user_id: str, email: str, name: str | None = None) -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": name or email.split("@")[0],
            "profile": {"email": email, "real_name": name or email},
            "deleted": False,
        }

    def add_usergroup(self, group_id: str, members: list[str] | None = None) -> None:
        self.usergroups[group_id] = {"users": list(members or []), "enabled": True}

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response_url)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.url}/response/{key}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- queries for tests --------------------------------------------------------------

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        return [
            m
            for (ch, _), m in sorted(self.messages.items(), key=lambda kv: float(kv[0][1]))
            if ch == channel
        ]

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        return self.messages_in(self.dm_channel(user_id))

    # --- the API ------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append({"key": request.match_info["key"], **(await request.json())})
        return web.json_response({"ok": True})

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.down:
            return web.Response(status=503, text="upstream unavailable")
        args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        body = await request.read()
        if body:
            if request.content_type == "application/json":
                args.update(json.loads(body))
            else:
                args.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
        for key in ("blocks", "view"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        self.calls.append(Call(method, args))
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.token}" and args.get("token") != self.token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method in self.fail:
            return web.json_response({"ok": False, "error": self.fail[method]})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            result = handler(args)
        except KeyError as exc:
            return web.json_response({"ok": False, "error": f"missing_argument:{exc.args[0]}"})
        if "error" in result:
            return web.json_response({"ok": False, **result})
        return web.json_response({"ok": True, **result})

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def m_auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "user_id": self.bot_user_id,
            "bot_id": "B0BOT",
            "team_id": "T0TEAM",
            "team": "Test",
            "url": "https://test.slack.com/",
        }

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args["user"])
        return {"user": user} if user else {"error": "user_not_found"}

    def m_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        for user in self.users.values():
            if user["profile"]["email"].lower() == str(args["email"]).lower():
                return {"user": user}
        return {"error": "users_not_found"}

    def m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args["users"]).split(",")
        if len(users) != 1 or users[0] not in self.users:
            return {"error": "user_not_found"}
        return {"channel": {"id": self.dm_channel(users[0])}}

    def _check_message(self, args: dict[str, Any]) -> dict[str, Any] | None:
        blocks = args.get("blocks")
        if not args.get("text") and not blocks:
            return {"error": "no_text"}
        if blocks is not None and len(blocks) > 50:
            return {"error": "invalid_blocks"}
        return None

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        if (problem := self._check_message(args)) is not None:
            return problem
        ts = self._next_ts()
        self.messages[(channel, ts)] = {
            "channel": channel,
            "ts": ts,
            "text": args.get("text"),
            "blocks": args.get("blocks") or [],
            "thread_ts": args.get("thread_ts"),
            "updates": 0,
        }
        return {"channel": channel, "ts": ts, "message": {"ts": ts}}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args["channel"]), str(args["ts"]))
        if key not in self.messages:
            return {"error": "message_not_found"}
        if (problem := self._check_message(args)) is not None:
            return problem
        message = self.messages[key]
        message.update(text=args.get("text"), blocks=args.get("blocks") or [])
        message["updates"] += 1
        return {"channel": key[0], "ts": key[1]}

    def _use_trigger(self, args: dict[str, Any]) -> dict[str, Any] | None:
        trigger = str(args["trigger_id"])
        if trigger in self.used_triggers:
            return {"error": "expired_trigger_id"}
        self.used_triggers.add(trigger)
        return None

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if (problem := self._use_trigger(args)) is not None:
            return problem
        view_id = f"V{next(self._ts):06d}"
        view = {**args["view"], "id": view_id, "hash": f"h{view_id}"}
        self.views[view_id] = view
        self.view_by_trigger[str(args["trigger_id"])] = view_id
        return {"view": view}

    def m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = str(args["view_id"])
        if view_id not in self.views:
            return {"error": "not_found"}
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            return {"error": "hash_conflict"}
        view = {**args["view"], "id": view_id, "hash": f"h{view_id}-{next(self._ts)}"}
        self.views[view_id] = view
        return {"view": view}

    def m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args["user_id"])
        if user not in self.users:
            return {"error": "user_not_found"}
        self.home[user] = args["view"]
        return {"view": args["view"]}

    def _group(self, args: dict[str, Any]) -> dict[str, Any] | None:
        return self.usergroups.get(str(args["usergroup"]))

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._group(args)
        if group is None:
            return {"error": "no_such_subteam"}
        return {"users": list(group["users"]) if group["enabled"] else []}

    def m_usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._group(args)
        if group is None:
            return {"error": "no_such_subteam"}
        users = [u for u in str(args["users"]).split(",") if u]
        if not users:
            return {"error": "no_users_provided"}
        if any(u not in self.users for u in users):
            return {"error": "invalid_users"}
        group["users"] = users
        group["enabled"] = True
        return {"usergroup": {"id": args["usergroup"], "users": users}}

    def m_usergroups_disable(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._group(args)
        if group is None:
            return {"error": "no_such_subteam"}
        group["enabled"] = False
        group["users"] = []
        return {"usergroup": {"id": args["usergroup"]}}

    def m_usergroups_enable(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._group(args)
        if group is None:
            return {"error": "no_such_subteam"}
        group["enabled"] = True
        return {"usergroup": {"id": args["usergroup"]}}
