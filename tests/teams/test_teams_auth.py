"""Who may post to ``/api/messages``: botbuilder's Bot Framework JWT validation, with the
signing keys published by a local OpenID metadata server, as in production."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from bot.app import build
from bot.server import warn_about_teams, web_app
from engine.access_request import Status
from storage.tables import (
    AuditRow,
    InboundEventRow,
    RequestRow,
    TeamsConversationRow,
)
from tests.fakes.teams_connector import APP_ID, ISSUER, SigningKeys
from tests.fakes.teams_driver import has_action
from tests.teams.conftest import ADMIN_CHANNEL, TeamsWorld, teams_settings

JUSTIFICATION = "Investigating INC-42: replication lag on the primary"


def _bad_header(case: str, keys: SigningKeys, service_url: str) -> str | None:
    """An Authorization header that must not get in (None: no header at all)."""
    now = int(time.time())
    if case == "none":
        return None
    if case == "empty":
        return ""
    if case == "not-bearer":
        return "Basic " + keys.token(service_url)
    if case == "bearer-abc":
        return "Bearer abc"
    if case == "garbage":
        return "Bearer !!#$%&'*+-.^_`|~ " + "x" * 4000
    if case == "three-dots":
        return "Bearer eyJ.eyJ.sig"
    if case == "wrong-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return "Bearer " + keys.token(service_url, key=other)
    if case == "hs256":  # the public key's bytes used as an HMAC secret
        claims = {"iss": ISSUER, "aud": APP_ID, "serviceurl": service_url, "exp": now + 600}
        return "Bearer " + jwt.encode(
            claims, "s" * 64, algorithm="HS256", headers={"kid": keys.kid}
        )
    claims: dict[str, object] = {
        "unknown-key-id": {"kid": "nope"},
        "wrong-audience": {"aud": "someone-else"},
        "wrong-issuer": {"iss": "https://evil.example"},
        "expired": {"exp": now - 3600, "nbf": now - 7200},
        "not-yet-valid": {"nbf": now + 3600},
        "other-service-url": {"serviceurl": "https://smba.evil.example/"},
        "no-service-url": {"serviceurl": None},
    }[case]
    return "Bearer " + keys.token(service_url, **claims)  # type: ignore[arg-type]


async def _rows(world: TeamsWorld) -> dict[str, int]:
    counts = {}
    async with world.components.database.transaction() as session:
        for model in (TeamsConversationRow, RequestRow, AuditRow, InboundEventRow):
            query = select(func.count()).select_from(model)
            counts[model.__name__] = int((await session.execute(query)).scalar_one())
    return counts


async def test_a_signed_request_is_served_and_the_bot_answers_with_its_token(
    teams_auth: TeamsWorld,
) -> None:
    world = teams_auth
    await world.install_all()
    status, body = await world.request("alice", "prod-db-admin", JUSTIFICATION, ticket="INC-1")
    # The form is replaced in place by what it filed.
    assert status == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    await world.drain()
    status, _ = await world.driver.execute(world.bob, world.card_for("bob"), "approve")
    assert status == 200
    await world.drain()
    request = (await world.components.store.find())[0]
    assert request.stage is not None and request.stage.index == 1
    # Every call to the connector carried the bot's token (the fake refuses any other).
    assert world.fake.calls and not has_action(world.dms("bob")[-1]["card"], "approve")


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "empty",
        "not-bearer",
        "bearer-abc",
        "garbage",
        "three-dots",
        "wrong-key",
        "unknown-key-id",
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "not-yet-valid",
        "other-service-url",
        "no-service-url",
        "hs256",
    ],
)
async def test_a_request_without_a_valid_token_gets_401_and_changes_nothing(
    teams_auth: TeamsWorld, signing_keys: SigningKeys, case: str
) -> None:
    world = teams_auth
    header = _bad_header(case, signing_keys, world.driver.service_url)
    before = await _rows(world)
    for activity in (
        world.driver.install_activity(world.alice),
        world.driver.mention_activity(world.sam, ADMIN_CHANNEL, "pending"),
        world.driver.invoke_activity(world.bob, "approve", {"request_id": "R-1", "stage": 0}),
    ):
        if header is None:
            assert world.driver.session is not None
            async with world.driver.session.post(
                world.driver.endpoint, json=activity
            ) as resp:  # no Authorization header at all
                status = resp.status
        else:
            status, _ = await world.driver.post(activity, authorization=header)
        assert status == 401, (case, activity["type"])
    assert await _rows(world) == before
    assert world.fake.calls == []


async def test_a_valid_token_from_another_tenant_is_refused(teams_auth: TeamsWorld) -> None:
    world = teams_auth
    activity = world.driver.install_activity(world.alice)
    activity["channelData"]["tenant"]["id"] = "someone-elses-tenant"
    activity["conversation"]["tenantId"] = "someone-elses-tenant"
    before = await _rows(world)
    status, _ = await world.driver.post(activity)
    assert status == 403
    assert await _rows(world) == before


async def test_malformed_bodies_are_refused_without_a_500(teams_auth: TeamsWorld) -> None:
    world = teams_auth
    assert world.driver.session is not None
    for body, content_type in (
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"text": "no type"}', "application/json"),
        (b"type=message", "application/x-www-form-urlencoded"),
    ):
        async with world.driver.session.post(
            world.driver.endpoint, data=body, headers={"Content-Type": content_type}
        ) as resp:
            assert resp.status == 400, body


async def test_unauthenticated_mode_is_explicit_and_loud(
    db_url: str, policy_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Without an app id and without the flag, /api/messages is not served at all.
    off = build(teams_settings(db_url, policy_path, teams_allow_unauthenticated=False))
    assert off.teams is None
    async with TestClient(TestServer(web_app(off))) as client:
        resp = await client.post("/api/messages", json={"type": "message"})
        assert resp.status in (404, 405)
    await off.close()
    # The flag serves it without token checks, and says so at start.
    on = teams_settings(db_url, policy_path)
    with caplog.at_level(logging.WARNING, logger="clearance"):
        warn_about_teams(on)
    assert any("WITHOUT any token check" in r.getMessage() for r in caplog.records)
    # An app id always means token checks, flag or not.
    both = build(teams_settings(db_url, policy_path, teams_app_id=APP_ID, teams_app_password="x"))
    assert both.teams is not None and both.teams.authenticated
    await both.close()
    with pytest.raises(ValueError, match="TEAMS_APP_PASSWORD"):
        build(teams_settings(db_url, policy_path, teams_app_id=APP_ID))


async def test_unauthenticated_mode_ignores_tokens_it_cannot_check(teams: TeamsWorld) -> None:
    status, _ = await teams.driver.post(
        teams.driver.install_activity(teams.alice), authorization="Bearer whatever"
    )
    assert status == 200
    status, _ = await teams.request("alice", "staging-db-read", "Checking yesterday's import")
    assert status == 200
    await teams.drain()
    request = (await teams.components.store.find())[0]
    assert request.status is Status.ACTIVE
