"""The /api/v1 routes: verify the caller, check the shape, one use-case call, answer JSON.

Refusals are problem documents (``adapters.api.problems``); nothing here decides who may
do what, that is ``bot.api`` and the engine's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from adapters.api import payloads
from adapters.api.problems import from_api_problem, from_refused, problem
from bot.api import Api
from bot.api_auth import ApiAuth, ApiProblem, Caller
from bot.api_views import api_view
from bot.callbacks import Callbacks
from engine.policy import Policy
from engine.refusals import Refused

log = logging.getLogger("clearance.api")

Handler = Callable[[web.Request, Caller], Awaitable[web.Response]]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of these routes (a test checks it against them)."""
    text = resources.files("adapters.api").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


class ApiRoutes:
    def __init__(
        self, api: Api, auth: ApiAuth, policy: Callable[[], Policy], callbacks: Callbacks
    ) -> None:
        self.api = api
        self.auth = auth
        self.policy = policy
        self.callbacks = callbacks

    async def close(self) -> None:
        await self.auth.close()
        await self.callbacks.close()

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/requests", self._guard(self.create))
        app.router.add_get("/api/v1/requests/{id}", self._guard(self.show))
        app.router.add_post("/api/v1/requests/{id}/cancel", self._guard(self.cancel))
        app.router.add_get("/api/v1/requests/{id}/wait", self._guard(self.wait))
        app.router.add_get("/api/v1/openapi.json", self.openapi)

    def _guard(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Authenticate, then run the handler; every refusal becomes a problem document."""

        async def guarded(request: web.Request) -> web.Response:
            try:
                caller = await self.auth.caller(request.headers.get("Authorization"))
                return await handler(request, caller)
            except ApiProblem as exc:
                if exc.status in (401, 403, 429):
                    log.info("api refused %s %s: %s", request.method, request.path, exc.code)
                return from_api_problem(exc)
            except Refused as exc:
                log.info(
                    "api refused %s %s: %s",
                    request.method,
                    request.path,
                    ", ".join(r.code for r in exc.refusals),
                )
                return from_refused(exc)

        return guarded

    def _json(self, data: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(data, status=status)

    async def create(self, request: web.Request, caller: Caller) -> web.Response:
        raw = await request.content.read(payloads.MAX_BODY + 1)
        if len(raw) > payloads.MAX_BODY:
            raise ApiProblem(413, "too_large", f"the body is over {payloads.MAX_BODY} bytes")
        submission = payloads.submission(raw, request.content_type)
        made = await self.api.submit(caller, submission)
        view = api_view(made, self.policy())
        return web.json_response(view, status=201, headers={"Location": view["links"]["self"]})

    async def show(self, request: web.Request, caller: Caller) -> web.Response:
        found = await self.api.get(caller, payloads.request_id(request.match_info["id"]))
        return self._json(api_view(found, self.policy()))

    async def cancel(self, request: web.Request, caller: Caller) -> web.Response:
        done = await self.api.cancel(caller, payloads.request_id(request.match_info["id"]))
        return self._json(api_view(done, self.policy()))

    async def wait(self, request: web.Request, caller: Caller) -> web.Response:
        timeout = payloads.wait_timeout(request.query.get("timeout"))
        found = await self.api.wait(caller, payloads.request_id(request.match_info["id"]), timeout)
        return self._json(api_view(found, self.policy()))

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document())


__all__ = ["ApiRoutes", "openapi_document", "problem"]
