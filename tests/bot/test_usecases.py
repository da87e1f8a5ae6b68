"""Use cases over a real store and the static directory, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.static.directory import StaticDirectory
from bot.policy_source import PolicySource
from bot.usecases import Clearance
from engine.access_request import AccessRequest, Status
from engine.drafts import RequestDraft
from engine.lifecycle import decision_trail_allows
from engine.policy import Policy
from engine.refusals import Refused
from message_templates import field_errors, refusal_text
from storage.audit_log import AuditLog
from storage.database import Database
from storage.repository import Store
from tests.fakes.clock import ManualClock

ALICE = "alice@example.com"
TABLES = ("requests", "decisions", "grants", "audit_events", "outbox")


def prod(requester: str = ALICE, **changes: Any) -> RequestDraft:
    fields: dict[str, Any] = {
        "requester": requester,
        "resource_id": "prod-db-admin",
        "justification": "Investigating INC-42 on the primary cluster",
        "ticket": "INC-42",
    }
    fields.update(changes)
    return RequestDraft(**fields)


def signing_key(requester: str = ALICE) -> RequestDraft:
    return RequestDraft(
        requester=requester,
        resource_id="release-signing-key",
        justification="Signing the 4.2.1 security release build",
        ticket="CHG-311",
    )


async def state_of(database: Database) -> dict[str, Any]:
    """Every table's row count and the audit head: equal before and after means untouched."""
    async with database.transaction() as session:
        out: dict[str, Any] = {
            t: (await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in TABLES
        }
        out["head"] = tuple((await session.execute(text("SELECT seq, hash FROM audit_head"))).one())
        out["versions"] = sorted(
            tuple(r) for r in await session.execute(text("SELECT id, version FROM requests"))
        )
    return out


async def outbox_rows(database: Database, request_id: str, kind: str) -> list[dict[str, Any]]:
    """Each row's effect as stored: its request (a column of its own) and its payload."""
    async with database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT request_id, payload FROM outbox WHERE request_id = :r AND kind = :k"
                " ORDER BY id"
            ),
            {"r": request_id, "k": kind},
        )
        return [{"request_id": r, **json.loads(p)} for r, p in rows]


async def audit_actions(database: Database, request_id: str) -> list[tuple[str, str, dict]]:
    async with database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT action, actor, details FROM audit_events WHERE request_id = :r ORDER BY seq"
            ),
            {"r": request_id},
        )
        return [(a, actor, json.loads(d)) for a, actor, d in rows]


async def decisions(database: Database, request_id: str) -> list[tuple[int, str, str]]:
    async with database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT stage, approver, outcome FROM decisions WHERE request_id = :r "
                "ORDER BY stage, approver"
            ),
            {"r": request_id},
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
async def replica(db_url: str, policy: Policy, clock: ManualClock) -> AsyncIterator[Clearance]:
    """A second process's use cases: its own Database (engine, pool) on the same URL."""
    database = Database(db_url)
    try:
        yield Clearance(
            Store(database),
            AuditLog(database),
            PolicySource.fixed(policy),
            StaticDirectory(lambda: policy),
            clock,
        )
    finally:
        await database.dispose()


# --- the happy path -----------------------------------------------------------------------


async def test_three_stage_approval(
    clearance: Clearance, database: Database, clock: ManualClock
) -> None:
    request = await clearance.submit(prod())
    assert request.status is Status.PENDING
    assert request.stage is not None and request.stage.approvers == ("bob@example.com",)
    assert await outbox_rows(database, request.id, "notify_approvers") == [
        {"request_id": request.id, "stage": 0}
    ]

    request = await clearance.decide(request.id, "bob@example.com", "approve")
    assert request.stage is not None and request.stage.index == 1
    assert request.stage.approvers == ("dora@example.com", "dan@example.com")
    request = await clearance.decide(request.id, "Dora@Example.com", "approve", expected_stage=1)
    assert request.stage is not None and request.stage.label == "Security sign-off"
    assert await outbox_rows(database, request.id, "provision") == []

    request = await clearance.decide(request.id, "sam@example.com", "approve", "INC-42 checked")
    assert request.status is Status.APPROVED
    assert decision_trail_allows(request)
    assert request == await clearance.get(request.id)
    assert await decisions(database, request.id) == [
        (0, "bob@example.com", "approve"),
        (1, "dora@example.com", "approve"),
        (2, "sam@example.com", "approve"),
    ]
    assert await outbox_rows(database, request.id, "provision") == [
        {
            "request_id": request.id,
            "connector": "slack-groups",
            "group": "S0DBADMIN",
            "principal": ALICE,
        }
    ]
    assert await outbox_rows(database, request.id, "notify_approvers") == [
        {"request_id": request.id, "stage": i} for i in range(3)
    ]
    actions = [a for a, _, _ in await audit_actions(database, request.id)]
    assert actions[0] == "requested" and actions[-1] == "fully_approved"
    assert actions.count("approved") == 3


