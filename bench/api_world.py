"""The API benchmark's world: its policy (one workload, one staged resource, a static
directory, a connector never called) and the clients, recorded as scripts so that the
floor gets the very same requests, tokens included, at the same moments."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.fakes.oidc_issuer import OidcIssuer

WORKLOAD = "deploy-pipeline"
SUBJECT = "repo:acme/payments:ref:refs/heads/main"
CLAIMS = {"repository_owner": "acme", "repository": "acme/payments"}
AUDIENCE = "clearance"
RESOURCE = "prod-deploy-role"
# Long enough for both runs (and a profiled one): every token is issued before timing starts.
TOKEN_LIFETIME = 1800


def bench_policy(issuer: str) -> str:
    """Stages, so that a POST only files the request (nothing is granted); no chat platform
    is set, so no notification runs; the connector is never called."""
    return f"""
admins: {{channel: C0ADMINS, users: [sam@example.com]}}
directory:
  people:
    - {{email: bob@example.com, name: Bob Baker}}
    - {{email: dora@example.com, name: Dora Diaz}}
    - {{email: sam@example.com, name: Sam Singh}}
    - {{email: svc-deploy@example.com, name: Deploy service account}}
  groups:
    dba: [dora@example.com]
connectors:
  never-called: {{type: slack_usergroups}}
resources:
  - id: {RESOURCE}
    name: Production deploy role
    risk: high
    owners: [group:dba]
    grant: {{connector: never-called, group: S0NEVER}}
    duration: {{default: 1h, max: 4h}}
    requesters: [workload:{WORKLOAD}]
    approval: [manager, resource_owner]
workloads:
  - id: {WORKLOAD}
    issuer: {issuer}
    audience: {AUDIENCE}
    subject: "{SUBJECT}"
    claims: {{repository_owner: acme}}
    owner: bob@example.com
    principal: svc-deploy@example.com
    resources: [{RESOURCE}]
    rate_limit: 100000/1m
"""


def issue(issuer: OidcIssuer) -> str:
    """One workload token (a fresh jti): what the pipeline's platform would hand it."""
    return issuer.issue(SUBJECT, AUDIENCE, claims=CLAIMS, expires_in=TOKEN_LIFETIME)


@dataclass
class Call:
    kind: str  # "POST" (file a request) or "GET" (read it back)
    path: str
    token: str
    body: dict[str, str] | None = None


@dataclass
class Script:
    """One client's calls, in order, and when each was sent (seconds into the run)."""

    client: int
    calls: list[Call] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)


Timings = dict[str, list[float]]


@dataclass
class Tokens:
    """Every token a client will send, issued before timing: a fresh one per POST (a jti is
    accepted once), and one kept for all of its GETs."""

    posts: list[str]
    get: str


def tokens_for(issuer: OidcIssuer, rounds: int) -> Tokens:
    return Tokens([issue(issuer) for _ in range(rounds)], issue(issuer))


async def send(
    session: aiohttp.ClientSession, base: str, call: Call, timings: Timings | None
) -> tuple[int, Any]:
    """One call, timed from send to the whole answer read; non-2xx fails the run."""
    headers = {"Authorization": f"Bearer {call.token}"}
    started = time.perf_counter()
    if call.kind == "POST":
        request = session.post(base + call.path, json=call.body, headers=headers)
    else:
        request = session.get(base + call.path, headers=headers)
    async with request as response:
        body = await response.read()
        status = response.status
    if timings is not None:
        timings[call.kind].append(time.perf_counter() - started)
    expected = 201 if call.kind == "POST" else 200
    if status != expected:
        raise RuntimeError(f"{call.kind} {call.path} answered {status}: {body[:300]!r}")
    return status, json.loads(body)


async def client(
    session: aiohttp.ClientSession,
    base: str,
    script: Script,
    tokens: Tokens,
    timings: Timings | None,
    get: bool,
) -> None:
    """Against Clearance: file a request, then (with ``get``) read it back; once per token."""
    for n, token in enumerate(tokens.posts):
        body = {
            "resource": RESOURCE,
            "justification": f"bench client {script.client} deploy number {n}",
        }
        post = Call("POST", "/api/v1/requests", token, body)
        script.calls.append(post)
        script.sent_at.append(time.perf_counter())
        _, made = await send(session, base, post, timings)
        if get:
            read = Call("GET", f"/api/v1/requests/{made['id']}", tokens.get)
            script.calls.append(read)
            script.sent_at.append(time.perf_counter())
            await send(session, base, read, timings)


async def replay(
    session: aiohttp.ClientSession,
    base: str,
    script: Script,
    timings: Timings | None,
    start: float | None,
) -> None:
    """The same client's calls against the floor, each sent when it was sent to Clearance
    (``start``: when the replay began; None sends them back to back). A call still in
    flight delays the client's next one, as it did in our run."""
    for call, at in zip(script.calls, script.sent_at, strict=True):
        if start is not None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        await send(session, base, call, timings)
