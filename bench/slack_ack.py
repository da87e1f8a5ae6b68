"""Slack ack latency and workflow throughput, side by side with bolt's own floor.

N simulated users each run /request-access -> submit -> three approvals, concurrently,
over HTTP with signed requests, against the local Slack Web API server. The same driver
then hits a bare slack-bolt AsyncApp whose listeners only ack (the framework's floor).
Prints p50/p99 ack latency per interaction type, workflows per second, and the ratios.

    .venv/bin/python bench/slack_ack.py --users 50 [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import build, start, web_app
from bot.settings import Settings
from storage.migrate import upgrade
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action

Timings = dict[str, list[float]]


def bench_policy(users: int) -> str:
    people = [
        f"    - {{email: m{i}@example.com, name: Manager {i}, slack_id: UM{i}}}" for i in range(5)
    ]
    people += [
        f"    - {{email: u{i}@example.com, name: User {i}, manager: m{i % 5}@example.com, "
        f"slack_id: UU{i}}}"
        for i in range(users)
    ]
    people += [
        f"    - {{email: d{i}@example.com, name: DBA {i}, slack_id: UD{i}}}" for i in range(2)
    ]
    people += [
        f"    - {{email: a{i}@example.com, name: Admin {i}, slack_id: UA{i}}}" for i in range(2)
    ]
    return f"""
admins: {{channel: C0ADMINS, users: [a0@example.com, a1@example.com]}}
directory:
  people:
{chr(10).join(people)}
  groups:
    dba: [d0@example.com, d1@example.com]
connectors:
  slack-groups: {{type: slack_usergroups}}
resources:
  - id: prod-db-admin
    name: Production database (admin)
    risk: high
    owners: [group:dba]
    grant: {{connector: slack-groups, group: S0DBADMIN}}
    duration: {{default: 1h, max: 4h}}
    justification: {{min_length: 10}}
    approval: [manager, resource_owner, admins]
