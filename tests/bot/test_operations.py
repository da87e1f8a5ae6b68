"""What an operator watches: /healthz, /readyz, /metrics, the log, and a graceful stop.

The app runs in this process behind aiohttp's test server (or ``serve`` itself, on a free
port); /metrics is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from bot import logs
from bot.app import Components, build
from bot.server import serve, web_app
from bot.settings import Settings
from engine.access_request import Status
from engine.drafts import RequestDraft
from engine.effects import EFFECT_TYPES
from engine.policy import ConnectorConfig
from engine.ports import ConnectorFailure, Entitlements
from storage.migrate import sync_url
from tests.conftest import EXAMPLE_POLICY, START
from tests.fakes.clock import ManualClock
from tests.fakes.entitlements import MemoryEntitlements
from tests.fakes.serve_process import until
from tests.fakes.slapd import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def staging_read(requester: str = "alice@example.com") -> RequestDraft:
    # staging-db-read is approved automatically: a grant follows at once.
    return RequestDraft(requester, "staging-db-read", "Read the staging data for INC-7")


def world(
    db_url: str,
    clock: ManualClock,
    connector: Entitlements | None = None,
    **settings: Any,
) -> Components:
    memory = connector or MemoryEntitlements()

    def factory(_name: str, _config: ConnectorConfig) -> Entitlements:
        return memory

    values: dict[str, Any] = {
        "database_url": db_url,
        "clearance_policy": EXAMPLE_POLICY,
        "slack_api_url": f"http://127.0.0.1:{free_port()}/api/",
    }
    return build(
        Settings(**(values | settings)), clock=clock, factories={"slack_usergroups": factory}
    )


@pytest.fixture
async def client(db_url: str, clock: ManualClock) -> AsyncIterator[tuple[TestClient, Components]]:
    components = world(db_url, clock)
    async with TestClient(TestServer(web_app(components))) as http:
        yield http, components
    await components.close()


async def scrape(http: TestClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no series {name}{labels}"
    return samples[key]


async def test_metrics_has_every_series_on_an_empty_database(
    client: tuple[TestClient, Components],
) -> None:
    http, _ = client
    samples = await scrape(http)
    assert value(samples, "clearance_database_up") == 1
    for state in Status:
        assert value(samples, "clearance_requests", state=state.value) == 0
    for outcome in ("approve", "deny"):
        assert value(samples, "clearance_decisions_total", outcome=outcome) == 0
    assert value(samples, "clearance_grants_active") == 0
    for kind in EFFECT_TYPES:
        for state in ("pending", "dead"):
            assert value(samples, "clearance_outbox_rows", kind=kind, state=state) == 0
        assert value(samples, "clearance_outbox_oldest_due_seconds", kind=kind) == 0
    assert value(samples, "clearance_audit_head_seq") == 0
    ok = {"connector": "slack-groups", "operation": "grant", "outcome": "ok"}
    assert value(samples, "clearance_connector_calls_total", **ok) == 0
    assert (
        value(
            samples,
            "clearance_connector_call_seconds_count",
            connector="slack-groups",
            operation="grant",
        )
        == 0
    )


async def test_metrics_follow_requests_grants_and_connector_calls(
    db_url: str, clock: ManualClock
) -> None:
    memory = MemoryEntitlements()
    components = world(db_url, clock, memory)
    async with TestClient(TestServer(web_app(components))) as http:
        await components.clearance.submit(staging_read())
        clock.advance(timedelta(seconds=90))
        before = await scrape(http)
        # The provision job waits, due since the submit: it runs 90 s late.
        assert value(before, "clearance_outbox_rows", kind="provision", state="pending") == 1
        assert value(before, "clearance_outbox_oldest_due_seconds", kind="provision") == 90
        assert value(before, "clearance_audit_head_seq") > 0

        await components.dispatcher.drain()
        after = await scrape(http)
        assert value(after, "clearance_requests", state="active") == 1
        assert value(after, "clearance_grants_active") == 1
        assert value(after, "clearance_outbox_rows", kind="provision", state="pending") == 0
        grant = {"connector": "slack-groups", "operation": "grant"}
        assert value(after, "clearance_connector_calls_total", **grant, outcome="ok") == 1
        assert value(after, "clearance_connector_call_seconds_count", **grant) == 1
        assert value(after, "clearance_audit_head_seq") > value(before, "clearance_audit_head_seq")

        # A failing target system is counted by the kind of failure.
        memory.down, memory.failure = True, ConnectorFailure.UNREACHABLE
        await components.clearance.submit(staging_read("bob@example.com"))
        await components.dispatcher.drain()
        failed = await scrape(http)
        assert value(failed, "clearance_connector_calls_total", **grant, outcome="unreachable") == 1
    await components.close()


async def test_slack_answers_are_counted_and_timed_and_bolt_does_not_warn(
    db_url: str,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bolt reads the token from the environment as well: the operator's real setup.
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-environment")
    with caplog.at_level(logging.WARNING):
        components = world(
            db_url,
            clock,
            slack_bot_token="xoxb-from-the-environment",
            slack_signing_secret="a-signing-secret",
        )
    assert not [r for r in caplog.records if "will be unused" in r.getMessage()]
    async with TestClient(TestServer(web_app(components))) as http:
        empty = await scrape(http)
        assert value(empty, "clearance_chat_acks_total", platform="slack", status="4xx") == 0
        unsigned = await http.post("/slack/events", data="command=%2Frequest-access")
        assert unsigned.status == 401
        samples = await scrape(http)
        assert value(samples, "clearance_chat_acks_total", platform="slack", status="4xx") == 1
        assert value(samples, "clearance_chat_ack_seconds_count", platform="slack") == 1
        assert value(samples, "clearance_chat_ack_seconds_bucket", platform="slack", le="3.0") == 1
    await components.close()


async def test_readyz_says_why_not(db_url: str, clock: ManualClock, tmp_path: Path) -> None:
    ready = world(db_url, clock)
    async with TestClient(TestServer(web_app(ready))) as http:
        response = await http.get("/readyz")
        assert response.status == 200 and (await response.json())["ready"] is True
        assert response.headers["X-Request-Id"]
        ready.stopping = True
        response = await http.get("/readyz")
        assert response.status == 503 and (await response.json())["reason"] == "shutting down"
    await ready.close()

    async def reason(components: Components) -> str:
        async with TestClient(TestServer(web_app(components))) as http:
            # Liveness never asks the database: a database outage restarts nothing.
            assert (await http.get("/healthz")).status == 200
            response = await http.get("/readyz")
            assert response.status == 503
            body = await response.json()
        await components.close()
        return str(body["reason"])

    empty_file = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    assert "clearance db upgrade" in await reason(world(empty_file, clock))
    refused = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    assert (await reason(world(refused, clock))).startswith("DATABASE_URL: cannot use")
    broken = tmp_path / "broken.yaml"
    broken.write_text("resources: [}\n")
    components = world(db_url, clock, clearance_policy=broken)
    assert (await reason(components)).startswith("policy not loaded")


async def test_an_old_schema_is_not_ready(db_url: str, clock: ManualClock) -> None:
    engine = create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    components = world(db_url, clock)
    async with TestClient(TestServer(web_app(components))) as http:
        response = await http.get("/readyz")
        assert response.status == 503
        assert "schema is at 0001" in (await response.json())["reason"]
    await components.close()


# --- the log ------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_carry_the_context_and_never_a_secret() -> None:
    secret, password = "xoxb-1234-real-looking-token", "db-pa55word-value"
    settings = Settings(
        log_format="json",
        slack_bot_token=secret,
        database_url=f"postgresql+psycopg://app:{password}@db/clearance",
    )
    out = io.StringIO()
    logs.configure(settings, out)
    log = logging.getLogger("clearance.test")
    log.info("outside any request")
    with logs.bound(http_request="abc123", request_id="R-7"):
        logs.bind(actor="alice@example.com")
        log.warning("token %s and url %s", secret, settings.database_url)
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            log.exception("it broke")
    log.info("after the request")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    assert lines[0]["message"] == "outside any request" and "actor" not in lines[0]
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "clearance.test"
    assert (lines[1]["http_request"], lines[1]["request_id"]) == ("abc123", "R-7")
    assert lines[1]["actor"] == "alice@example.com"
    assert "RuntimeError" in lines[2]["exception"]
    assert "actor" not in lines[3]  # the context ends with its block
    assert secret not in out.getvalue() and password not in out.getvalue()
    assert "***" in lines[1]["message"] and "***" in lines[2]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_a_secret_is_masked_whole_encoded_and_when_learnt_later() -> None:
    password = "p@ss/word:with%signs"
    settings = Settings(
        slack_bot_token="xoxb-short",  # a secret inside a longer one is masked whole
        slack_signing_secret="xoxb-short-and-longer-signing",
        database_url=f"postgresql+psycopg://app:{quote(password, safe='')}@db/clearance",
    )
    out = io.StringIO()
    logs.configure(settings, out)
    log = logging.getLogger("clearance.test")
    log.warning("dsn %s", settings.database_url)  # the password percent-encoded
    log.warning("signing %s", "xoxb-short-and-longer-signing")
    logs.add_secrets(["ldap-bind-secret-from-policy"])
    log.warning("bind %s", "ldap-bind-secret-from-policy")
    text = out.getvalue()
    assert quote(password, safe="") not in text and password not in text
    assert "and-longer" not in text and "xoxb-short" not in text
    assert "ldap-bind-secret-from-policy" not in text
    assert text.count("***") == 3


@pytest.mark.usefixtures("restore_logging")
def test_text_log_lines_are_the_default() -> None:
    out = io.StringIO()
    logs.configure(Settings(), out)
    with logs.bound(request_id="R-9"):
        logging.getLogger("clearance.test").info("hello")
    line = out.getvalue().strip()
    assert " INFO clearance.test: hello [request_id=R-9]" in line


# --- a graceful stop ----------------------------------------------------------------------


class HeldGrant(MemoryEntitlements):
    """A grant that waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def grant(self, principal: str, group: str) -> None:
        self.entered.set()
        await self.release.wait()
        await super().grant(principal, group)


