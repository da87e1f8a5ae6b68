"""An access review campaign of N items over R reviewers on PostgreSQL, against its floor.

The whole Clearance (``bot.app.build``) runs in this process with the Slack user-group
connector and the Slack chat, both against the local fake Slack Web API
(tests/fakes/slack_api.py). R resources, each owned by one reviewer, each a Slack user
group of N/R members without a grant. Phases, each timed (wall and CPU of this process,
which also serves the fake):

1. **start**: ``Reviews.start``: every group's members listed through the connector,
   reviewers assigned, N items saved with the audit event and the outbox rows.
2. **cards**: the dispatcher drained: each reviewer's card sent (when the reviewer
   notifier is wired in ``bot/app.py``; otherwise this phase says it is pending).
3. **decide**: V Revoke decisions (with a reason) through ``Reviews.decide``, the
   reviewers deciding at the same time, each their own items one after another.
4. **revocations**: the dispatcher drained of everything but card refreshes: each
   Revoke carried out through the connector.
5. **card refreshes**: the refreshes the decisions and removals queued (when the notifier
   is there), run until done or for at most ``--budget`` seconds.

The floor of each phase replays exactly the Slack calls Clearance made in it, straight
through slack_sdk, 16 at a time (bench/review_campaign_floor.py). At the end: N items,
V revoked with one ``review_access_removed`` each, the groups V members smaller, the
audit chain intact.

    .venv/bin/python bench/review_campaign.py [--items 10000] [--reviewers 50]
        [--revocations 1000] [--budget 120] [--quick] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bench.harness import PG_ADMIN_DEFAULT, fresh_database, machine_ticks
from bench.review_campaign_floor import Floor, replay
from bench.review_campaign_world import ADMIN, REVIEW_ID, group, seed_slack, write_policy
from bot.app import Components, build, start
from bot.dispatcher import Dispatcher
from bot.settings import Settings
from engine.audit import verify_chain
from engine.effects import NotifyReviewer, RefreshReviewCards
from tests.fakes.slack_api import TOKEN, Call, FakeSlack

REASON = "Left the team; no longer needs it"


@dataclass
class Phase:
    name: str
    seconds: float
    cpu_seconds: float
    calls: list[Call]
    busy: float = 0.0  # how much of all cores anyone used meanwhile (the machine is shared)
    floor: Floor | None = None
    note: str = ""


@dataclass
class Run:
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def timed(fake: FakeSlack, name: str, work: Any) -> tuple[Phase, Any]:
    first = len(fake.calls)
    ticks = machine_ticks()
    cpu, started = time.process_time(), time.monotonic()
    result = await work
    phase = Phase(name, time.monotonic() - started, time.process_time() - cpu, [])
    busy, total = machine_ticks()
    phase.busy = (busy - ticks[0]) / max(1, total - ticks[1])
    phase.calls = fake.calls[first:]
    return phase, result


async def decide_all(
    components: Components, campaign_id: str, chosen: dict[str, list[int]]
) -> None:
    reviews = components.reviews

    async def one_reviewer(who: str, indexes: list[int]) -> None:
        for index in indexes:
            await reviews.decide(campaign_id, index, who, "revoke", REASON)

    await asyncio.gather(*(one_reviewer(w, ix) for w, ix in chosen.items()))


async def campaign(args: argparse.Namespace, database_url: str, work: Path) -> Run:
    run = Run()
    fake = FakeSlack()
    await fake.start()
    seed_slack(fake, args.items, args.reviewers)
    settings = Settings(
        database_url=database_url,
        clearance_policy=write_policy(work / "policy.yaml", args.reviewers),
        slack_bot_token=TOKEN,
        slack_api_url=fake.api_url,
    )
    components = build(settings)
    await start(components)
    client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
    dispatcher = components.dispatcher
    cards = NotifyReviewer.kind in dispatcher.routes
    try:
        phase, opened = await timed(fake, "start", components.reviews.start(REVIEW_ID, ADMIN))
        run.phases.append(phase)
        phase, _ = await timed(fake, "cards", dispatcher.drain(max_rounds=100_000))
        if not cards:
            phase.note = "pending: no reviewer notifier is registered (cards not sent)"
        run.phases.append(phase)

        items = await components.reviews.store.items(opened.id)
        per_reviewer: dict[str, list[int]] = {}
        for item in items:
            per_reviewer.setdefault(item.reviewers[0], []).append(item.index)
        each = args.revocations // args.reviewers
        chosen = {who: ix[:each] for who, ix in per_reviewer.items()}
        phase, _ = await timed(fake, "decide", decide_all(components, opened.id, chosen))
        run.phases.append(phase)
        # The revocations first, on their own: the card refreshes the decisions queued wait.
        refresh = dispatcher.routes.pop(RefreshReviewCards.kind, None)
        phase, _ = await timed(fake, "revocations", dispatcher.drain(max_rounds=100_000))
        run.phases.append(phase)
        if refresh is not None:
            dispatcher.routes[RefreshReviewCards.kind] = refresh
            left = await refresh_count(components)
            phase, _ = await timed(fake, "card refreshes", bounded(dispatcher, args.budget))
            still = await refresh_count(components)
            phase.note = f"{left - still} of {left} refresh jobs run" + (
                f" in the {args.budget:.0f} s budget; {still} left (not counted)" if still else ""
            )
            run.phases.append(phase)

        run.problems += await check(components, fake, opened.id, args, chosen)
        for phase in run.phases:
            if phase.calls:
                phase.floor = await replay(client, phase.calls)
    finally:
        await components.close()
        await fake.stop()
    return run


async def refresh_count(components: Components) -> int:
    """Card refresh jobs not done yet."""
    query = text("SELECT count(*) FROM outbox WHERE kind = :kind AND status = 'pending'")
    async with components.database.transaction() as session:
        found = await session.execute(query, {"kind": RefreshReviewCards.kind})
        return int(found.scalar_one())


async def bounded(dispatcher: Dispatcher, budget: float) -> int:
    """Drain until nothing is due or ``budget`` seconds have passed (a batch at a time)."""
    deadline = time.monotonic() + budget
    done = 0
    while time.monotonic() < deadline:
        n = await dispatcher.tick()
        done += n
        if n == 0:
            break
    return done


async def check(
    components: Components,
    fake: FakeSlack,
    campaign_id: str,
    args: argparse.Namespace,
    chosen: dict[str, list[int]],
) -> list[str]:
    """The end state: every item there, every chosen one revoked once, the groups smaller."""
    problems = []
    store = components.reviews.store
    progress = await store.progress(campaign_id)
    revoked = sum(len(ix) for ix in chosen.values())
    if sum(progress.values()) != args.items:
        problems.append(f"{sum(progress.values())} items, not {args.items}")
    if progress.get("revoked", 0) != revoked:
        problems.append(f"{progress.get('revoked', 0)} items revoked, not {revoked}: {progress}")
    removed: Counter[int] = Counter()
    async for event in components.audit.events():
        if event.action == "review_access_removed":
            removed[event.details["item"]] += 1
    if sorted(removed.values()) != [1] * revoked:
        problems.append(f"review_access_removed events: {sum(removed.values())} for {revoked}")
    left = sum(len(fake.usergroups[group(r)]["users"]) for r in range(args.reviewers))
    if left != args.items - revoked:
        problems.append(f"{left} group members left, not {args.items - revoked}")
    events = [e async for e in components.audit.events()]
    report = verify_chain(events, await components.audit.head())
    if not report.ok:
        problems.append(f"audit chain broken at #{report.first_bad_seq}: {report.reason}")
    return problems


def report(run: Run, args: argparse.Namespace) -> None:
    print()
    print(
        f"Review campaign: {args.items} items over {args.reviewers} reviewers, "
        f"{args.revocations} revocations, PostgreSQL"
    )
    print()
    header = "| phase | Slack calls | ours | floor | ratio | CPU ours | CPU floor | machine busy |"
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for p in run.phases:
        calls = ", ".join(f"{m} x{n}" for m, n in Counter(c.method for c in p.calls).most_common())
        floor = p.floor
        ratio = f"{p.seconds / floor.seconds:.1f}x" if floor and floor.seconds else "-"
        print(
            f"| {p.name} | {calls or 'none'} | {p.seconds:.2f} s | "
            f"{f'{floor.seconds:.2f} s' if floor else '-'} | {ratio} | "
            f"{p.cpu_seconds:.2f} s | {f'{floor.cpu_seconds:.2f} s' if floor else '-'} | "
            f"{p.busy:.0%} |"
        )
    for p in run.phases:
        if p.note:
            print(f"- {p.name}: {p.note}")
    print()
    print("End state: " + ("; ".join(run.problems) if run.problems else "all checks passed"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--revocations", type=int, default=1_000)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1,000 items, 100 revocations"
    )
    parser.add_argument(
        "--pg-admin",
        default=PG_ADMIN_DEFAULT,
        help="libpq URL of a database the benchmark may create databases from",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds the card refreshes may run before the benchmark stops them "
        "(default 120, quick 20)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the run here")
    args = parser.parse_args()
    if args.quick:
        args.items, args.revocations = 1_000, 100
    if args.budget is None:
        args.budget = 20.0 if args.quick else 120.0
    if args.revocations % args.reviewers or args.revocations // args.reviewers > (
        args.items // args.reviewers
    ):
        parser.error("--revocations must be a multiple of --reviewers, at most --items")
    work = Path(tempfile.mkdtemp(prefix="clearance-review-bench-"))
    with fresh_database(args.pg_admin) as url:
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        run = asyncio.run(campaign(args, url, work))
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    report(run, args)
    sys.exit(1 if run.problems else 0)


if __name__ == "__main__":
    main()
