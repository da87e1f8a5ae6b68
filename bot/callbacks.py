"""Callbacks to workloads: a signed POST to the workload's ``callback_url`` at every change
of its request's state, so a pipeline need not poll.

The callback is an outbox effect saved with the state change it reports (it survives a
crash and is retried like any job). The body is the request as ``GET /api/v1/requests/{id}``
shows it; ``X-Clearance-Signature: sha256=<hex>`` is the HMAC-SHA256, keyed with
``CLEARANCE_CALLBACK_SECRET``, of ``<X-Clearance-Timestamp>.<body>``, so a receiver can
check both who sent it and that it is fresh. The URL's host must still be in the policy's
``api.callback_hosts`` when it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

import aiohttp

from bot.api_views import api_view
from bot.dispatcher import Dispatcher
from engine.access_request import AccessRequest, Status
from engine.effects import PostCallback
from engine.policy import Policy
from engine.transitions import Transition
from engine.workload_policy import is_workload, workload_id
from storage.outbox import OutboxItem

log = logging.getLogger("clearance.callbacks")

SIGNATURE_HEADER = "X-Clearance-Signature"
TIMESTAMP_HEADER = "X-Clearance-Timestamp"


def with_callback(transition: Transition, before: Status | None, policy: Policy) -> Transition:
    """The transition, plus a callback when it changes the state of a request filed by a
    workload that has a callback_url."""
    request = transition.request
    if request.status == before or not is_workload(request.requester):
        return transition
    workload = policy.workload(workload_id(request.requester))
    if workload is None or workload.callback_url is None:
        return transition
    callback = PostCallback(request.id, status=request.status.value)
    return replace(transition, effects=(*transition.effects, callback))


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """What ``X-Clearance-Signature`` carries for a body sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class CallbackFailed(Exception):
    """The receiver did not take the callback; the dispatcher retries it."""


class Callbacks:
    """The outbox handler that posts callbacks."""

    def __init__(
        self,
        get_request: Callable[[str], Awaitable[AccessRequest]],
        policy: Callable[[], Policy],
        secret: bytes | None,
    ) -> None:
        self.get_request = get_request
        self.policy = policy
        self.secret = secret
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use (inside the running loop), not when Clearance is built.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(PostCallback.kind, self.post)

    async def post(self, item: OutboxItem[PostCallback]) -> None:
        request = await self.get_request(item.effect.request_id)
        policy = self.policy()
        workload = policy.workload(workload_id(request.requester))
        url = workload.callback_url if workload else None
        if url is None:
            return  # the workload or its callback was removed from the policy since
        host = (urlsplit(url).hostname or "").lower()
        if host not in policy.document.api.callback_hosts:
            log.warning(
                "callback for %s not sent: %s is not in api.callback_hosts", request.id, host
            )
            return
        if self.secret is None:
            log.warning(
                "callback for %s not sent: set CLEARANCE_CALLBACK_SECRET to sign callbacks",
                request.id,
            )
            return
        body = json.dumps(
            {"event": item.effect.status, "request": api_view(request, policy)},
            sort_keys=True,
        ).encode()
        stamp = str(int(time.time()))
        headers: Mapping[str, str] = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(self.secret, stamp, body),
        }
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                if response.status >= 300:
                    raise CallbackFailed(f"{host} answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallbackFailed(f"{host} could not be reached: {exc}") from None
