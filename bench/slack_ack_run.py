"""The measured runs: the users against ``clearance serve``, then their replay against the floor."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.harness import CpuWindow, Server
from bench.slack_ack_api import WatchedSlack
from bench.slack_ack_floor import FLOOR_ARGV
from bench.slack_ack_users import RESOURCE, Script, Timings, replay, workflow
from tests.fakes.slack_api import TOKEN
from tests.fakes.slack_driver import SIGNING_SECRET, SlackDriver
from tests.fakes.slapd import free_port


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
            argv=[*FLOOR_ARGV, slack.api_url],
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
