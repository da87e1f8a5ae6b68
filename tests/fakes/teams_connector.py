"""A local HTTP server that speaks the Bot Connector REST API calls Clearance makes on Teams.

It keeps real state (a roster, conversations and the messages in them), checks the bot's
bearer token when one is set, and records every call, so tests can assert what the bot
sent. Activities the bot receives carry ``serviceUrl`` = ``.url``.

Also here: the credentials factory tests give the bot instead of Microsoft's login
service (a fixed token), and a thread-served OpenID metadata / JWKS endpoint with an RSA
key, so tests can sign Bot Framework tokens the bot's real validation accepts.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from aiohttp import web
from botframework.connector.auth import (
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
)
from cryptography.hazmat.primitives.asymmetric import rsa

BOT_TOKEN = "teams-bot-token"
TENANT = "tenant-0001"
APP_ID = "00000000-0000-0000-0000-00000000b07"
BOT_ID = f"28:{APP_ID}"
ISSUER = "https://api.botframework.com"


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class FakeConnector:
    """One fake Teams tenant behind the Bot Connector API."""

    token: str | None = None  # when set, every call must carry "Bearer <token>"
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)  # conversations that answer 403
    down: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    url: str = ""

    # --- tenant setup -------------------------------------------------------------------

    def add_member(self, user_id: str, aad_id: str | None, email: str, name: str) -> None:
        """Someone in the tenant's roster (what GET .../members/{id} answers)."""
        self.members[user_id] = {
            "id": user_id,
            "aadObjectId": aad_id,
            "email": email,
            "userPrincipalName": email,
            "name": name,
            "tenantId": TENANT,
            "userRole": "user",
        }

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{cid}/activities", self._send)
        app.router.add_post("/v3/conversations/{cid}/activities/{aid}", self._reply)
        app.router.add_put("/v3/conversations/{cid}/activities/{aid}", self._update)
        app.router.add_get("/v3/conversations/{cid}/members/{uid}", self._member)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- queries for tests --------------------------------------------------------------

    def messages_in(self, conversation_id: str) -> list[dict[str, Any]]:
        """Messages of a conversation (a channel's threads included), oldest first."""
        out = []
        for cid, messages in self.conversations.items():
            if cid == conversation_id or cid.split(";", 1)[0] == conversation_id:
                out.extend(messages)
        return sorted(out, key=lambda m: m["seq"])

    def called(self, method: str, fragment: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and fragment in c.path]

    # --- the API ------------------------------------------------------------------------

    def _refuse(self, request: web.Request) -> web.Response | None:
        if self.down:
            return web.Response(status=503, text="unavailable")
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        return None

    async def _record(self, request: web.Request) -> dict[str, Any] | None:
        body = await request.json() if request.can_read_body else None
        self.calls.append(Call(request.method, request.path, body))
        return body

    def _store(self, cid: str, activity: dict[str, Any], reply_to: str | None) -> dict[str, Any]:
        seq = next(self._ids)
        attachments = activity.get("attachments") or []
        message = {
            "id": f"1{seq:011d}",
            "seq": seq,
            "conversation": cid,
            "reply_to": reply_to,
            "summary": activity.get("summary"),
            "text": activity.get("text"),
            "card": attachments[0].get("content") if attachments else None,
            "content_type": attachments[0].get("contentType") if attachments else None,
            "updates": 0,
        }
        self.conversations.setdefault(cid, []).append(message)
        return message

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._record(request) or {}
        if (refused := self._refuse(request)) is not None:
            return refused
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        if body.get("isGroup") and channel:
            activity = body.get("activity") or {}
            thread = f"{channel};messageid={next(self._ids)}"
            message = self._store(thread, activity, None)
            return web.json_response({"id": thread, "activityId": message["id"]}, status=201)
        members = body.get("members") or []
        if len(members) != 1 or members[0].get("id") not in self.members:
            return web.json_response({"error": {"code": "BadArgument"}}, status=400)
        return web.json_response({"id": f"a:{members[0]['id']}"}, status=201)

    async def _send(self, request: web.Request) -> web.Response:
        body = await self._record(request) or {}
        if (refused := self._refuse(request)) is not None:
            return refused
        cid = request.match_info["cid"]
        if cid in self.blocked:  # the user removed or blocked the bot
            return web.json_response({"error": {"code": "BotNotInConversationRoster"}}, status=403)
        return web.json_response({"id": self._store(cid, body, None)["id"]}, status=201)

    async def _reply(self, request: web.Request) -> web.Response:
        body = await self._record(request) or {}
        if (refused := self._refuse(request)) is not None:
            return refused
        cid = request.match_info["cid"]
        message = self._store(cid, body, request.match_info["aid"])
        return web.json_response({"id": message["id"]}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._record(request) or {}
        if (refused := self._refuse(request)) is not None:
            return refused
        cid, aid = request.match_info["cid"], request.match_info["aid"]
        for message in self.conversations.get(cid, []):
            if message["id"] == aid:
                attachments = body.get("attachments") or []
                message["card"] = attachments[0].get("content") if attachments else None
                message["summary"] = body.get("summary")
                message["updates"] += 1
                return web.json_response({"id": aid})
        return web.json_response({"error": {"code": "ActivityNotFound"}}, status=404)

    async def _member(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (refused := self._refuse(request)) is not None:
            return refused
        member = self.members.get(request.match_info["uid"])
        if member is None:
            return web.json_response(
                {"error": {"code": "MemberNotFoundInConversation"}}, status=404
            )
        return web.json_response(member)


# --- outgoing credentials: a fixed token instead of Microsoft's login service ------------


class _FixedToken(MicrosoftAppCredentials):  # type: ignore[misc]
    def __init__(self, app_id: str, token: str) -> None:
        super().__init__(app_id, "unused")
        self._token = token

    def get_access_token(self, force_refresh: bool = False) -> str:
        return self._token


class FixedTokenCredentials(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """The bot's app credentials, handing out ``token`` for calls to the connector."""

    def __init__(self, app_id: str = APP_ID, token: str = BOT_TOKEN) -> None:
        self.app_id = app_id
        self.token = token

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self.app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> MicrosoftAppCredentials:
        return _FixedToken(app_id, self.token)


# --- incoming tokens: a signing key published like Bot Framework's ----------------------


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SigningKeys:
    """An RSA key whose public half is served as OpenID metadata + JWKS, in a thread.

    A thread because botbuilder fetches the metadata with blocking ``requests`` calls.
    """

    def __init__(self, kid: str = "test-key-1", endorsements: tuple[str, ...] = ("msteams",)):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.key.public_key().public_numbers()
        self.jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": kid,
                    "n": _b64(public.n),
                    "e": _b64(public.e),
                    "endorsements": list(endorsements),
                }
            ]
        }
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/openidconfiguration"):
                    body = {"issuer": ISSUER, "jwks_uri": f"{keys.base}/keys"}
                elif self.path.endswith("/keys"):
                    body = keys.jwks
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/v1/.well-known/openidconfiguration"

    def token(self, service_url: str, **overrides: Any) -> str:
        """A channel token for the bot; ``overrides`` change claims (None removes one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": APP_ID,
            "serviceurl": service_url,
            "nbf": now - 60,
            "exp": now + 3600,
        }
        key = overrides.pop("key", self.key)
        kid = overrides.pop("kid", self.kid)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