# --- who may decide -----------------------------------------------------------------------


async def test_requester_cannot_approve_own_request(
    clearance: Clearance, database: Database
) -> None:
    request = await clearance.submit(prod())
    await clearance.decide(request.id, "bob@example.com", "approve")
    before = await state_of(database)
    for stage in (None, 1):
        with pytest.raises(Refused) as refused:
            await clearance.decide(request.id, ALICE, "approve", expected_stage=stage)
        assert refused.value.code == "self_approval"
    assert await state_of(database) == before


async def test_admin_requester_cannot_approve_the_admin_stage_of_own_request(
    clearance: Clearance, database: Database
) -> None:
    # Sam has no manager two levels up, so the admins stand in for stage 1 -- minus Sam.
    request = await clearance.submit(signing_key("sam@example.com"))
    stage = request.stage
    assert stage is not None and stage.fallback
    assert stage.approvers == ("sara@example.com",)
    assert ("sam@example.com", "is the requester") in {(e.email, e.reason) for e in stage.excluded}

    before = await state_of(database)
    with pytest.raises(Refused) as refused:
        await clearance.decide(request.id, "sam@example.com", "approve")
    assert refused.value.code == "self_approval"
    assert await state_of(database) == before
    # Sara, the other admin, can.
    request = await clearance.decide(request.id, "sara@example.com", "approve")
    assert [d.approver for d in request.decisions] == ["sara@example.com"]


STRANGERS = (
    ("erin@example.com", "not_an_approver"),  # a colleague with no role here
    ("dora@example.com", "not_an_approver"),  # approver of a later stage, not this one
    ("mallory@evil.example", "not_an_approver"),  # nobody the directory knows
    ("clearance-bot@example.com", "executor"),  # the identity that executes grants
)


async def test_strangers_are_refused_and_nothing_is_written(
    clearance: Clearance, database: Database
) -> None:
    request = await clearance.submit(prod())
    before = await state_of(database)
    for actor, code in STRANGERS:
        for outcome in ("approve", "deny"):
            with pytest.raises(Refused) as refused:
                await clearance.decide(request.id, actor, outcome, reason="no")  # type: ignore[arg-type]
            assert refused.value.code == code, (actor, outcome, refused.value.refusals)
    assert await state_of(database) == before
    assert (await clearance.get(request.id)) == request


async def test_denial_at_the_second_stage_ends_the_request(
    clearance: Clearance, database: Database
) -> None:
    request = await clearance.submit(prod())
    await clearance.decide(request.id, "bob@example.com", "approve")

    before = await state_of(database)
    with pytest.raises(Refused) as refused:
        await clearance.decide(request.id, "dora@example.com", "deny", reason="   ")
    assert field_errors(refused.value) == {"reason": "Please give a reason for the denial."}
    assert await state_of(database) == before

    request = await clearance.decide(
        request.id, "dora@example.com", "deny", reason="Use the read replica"
    )
    assert request.status is Status.DENIED
    assert request.ended_by == "dora@example.com"
    assert request.end_reason == "Use the read replica"
    assert await decisions(database, request.id) == [
        (0, "bob@example.com", "approve"),
        (1, "dora@example.com", "deny"),
    ]
    assert await outbox_rows(database, request.id, "provision") == []
    assert len(await outbox_rows(database, request.id, "notify_admins")) == 1

    before = await state_of(database)
    for actor in ("dan@example.com", "sam@example.com"):
        with pytest.raises(Refused) as refused:
            await clearance.decide(request.id, actor, "approve")
        assert refused.value.code == "not_pending"
        assert "denied by dora@example.com" in refusal_text(refused.value)
    assert await state_of(database) == before


# --- races ----------------------------------------------------------------------------------


