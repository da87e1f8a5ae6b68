"""The simulated users: one request through three approvals each, recorded as a script so the
floor gets the very same requests at the same moments."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from bench.slack_ack_api import WatchedSlack
from tests.fakes.slack_driver import SlackDriver, find_action, has_action

RESOURCE = "prod-db-admin"


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
