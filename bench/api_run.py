"""The measured runs: the clients against ``clearance serve``, then their replay against the
floor, with the same tokens at the same moments."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy import text

from bench.api_floor import FLOOR_ARGV
from bench.api_world import Script, Timings, Tokens, bench_policy, client, replay, tokens_for
from bench.harness import CpuWindow, Server
from engine.audit import verify_chain
from storage.audit_log import AuditLog
from storage.database import Database
from tests.fakes.oidc_issuer import OidcIssuer
from tests.fakes.slapd import free_port

# Chat settings a caller's environment may hold: none of them here, so no platform is on.
_CHAT_SETTINGS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "TEAMS_APP_ID")


@dataclass
class Run:
    timings: Timings
    seconds: float
    cpu: CpuWindow
    requests: int


def session(clients: int) -> aiohttp.ClientSession:
    # One keep-alive connection per client, as 50 pipelines would each hold their own.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients))


async def drive_clearance(
    server: Server, warm: list[Tokens], measured: list[Tokens], get: bool
) -> tuple[Run, list[Script], list[Script]]:
    base = f"http://127.0.0.1:{server.env['PORT']}"
    timings: Timings = defaultdict(list)
    cpu = CpuWindow({"server": [server.pid]})
    async with session(len(measured)) as http:
        # One call pair per client first, unmeasured: the issuer's keys fetched, the
        # connection pools and caches filled.
        warmed = [Script(i) for i in range(len(warm))]
        await asyncio.gather(
            *(client(http, base, s, t, None, get) for s, t in zip(warmed, warm, strict=True))
        )
        scripts = [Script(i) for i in range(len(measured))]
        cpu.start()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                client(http, base, s, t, timings, get)
                for s, t in zip(scripts, measured, strict=True)
            )
        )
        seconds = time.perf_counter() - started
        cpu.stop()
    for script in scripts:
        script.sent_at = [at - started for at in script.sent_at]
    run = Run(timings, seconds, cpu, sum(len(v) for v in timings.values()))
    return run, warmed, scripts


async def drive_floor(server: Server, warmed: list[Script], scripts: list[Script]) -> Run:
    base = f"http://127.0.0.1:{server.env['PORT']}"
    timings: Timings = defaultdict(list)
    cpu = CpuWindow({"server": [server.pid]})
    async with session(len(scripts)) as http:
        await asyncio.gather(*(replay(http, base, s, None, None) for s in warmed))
        cpu.start()
        started = time.perf_counter()
        await asyncio.gather(*(replay(http, base, s, timings, started) for s in scripts))
        seconds = time.perf_counter() - started
        cpu.stop()
    return Run(timings, seconds, cpu, sum(len(v) for v in timings.values()))


async def check(database_url: str, requests: int, calls: int) -> list[str]:
    """What Clearance should have kept: every request filed, every call audited, one jti
    recorded per POST, the audit chain intact."""
    database = Database(database_url)
    problems = []
    try:
        counts = {
            "requests": "SELECT count(*) FROM requests",
            "api_call events": "SELECT count(*) FROM audit_events WHERE action = 'api_call'",
            "recorded jtis": "SELECT count(*) FROM token_uses",
        }
        expected = {"requests": requests, "api_call events": calls, "recorded jtis": requests}
        async with database.transaction() as session:
            for what, query in counts.items():
                found = int((await session.execute(text(query))).scalar_one())
                if found != expected[what]:
                    problems.append(f"{found} {what}, not {expected[what]}")
        audit = AuditLog(database)
        events = [e async for e in audit.events()]
        report = verify_chain(events, await audit.head())
        if not report.ok:
            problems.append(f"audit chain broken at #{report.first_bad_seq}: {report.reason}")
    finally:
        await database.dispose()
    return problems


async def bench(args: argparse.Namespace, work: Path, database_url: str) -> tuple[Run, Run]:
    async with OidcIssuer() as issuer:
        policy = work / "policy.yaml"
        policy.write_text(bench_policy(issuer.url))
        jwks = work / "jwks.json"
        jwks.write_text(json.dumps(issuer.jwks()))
        # Every token signed before anything is timed: signing is the platform's cost.
        warm = [tokens_for(issuer, 1) for _ in range(args.clients)]
        measured = [tokens_for(issuer, args.rounds) for _ in range(args.clients)]
        env = {k: v for k, v in os.environ.items() if k not in _CHAT_SETTINGS}
        ours = Server(
            {
                **env,
                "DATABASE_URL": database_url,
                "CLEARANCE_POLICY": str(policy),
                "PORT": str(free_port()),
                # Access logs off in both servers: the floor writes none either.
                "LOG_LEVEL": "WARNING",
            },
            work / "clearance.log",
            args.profile,
        )
        floor = Server(
            {**env, "PORT": str(free_port())},
            work / "floor.log",
            argv=[*FLOOR_ARGV, str(jwks), issuer.url],
        )
        try:
            ours.start()
            # From a worker thread: this loop serves the issuer's keys meanwhile.
            await asyncio.to_thread(ours.wait_healthy)
            clearance, warmed, scripts = await drive_clearance(ours, warm, measured, args.get)
            problems = ours.log_lines(" ERROR ", "Traceback")
            if problems:
                raise RuntimeError(f"clearance serve logged {problems} errors; see {ours.log}")
            if issuer.jwks_fetches != 1:
                raise RuntimeError(f"the issuer's keys were fetched {issuer.jwks_fetches} times")
        finally:
            await asyncio.to_thread(ours.stop)
        posts = args.clients * (args.rounds + 1)  # the warm-up's included
        if problems := await check(database_url, posts, posts * (2 if args.get else 1)):
            raise RuntimeError("end state: " + "; ".join(problems))
        try:
            floor.start()
            await asyncio.to_thread(floor.wait_healthy)
            bare = await drive_floor(floor, warmed, scripts)
        finally:
            await asyncio.to_thread(floor.stop)
    return clearance, bare
