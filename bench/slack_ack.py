"""Slack ack latency: our full stack side by side with a bare slack-bolt app (the floor).

N simulated users at once each run ``/request-access`` -> submit the form -> three
approvals (manager, resource owner, admin), with correctly signed requests over HTTP to
``clearance serve`` in its own process, which talks to a local Slack Web API server (the
fake in ``tests/fakes/slack_api.py``, in this process). ``--rounds`` repeats that with new
users, for more samples. Every request the users sent is then replayed, with fresh
signatures and at the same moments into the run, against the floor: a bare bolt
``AsyncApp`` in its own process whose listeners only ``ack()``, served the same way
(aiohttp, ``to_bolt_request``).

Ack latency is the HTTP round trip of each request as Slack would see it (Slack needs the
answer within 3 s). Prints p50/p99 per interaction, the ratios, and the CPU each server
process spent per request.

    .venv/bin/python bench/slack_ack.py [--users 50] [--rounds 3] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PG_ADMIN_DEFAULT, CpuWindow, Server, fresh_database
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver, find_action, has_action
from tests.fakes.slapd import free_port

T = TypeVar("T")
RESOURCE = "prod-db-admin"
KINDS = ("command", "view_submission", "approve")
THIS_FILE = str(Path(__file__).resolve())
WAIT_LIMIT = 120.0  # seconds a user waits for a form or a card before the run fails


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
  - id: {RESOURCE}
    name: Production database (admin)
    risk: high
    owners: [group:dba]
    grant: {{connector: slack-groups, group: S0DBADMIN}}
    duration: {{default: 1h, max: 4h}}
    justification: {{min_length: 10}}
    approval: [manager, resource_owner, admins]
"""


class WatchedSlack(FakeSlack):
    """The fake Slack Web API, waking the users waiting for a DM or a form (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_chat_postMessage(args)
        if "error" not in result:
            channel = str(result["channel"])
            self.by_channel[channel].append(self.messages[(channel, str(result["ts"]))])
            self.changed[channel].set()
        return result

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_chat_update(args)
        if "error" not in result:
            self.changed[str(result["channel"])].set()
        return result

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().m_views_open(args)
        if "error" not in result:
            self.changed["views"].set()
        return result

    async def wait(self, key: str, find: Callable[[], T | None], what: str) -> T:
        """Whatever ``find`` returns once it is not None; re-checked when ``key`` changes."""
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            event = self.changed[key]
            event.clear()
            found = find()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waited {WAIT_LIMIT:.0f}s for {what}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue  # one last look, then the limit above

    def dm(self, user: str) -> str:
        return self.dm_channel(user)


# --- what a user sends, recorded so the floor gets the very same requests -------------------


@dataclass
class Script:
    """One user's requests: the command, the form they submitted, the cards they clicked."""

    user: str
    trigger: str
    view: dict[str, Any] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    clicks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # seconds into the run, per request


Timings = dict[str, list[float]]


async def timed(
    timings: Timings, kind: str, call: Awaitable[tuple[int, str]], script: Script | None = None
) -> None:
    started = time.perf_counter()
    if script is not None:
        script.sent_at.append(started)
    status, body = await call
    timings[kind].append(time.perf_counter() - started)
    if status != 200:
        raise RuntimeError(f"{kind} answered {status}: {body[:300]}")


def request_id_in(messages: list[dict[str, Any]]) -> str | None:
    """The request id on the requester's confirmation DM (its Cancel button)."""
    for message in messages:
        if has_action(message["blocks"], "cancel"):
            return str(find_action(message["blocks"], "cancel")["value"])
    return None


def card_in(messages: list[dict[str, Any]], value: str) -> dict[str, Any] | None:
    """The approval card whose Approve button carries ``value`` (``R-…:stage``)."""
    for message in reversed(messages):
        blocks = message["blocks"]
        if has_action(blocks, "approve") and find_action(blocks, "approve").get("value") == value:
            return message
    return None