async def _serving(components: Components, stop: asyncio.Event) -> asyncio.Task[None]:
    task = asyncio.create_task(serve(components, stop=stop))
    url = f"http://127.0.0.1:{components.settings.port}/readyz"

    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await until(ready, "serve to be ready", 30)
    return task


async def test_stopping_finishes_the_job_in_flight(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    held = HeldGrant()
    clock = ManualClock(START)
    components = world(db_url, clock, held, host="127.0.0.1", port=free_port())
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="clearance")
    task = await _serving(components, stop)
    request = await components.clearance.submit(staging_read())
    await asyncio.wait_for(held.entered.wait(), 10)
    stop.set()
    await until(lambda: "stopping: waiting" in caplog.text, "the stop to be announced", 10)
    assert "1 outbox job(s)" in caplog.text and components.stopping
    held.release.set()
    await asyncio.wait_for(task, 10)
    assert (await components.clearance.get(request.id)).status is Status.ACTIVE
    assert "stopped" in caplog.text and "unfinished" not in caplog.text


async def test_stopping_gives_up_on_a_stuck_job_at_the_bound(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    held = HeldGrant()  # never released
    components = world(
        db_url,
        ManualClock(START),
        held,
        host="127.0.0.1",
        port=free_port(),
        clearance_shutdown_seconds=0.5,
    )
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="clearance")
    task = await _serving(components, stop)
    request = await components.clearance.submit(staging_read())
    await asyncio.wait_for(held.entered.wait(), 10)
    stopping = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - stopping < 3
    assert "1 outbox job(s) unfinished at the 0.5s bound" in caplog.text
    # The grant never returned: the request is still being provisioned, its job retried later.
    check = build(Settings(database_url=db_url, clearance_policy=EXAMPLE_POLICY))
    assert (await check.clearance.get(request.id)).status is Status.PROVISIONING
    await check.close()
