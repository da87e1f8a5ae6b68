"""A review with ``every:`` starts by itself: the scheduled job, on the manual clock, and
once however many replicas run it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.server import REVIEW_CADENCE_SECONDS, schedule_review_cadence
from engine.transitions import SYSTEM_ACTOR
from tests.reviews.conftest import ReviewWorld, member, replica


async def test_a_review_starts_when_its_cadence_comes_round(world: ReviewWorld) -> None:
    world.groups.memberships.add((member("alice"), "S0PROD"))
    reviews = world.components.reviews
    first = await reviews.start_due()  # never ran: only the review with every: starts
    assert [(c.review_id, c.started_by) for c in first] == [("quarterly", SYSTEM_ACTOR)]
    assert await reviews.start_due() == []  # open, and started just now

    await reviews.decide(first[0].id, 0, "dora@example.com", "keep", "on call")
    assert (await reviews.get(first[0].id)).status == "closed"
    world.clock.advance(timedelta(days=90) - timedelta(minutes=1))
    assert await reviews.start_due() == []  # closed, but 90 days have not passed
    world.clock.advance(timedelta(minutes=1))
    second = await reviews.start_due()
    assert [c.review_id for c in second] == ["quarterly"]
    assert second[0].started_at == first[0].started_at + timedelta(days=90)

    # Still open 90 days later (an admin has held revocations to confirm): not a second.
    world.clock.advance(timedelta(days=90))
    assert await reviews.start_due() == []
    assert [c.id for c in await reviews.store.campaigns()] == [second[0].id]


async def test_replicas_start_a_due_review_once(world: ReviewWorld) -> None:
    # Nobody holds anything: the campaign closes as it opens, so the open-campaign index
    # alone could not stop a second replica from starting another one.
    async with replica(world.database_url, world.policy_path, world.clock, world.groups) as other:
        results = await asyncio.gather(
            world.components.reviews.start_due(),
            other.reviews.start_due(),
            world.components.reviews.start_due(),
        )
    assert sum(len(started) for started in results) == 1
    campaigns = await world.components.reviews.store.campaigns(open_only=False)
    assert [(c.review_id, c.status) for c in campaigns] == [("quarterly", "closed")]


async def test_serve_schedules_the_cadence_check(world: ReviewWorld) -> None:
    scheduler = AsyncIOScheduler(timezone="UTC")
    schedule_review_cadence(scheduler, world.components)
    job = scheduler.get_job("review-cadence")
    assert job is not None and job.coalesce is True and job.max_instances == 1
    assert job.func == world.components.reviews.start_due
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval == timedelta(seconds=REVIEW_CADENCE_SECONDS)