async def _outcomes(*calls: Any) -> tuple[list[AccessRequest], list[BaseException]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [r for r in results if isinstance(r, AccessRequest)]
    lost = [r for r in results if isinstance(r, BaseException)]
    return won, lost


async def test_two_approvers_racing_on_two_replicas_give_one_transition(
    clearance: Clearance, replica: Clearance, database: Database
) -> None:
    for round_ in range(4):
        request = await clearance.submit(prod())
        await clearance.decide(request.id, "bob@example.com", "approve")
        stage = 1 if round_ % 2 else None  # with and without the card's stage
        won, lost = await _outcomes(
            clearance.decide(request.id, "dora@example.com", "approve", expected_stage=stage),
            replica.decide(request.id, "dan@example.com", "approve", expected_stage=stage),
        )
        assert len(won) == 1 and len(lost) == 1, lost
        assert isinstance(lost[0], Refused), repr(lost[0])
        assert lost[0].code in ("stale", "not_an_approver")

        stage1 = [d for d in await decisions(database, request.id) if d[0] == 1]
        assert len(stage1) == 1 and stage1[0][2] == "approve"
        assert stage1[0][1] == won[0].decisions[-1].approver
        stored = await clearance.get(request.id)
        assert stored == won[0]
        assert len(stored.stages) == 3 and stored.status is Status.PENDING
        trail = await audit_actions(database, request.id)
        assert [d["stage"] for a, _, d in trail if a == "stage_started"] == [0, 1, 2]
        assert [d["stage"] for a, _, d in trail if a == "stage_completed"] == [0, 1]
        assert [
            p["stage"] for p in await outbox_rows(database, request.id, "notify_approvers")
        ] == [
            0,
            1,
            2,
        ]
        assert len(await outbox_rows(database, request.id, "timeout")) == 3


async def test_a_double_click_records_one_decision(
    clearance: Clearance, replica: Clearance, database: Database
) -> None:
    request = await clearance.submit(prod())
    await clearance.decide(request.id, "bob@example.com", "approve")
    won, lost = await _outcomes(
        clearance.decide(request.id, "dora@example.com", "approve"),
        clearance.decide(request.id, "dora@example.com", "approve"),
    )
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Refused), lost
    assert [d for d in await decisions(database, request.id) if d[1] == "dora@example.com"] == [
        (1, "dora@example.com", "approve")
    ]
    assert len(await outbox_rows(database, request.id, "notify_approvers")) == 3

    # A quorum-of-all stage: a retried click (here landing on another replica) must not
    # count twice and complete the stage alone.
    request = await clearance.submit(signing_key())
    request = await clearance.decide(request.id, "carol@example.com", "approve")
    assert request.stage is not None and request.stage.required == 2
    won, lost = await _outcomes(
        clearance.decide(request.id, "sam@example.com", "approve"),
        replica.decide(request.id, "sam@example.com", "approve"),
    )
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Refused), lost
    assert lost[0].code == "already_decided"
    stored = await clearance.get(request.id)
    assert stored.status is Status.PENDING and stored.stage is not None
    assert [d.approver for d in stored.approvals_in(1)] == ["sam@example.com"]
    stored = await replica.decide(request.id, "sara@example.com", "approve")
    assert stored.status is Status.APPROVED
    assert len(await outbox_rows(database, request.id, "provision")) == 1


# --- break-glass ----------------------------------------------------------------------------


async def test_the_break_glass_limit_counts_this_persons_break_glass_in_the_window(
    clearance: Clearance, database: Database, clock: ManualClock
) -> None:
    """The example allows 2 break-glass requests in 30 days per person and resource."""
    start = clock.now()
    glass = prod(break_glass=True)
    clock.set(start - timedelta(days=31))  # outside the window by the time it matters
    assert (await clearance.submit(glass)).break_glass
    clock.set(start - timedelta(days=5))
    assert (await clearance.submit(glass)).break_glass
    clock.set(start - timedelta(hours=1))
    assert (await clearance.submit(glass)).break_glass  # 1 in the window before it
    # Neither another person, another resource's, nor normal requests count.
    await clearance.submit(prod())
    await clearance.submit(prod("erin@example.com", break_glass=True))
    clock.set(start)

    request = await clearance.submit(glass)  # 2 in the window: to the approvers
    assert request.status is Status.PENDING and not request.break_glass
    assert request.break_glass_refused == "limit" and request.approval_mode == "stages"
    assert (await clearance.get(request.id)).break_glass_refused == "limit"  # stored
    requested = (await audit_actions(database, request.id))[0]
    assert requested[0] == "requested" and requested[2]["break_glass"] is True
    assert (requested[2]["break_glass_refused"], requested[2]["break_glass_limit"]) == (
        "limit",
        "2/30d",
    )
    assert requested[2]["recent"] == 2
    # The refused ask is no break-glass request itself: the count stays at 2.
    again = await clearance.submit(glass)
    assert again.break_glass_refused == "limit"
    assert await outbox_rows(database, again.id, "provision") == []
    clock.advance(timedelta(days=26))  # the one from 5 days ago leaves the window
    assert (await clearance.submit(glass)).break_glass