async def workflow(
    i: int, driver: SlackDriver, slack: WatchedSlack, timings: Timings, script: Script
) -> None:
    """One user's request through all three approvals, against Clearance."""
    user = script.user
    command = driver.command(user, RESOURCE, trigger_id=script.trigger)
    await timed(timings, "command", command, script)
    view = await slack.wait(
        "views",
        lambda: slack.views.get(slack.view_by_trigger.get(script.trigger, "")),
        f"the form for {user}",
    )
    script.view = copy.deepcopy(view)
    script.values = {"resource": RESOURCE, "justification": f"bench workflow number {i}"}
    await timed(timings, "view_submission", driver.submit(user, view, script.values), script)
    rid = await slack.wait(
        slack.dm(user),
        lambda: request_id_in(slack.by_channel[slack.dm(user)]),
        f"the confirmation to {user}",
    )
    for stage, approver in enumerate((f"UM{i % 5}", f"UD{i % 2}", f"UA{i % 2}")):
        value = f"{rid}:{stage}"
        card = await slack.wait(
            slack.dm(approver),
            lambda approver=approver, value=value: card_in(  # type: ignore[misc]
                slack.by_channel[slack.dm(approver)], value
            ),
            f"{approver}'s card for {value}",
        )
        script.clicks.append((approver, copy.deepcopy(card)))
        await timed(timings, "approve", driver.click(approver, card, "approve"), script)


async def replay(
    driver: SlackDriver, timings: Timings, script: Script, start: float | None
) -> None:
    """The same user's requests against the floor, each sent when it was sent to Clearance
    (``start``: when the replay began; None sends them back to back).

    Same requests at the same moments: the floor sees the very arrival pattern ours saw
    (a request still in flight delays the user's next one, as it did in our run).
    """
    sends = [
        ("command", lambda: driver.command(script.user, RESOURCE, trigger_id="t")),
        ("view_submission", lambda: driver.submit(script.user, script.view, script.values)),
    ]
    sends += [
        ("approve", lambda a=approver, c=card: driver.click(a, c, "approve"))  # type: ignore[misc]
        for approver, card in script.clicks
    ]
    for (kind, send), at in zip(sends, script.sent_at, strict=True):
        if start is not None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        await timed(timings, kind, send())


# --- the floor: a bare bolt app in its own process ------------------------------------------


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


# --- runs -----------------------------------------------------------------------------------


@dataclass
class Run:
    timings: Timings
    seconds: float
    cpu: CpuWindow
    requests: int


async def drive_clearance(
    server: Server, slack: WatchedSlack, users: int, rounds: int
) -> tuple[Run, list[Script]]:
    url = f"http://127.0.0.1:{server.env['PORT']}/slack/events"
    scripts: list[Script] = []
    warm: Timings = defaultdict(list)
    timings: Timings = defaultdict(list)
    cpu = CpuWindow({"server": [server.pid]})
    async with SlackDriver(url, slack.url + "/response") as driver:
        # One user first, unmeasured: connections, caches and templates warm up.
        await workflow(users * rounds, driver, slack, warm, Script(f"UU{users * rounds}", "w"))
        cpu.start()
        started = time.perf_counter()
        for r in range(rounds):
            batch = [Script(f"UU{r * users + k}", f"trigger-{r}-{k}") for k in range(users)]
            scripts += batch
            await asyncio.gather(
                *(
                    workflow(r * users + k, driver, slack, timings, script)
                    for k, script in enumerate(batch)
                )
            )
        seconds = time.perf_counter() - started
        cpu.stop()
    for script in scripts:
        script.sent_at = [at - started for at in script.sent_at]
    return Run(timings, seconds, cpu, sum(len(v) for v in timings.values())), scripts


async def drive_floor(server: Server, slack: WatchedSlack, scripts: list[Script]) -> Run:
    url = f"http://127.0.0.1:{server.env['PORT']}/slack/events"
    warm: Timings = defaultdict(list)
    timings: Timings = defaultdict(list)
    cpu = CpuWindow({"server": [server.pid]})
    async with SlackDriver(url, slack.url + "/response") as driver:
        await replay(driver, warm, scripts[0], None)
        cpu.start()
        started = time.perf_counter()
        await asyncio.gather(*(replay(driver, timings, s, started) for s in scripts))
        seconds = time.perf_counter() - started
        cpu.stop()
    return Run(timings, seconds, cpu, sum(len(v) for v in timings.values()))


