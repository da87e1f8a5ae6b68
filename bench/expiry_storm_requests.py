"""The storm's starting state: N ACTIVE requests expiring at one instant, written in bulk."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from bench.expiry_storm_world import email
from engine import access, lifecycle
from engine.audit import GENESIS_HASH, canonical_details, seal
from engine.directory import DirectorySnapshot, Person
from engine.drafts import RequestDraft
from engine.policy import Policy
from storage.database import Database
from storage.repository import _values
from storage.tables import AuditHeadRow, AuditRow, GrantRow, OutboxRow, RequestRow

GRANT_LENGTH = timedelta(hours=1)


async def seed_requests(url: str, policy: Policy, n: int, expires_at: datetime) -> None:
    """N ACTIVE requests expiring at ``expires_at``: the rows Store.save would have written.

    Each request goes through the real engine (submit -> provisioning_started ->
    grant_confirmed, at ``expires_at - GRANT_LENGTH``); its rows go in with bulk INSERTs
    (Store.save, a transaction per step, would take minutes for 10,000). The work already
    done (provision, notifications) is marked done; only the expiry timers are pending.
    The audit records are sealed onto the chain exactly as storage.audit_log.append does;
    the end-of-run chain verification would catch any difference.
    """
    at = expires_at - GRANT_LENGTH
    people = {email(i): Person(email=email(i), name=f"Storm {i}") for i in range(n)}
    directory = DirectorySnapshot(people=people)
    requests, grants, outbox, records = [], [], [], []
    for i in range(n):
        draft = RequestDraft(email(i), "storm", "Expiry storm benchmark grant")
        submitted = lifecycle.submit(draft, policy, directory, at, f"R-S{i:07d}")
        started = access.provisioning_started(
            submitted.request.evolve(version=1), at, policy.version
        )
        granted = access.grant_confirmed(started.request.evolve(version=2), at, policy.version, ())
        request = granted.request
        assert request.expires_at == expires_at
        requests.append(_values(request, at) | {"version": 3})
        grants.append(
            {
                "request_id": request.id,
                "principal": request.principal,
                "connector": request.connector,
                "target_group": request.target_group,
                "granted_at": at,
                "expires_at": expires_at,
            }
        )
        for transition in (submitted, started, granted):
            records.extend(transition.audit)
            for effect in transition.effects:
                row = {  # as storage.repository.outbox_row builds it
                    "kind": effect.kind,
                    "request_id": effect.request_id,
                    "payload": json.dumps(effect.payload(), default=str),
                    "due_at": effect.due_at or at,
                    "created_at": at,
                    "status": "pending",
                    "attempts": 0,
                    "completed_at": None,
                }
                if effect.kind != "expire":
                    row |= {"status": "done", "attempts": 1, "completed_at": at}
                outbox.append(row)
    database = Database(url)
    try:
        async with database.transaction() as session:
            head = (
                await session.execute(
                    select(AuditHeadRow.__table__)
                    .where(AuditHeadRow.__table__.c.id == 1)
                    .with_for_update()
                )
            ).one_or_none()
            seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            audit = []
            for r in records:
                event = seal(
                    seq,
                    prev,
                    at,
                    r.action,
                    r.actor,
                    r.request_id,
                    r.resource_id,
                    r.policy_version,
                    r.details,
                )
                audit.append(
                    {
                        "seq": event.seq,
                        "at": event.at,
                        "action": event.action,
                        "actor": event.actor,
                        "request_id": event.request_id,
                        "resource_id": event.resource_id,
                        "policy_version": event.policy_version,
                        "details": canonical_details(event.details),
                        "prev_hash": event.prev_hash,
                        "hash": event.hash,
                    }
                )
                seq, prev = event.seq, event.hash
            for model, rows in (
                (RequestRow, requests),
                (GrantRow, grants),
                (OutboxRow, outbox),
                (AuditRow, audit),
            ):
                for start in range(0, len(rows), 5000):
                    await session.execute(insert(model.__table__), rows[start : start + 5000])
            table = AuditHeadRow.__table__
            if head is None:
                await session.execute(insert(table).values(id=1, seq=seq, hash=prev))
            else:
                await session.execute(
                    update(table).where(table.c.id == 1).values(seq=seq, hash=prev)
                )
    finally:
        await database.dispose()