"""


async def timed(timings: Timings, kind: str, call: Any) -> tuple[int, str]:
    started = time.perf_counter()
    status, body = await call
    timings[kind].append(time.perf_counter() - started)
    if status != 200:
        raise RuntimeError(f"{kind} answered {status}: {body[:200]}")
    return status, body


async def wait_card(fake: FakeSlack, user: str, rid: str, stage: int) -> dict[str, Any]:
    value = f"{rid}:{stage}"
    for _ in range(2000):
        for message in reversed(fake.dms_to(user)):
            try:
                if find_action(message["blocks"], "approve").get("value") == value:
                    return message
            except AssertionError:
                continue
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{user} never got the card for {value}")


async def wait_request_id(fake: FakeSlack, user: str) -> str:
    for _ in range(2000):
        for message in fake.dms_to(user):
            try:
                return str(find_action(message["blocks"], "cancel")["value"])
            except AssertionError:
                continue
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{user} never got a confirmation")


async def workflow(
    i: int, driver: SlackDriver, fake: FakeSlack, timings: Timings, full: bool
) -> None:
    user = f"UU{i}"
    trigger = f"trigger-{user}"
    await timed(timings, "command", driver.command(user, "prod-db-admin", trigger_id=trigger))
    values = {"resource": "prod-db-admin", "justification": f"bench workflow number {i}"}
    if not full:
        view = {"id": "V", "callback_id": "request_form", "blocks": []}
        await timed(timings, "view_submission", driver.submit(user, view, values))
        for _ in range(3):
            await timed(timings, "approve", driver.click_value("UM0", "approve", f"R-{i}:0"))
        return
    for _ in range(2000):  # views.open happens right after the ack
        if trigger in fake.view_by_trigger:
            break
        await asyncio.sleep(0.005)
    view = fake.views[fake.view_by_trigger[trigger]]
    await timed(timings, "view_submission", driver.submit(user, view, values))
    rid = await wait_request_id(fake, user)
    approvers = [f"UM{i % 5}", f"UD{i % 2}", f"UA{i % 2}"]
    for stage, approver in enumerate(approvers):
        card = await wait_card(fake, approver, rid, stage)
        await timed(timings, "approve", driver.click(approver, card, "approve"))


def floor_app(client: AsyncWebClient) -> web.Application:
    bolt = AsyncApp(client=client, token=TOKEN, signing_secret=SIGNING_SECRET)

    async def just_ack(ack: Any) -> None:
        await ack()

    bolt.command("/request-access")(just_ack)
    bolt.view("request_form")(just_ack)
    bolt.action("approve")(just_ack)

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    return app


async def run_clearance(users: int, database_url: str | None) -> tuple[Timings, float]:
    tmp = Path(tempfile.mkdtemp(prefix="clearance-bench-"))
    policy = tmp / "policy.yaml"
    policy.write_text(bench_policy(users))
    url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
    upgrade(url)
    fake = FakeSlack()
    await fake.start()
    for line in policy.read_text().splitlines():
        if "slack_id:" in line:
            email = line.split("email: ")[1].split(",")[0]
            fake.add_user(line.split("slack_id: ")[1].rstrip("}").strip(), email)
    fake.add_usergroup("S0DBADMIN", ["UA0"])
    settings = Settings(
        database_url=url,
        clearance_policy=policy,
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.api_url,
        clearance_tick_seconds=0.05,
    )
    components = build(settings)
    await start(components)
    server = TestServer(web_app(components))
    await server.start_server()
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(components.dispatcher.run(stop, interval=0.05))
    timings: Timings = defaultdict(list)
    started = time.perf_counter()
    async with SlackDriver(str(server.make_url("/slack/events")), fake.url + "/response") as driver:
        await asyncio.gather(*(workflow(i, driver, fake, timings, True) for i in range(users)))
    elapsed = time.perf_counter() - started
    stop.set()
    await dispatcher
    await server.close()
    await components.close()
    await fake.stop()
    return timings, elapsed


async def run_floor(users: int) -> tuple[Timings, float]:
    fake = FakeSlack()
    await fake.start()
    server = TestServer(floor_app(AsyncWebClient(token=TOKEN, base_url=fake.api_url)))
    await server.start_server()
    timings: Timings = defaultdict(list)
    started = time.perf_counter()
    async with SlackDriver(str(server.make_url("/slack/events")), fake.url + "/response") as driver:
        await asyncio.gather(*(workflow(i, driver, fake, timings, False) for i in range(users)))
    elapsed = time.perf_counter() - started
    await server.close()
    await fake.stop()
    return timings, elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    ours, ours_elapsed = asyncio.run(run_clearance(args.users, args.database_url))
    floor, floor_elapsed = asyncio.run(run_floor(args.users))
    print(f"{args.users} concurrent users, database {args.database_url or 'SQLite (file)'}")
    print(
        f"{'interaction':<16}{'clearance p50':>14}{'p99':>9}"
        f"{'floor p50':>11}{'p99':>9}{'p99 ratio':>11}"
    )
    for kind in ("command", "view_submission", "approve"):
        a, b = ours[kind], floor[kind]
        print(
            f"{kind:<16}{pct(a, 0.5):>12.1f}ms{pct(a, 0.99):>7.1f}ms{pct(b, 0.5):>9.1f}ms"
            f"{pct(b, 0.99):>7.1f}ms{pct(a, 0.99) / pct(b, 0.99):>10.2f}x"
        )
    print(
        f"completed workflows/s: clearance {args.users / ours_elapsed:.1f} "
        f"(all {args.users} done in {ours_elapsed:.2f}s incl. DMs, cards and the grant); "
        f"floor acks only: {args.users / floor_elapsed:.1f}/s"
    )
    mean_ours = statistics.mean(v for vs in ours.values() for v in vs) * 1000
    mean_floor = statistics.mean(v for vs in floor.values() for v in vs) * 1000
    print(f"mean ack overall: clearance {mean_ours:.1f}ms, floor {mean_floor:.1f}ms")


if __name__ == "__main__":
    main()
