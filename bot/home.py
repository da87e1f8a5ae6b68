"""What a person's home view shows (Slack App Home, Teams "status"): their open requests,
what waits for their decision, the access reviews waiting for them and the access they
hold, as template data."""

from __future__ import annotations

from typing import Any

from bot.notifier import Notifier
from bot.review_views import ReviewViews
from bot.usecases import Clearance
from engine.access_request import Status
from engine.directory import Person

HOME_LIMIT = 15  # per list; keeps a Slack view under 100 blocks and a Teams card small


async def home_data(
    clearance: Clearance, notifier: Notifier, reviews: ReviewViews, person: Person
) -> dict[str, Any]:
    """Data for the ``home`` template of any platform, seen by ``person``."""
    store = clearance.store
    mine = await store.find(requester=person.email, limit=100)
    open_requests = [r for r in mine if r.status.is_open][:HOME_LIMIT]
    active = [r for r in mine if r.status is Status.ACTIVE][:HOME_LIMIT]
    awaiting = await store.awaiting(person.email, limit=HOME_LIMIT + 1)
    view = notifier.view
    return {
        "me": {"name": person.name, "email": person.email},
        "open": [await view(r, person.email) for r in open_requests],
        "awaiting": [await view(r, person.email) for r in awaiting[:HOME_LIMIT]],
        "active": [await view(r, person.email) for r in active],
        "truncated": len(awaiting) > HOME_LIMIT,
        # "To review" beside "to decide": campaigns with items waiting for this person.
        "to_review": await reviews.to_review(person.email),
    }