async def bench(args: argparse.Namespace, work: Path, database_url: str) -> tuple[Run, Run]:
    everyone = args.users * args.rounds + 1
    policy = work / "policy.yaml"
    policy.write_text(bench_policy(everyone))
    slack = WatchedSlack()
    await slack.start()
    try:
        for line in policy.read_text().splitlines():
            if "slack_id:" in line:
                email = line.split("email: ")[1].split(",")[0]
                slack.add_user(line.split("slack_id: ")[1].rstrip("}").strip(), email)
        slack.add_usergroup("S0DBADMIN", ["UA0"])
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CLEARANCE_POLICY": str(policy),
            "PORT": str(free_port()),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            # Access logs off in both servers: the floor would not write them either.
            "LOG_LEVEL": "WARNING",
        }
        ours = Server(env, work / "clearance.log", args.profile)
        floor = Server(
            {**os.environ, "PORT": str(free_port())},
            work / "floor.log",
            argv=[THIS_FILE, "--serve-floor", slack.api_url],
        )
        try:
            ours.start()
            await asyncio.to_thread(ours.wait_healthy)
            clearance, scripts = await drive_clearance(ours, slack, args.users, args.rounds)
            problems = ours.log_lines(" ERROR ", "Traceback")
            if problems:
                raise RuntimeError(f"clearance serve logged {problems} errors; see {ours.log}")
        finally:
            await asyncio.to_thread(ours.stop)  # the fake Slack (this loop) must keep answering
        try:
            floor.start()
            await asyncio.to_thread(floor.wait_healthy)
            bare = await drive_floor(floor, slack, scripts)
        finally:
            await asyncio.to_thread(floor.stop)
    finally:
        await slack.stop()
    return clearance, bare


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def report(args: argparse.Namespace, database: str, ours: Run, floor: Run) -> None:
    print()
    print(
        f"Slack ack latency: {args.users} users at once x {args.rounds} rounds, "
        f"clearance serve on {database} vs a bare bolt AsyncApp (listeners only ack)"
    )
    print(
        f"{'interaction':<17}{'n':>5}{'ours p50':>10}{'p99':>9}"
        f"{'floor p50':>11}{'p99':>9}{'p50 ratio':>11}{'p99 ratio':>11}"
    )
    for kind in KINDS:
        a, b = ours.timings[kind], floor.timings[kind]
        print(
            f"{kind:<17}{len(a):>5}{pct(a, 0.5):>8.1f}ms{pct(a, 0.99):>7.1f}ms"
            f"{pct(b, 0.5):>9.1f}ms{pct(b, 0.99):>7.1f}ms"
            f"{pct(a, 0.5) / pct(b, 0.5):>10.2f}x{pct(a, 0.99) / pct(b, 0.99):>10.2f}x"
        )
    for label, run in (("ours", ours), ("floor", floor)):
        per_request = run.cpu.used["server"] * 1000 / run.requests
        print(
            f"{label:<6} server CPU {per_request:.1f} ms per request; {run.requests} requests"
            f" in {run.seconds:.1f}s; machine busy {run.cpu.machine_busy:.0%}"
        )
    print(
        "ours includes, for each workflow, the work after the acks (DMs, cards, the grant"
        " through the Slack user-group connector); the floor only acks."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="users at once")
    parser.add_argument("--rounds", type=int, default=3, help="workflows per user slot")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--profile", type=Path, help="cProfile clearance serve into this file")
    parser.add_argument("--serve-floor", metavar="SLACK_API_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(int(os.environ["PORT"]), args.serve_floor)
        return
    work = Path(tempfile.mkdtemp(prefix="clearance-slack-bench-"))
    keep = args.keep
    try:
        if args.database == "postgres":
            with fresh_database(args.pg_admin) as url:
                ours, floor = asyncio.run(bench(args, work, url))
            database = "PostgreSQL"
        else:
            ours, floor = asyncio.run(bench(args, work, f"sqlite+aiosqlite:///{work}/bench.db"))
            database = "SQLite (file)"
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(args, database, ours, floor)


if __name__ == "__main__":
    main()
