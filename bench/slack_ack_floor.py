"""The floor: a bare slack-bolt app whose listeners only ack, in its own process.

Run as ``python -m bench.slack_ack_floor SLACK_API_URL`` (from the repository root, with
``PORT`` set); ``FLOOR_ARGV`` is that command for ``bench.harness.Server``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tests.fakes.slack_api import TOKEN
from tests.fakes.slack_driver import SIGNING_SECRET

FLOOR_ARGV = ("-m", "bench.slack_ack_floor")


def serve_floor(port: int, api_url: str) -> None:
    """A bolt AsyncApp whose listeners only ack, served like ours (aiohttp, /slack/events)."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(
        client=AsyncWebClient(token=TOKEN, base_url=api_url),
        signing_secret=SIGNING_SECRET,
    )

    async def just_ack(ack: Any) -> None:
        await ack()

    bolt.command("/request-access")(just_ack)
    bolt.view("request_form")(just_ack)
    bolt.action("approve")(just_ack)

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    serve_floor(int(os.environ["PORT"]), sys.argv[1])