async def test_two_break_glass_asks_at_once_cannot_both_slip_under_the_limit(
    clearance: Clearance, replica: Clearance, clock: ManualClock
) -> None:
    start = clock.now()
    clock.set(start - timedelta(days=1))
    assert (await clearance.submit(prod(break_glass=True))).break_glass  # 1 of the 2 allowed
    clock.set(start)
    for each in (clearance, replica):
        count = each.store.break_glass_count

        async def slow_count(*args: Any, count: Any = count) -> int:
            found = int(await count(*args))
            await asyncio.sleep(0.2)  # long enough for the other replica to count as well
            return found

        each.store.break_glass_count = slow_count  # type: ignore[method-assign]
    # Two replicas, at the same moment: each would count 1 if nothing held the count still.
    both = await asyncio.gather(
        clearance.submit(prod(break_glass=True)), replica.submit(prod(break_glass=True))
    )
    assert sorted(r.break_glass for r in both) == [False, True]
    assert [r.break_glass_refused for r in both if not r.break_glass] == ["limit"]


async def test_break_glass_tells_the_admins_and_each_owner(
    clearance: Clearance, database: Database
) -> None:
    request = await clearance.submit(prod(break_glass=True))
    assert request.status is Status.APPROVED and request.break_glass
    notified = await outbox_rows(database, request.id, "notify")
    assert [(n["email"], n["template"]) for n in notified] == [
        ("dora@example.com", "break_glass_owner_alert"),
        ("dan@example.com", "break_glass_owner_alert"),
        (ALICE, "request_approved"),
    ]
    assert [a["template"] for a in await outbox_rows(database, request.id, "notify_admins")] == [
        "break_glass_alert"
    ]


# --- bad input ------------------------------------------------------------------------------


BAD_DRAFTS = (
    ("unknown resource", prod(resource_id="prod-db-root"), "resource", "unknown_resource"),
    ("unreadable duration", prod(duration="forever"), "duration", "bad_duration"),
    ("zero duration", prod(duration="0m"), "duration", "bad_duration"),
    ("over the maximum", prod(duration="5h"), "duration", "duration_over_max"),
    (
        "short justification",
        prod(justification="  because   "),
        "justification",
        "justification_too_short",
    ),
    ("ticket mismatch", prod(ticket="JIRA-1"), "ticket", "ticket_mismatch"),
    ("ticket missing", prod(ticket=None), "ticket", "ticket_required"),
    ("requester not allowed", prod("dora@example.com"), "resource", "not_allowed"),
    ("inactive requester", prod("frank@example.com"), "resource", "not_allowed"),
    ("unknown person", prod("mallory@example.com"), "resource", "not_allowed"),
    (
        "someone else as principal",
        prod(principal="erin@example.com"),
        "principal",
        "principal_not_allowed",
    ),
    (
        "break glass where there is none",
        RequestDraft(ALICE, "ci-admin", "x", break_glass=True),
        "resource",
        "break_glass_not_allowed",
    ),
)


async def test_bad_input_is_refused_by_field_and_nothing_is_written(
    clearance: Clearance, database: Database
) -> None:
    await clearance.submit(prod())  # something already there, so "unchanged" means something
    before = await state_of(database)
    problems: list[str] = []
    for label, draft, field, code in BAD_DRAFTS:
        try:
            await clearance.submit(draft)
        except Refused as refused:
            if code not in {r.code for r in refused.refusals} or field not in field_errors(refused):
                problems.append(f"{label}: expected {code} on {field}, got {refused.refusals}")
        else:
            problems.append(f"{label}: was accepted")
    assert problems == []

    with pytest.raises(Refused) as refused:  # every problem is reported at once
        await clearance.submit(prod(duration="forever", justification="pls", ticket="nope"))
    assert set(field_errors(refused.value)) == {"duration", "justification", "ticket"}
    assert await state_of(database) == before


async def test_an_unknown_chat_user_is_refused(clearance: Clearance, database: Database) -> None:
    before = await state_of(database)

    def verified_email(email: str | None):  # type: ignore[no-untyped-def]
        async def lookup() -> str | None:
            return email

        return lookup

    assert (await clearance.person_for_chat("slack", "U0ALICE")).email == ALICE
    bob = await clearance.person_for_chat("teams", "aad-bob", verified_email("Bob@example.com"))
    assert bob.email == "bob@example.com"
    with pytest.raises(Refused) as refused:  # known, but inactive in the directory
        await clearance.person_for_chat("slack", "U0FRANK", verified_email("frank@example.com"))
    assert refused.value.code == "inactive"
    for lookup in (None, verified_email(None), verified_email("mallory@example.com")):
        with pytest.raises(Refused) as refused:
            await clearance.person_for_chat("slack", "U0NOBODY", lookup)
        assert refused.value.code == "unknown_person"
    for platform, chat_id in (("slack", "U0NOBODY"), ("teams", "aad-123"), ("irc", "U0ALICE")):
        with pytest.raises(Refused) as refused:
            await clearance.person_for_chat(platform, chat_id)
        assert refused.value.code == "unknown_person"
    with pytest.raises(Refused) as refused:
        await clearance.get("R-NOSUCHID")
    assert refused.value.code == "unknown_request"
    assert await state_of(database) == before
