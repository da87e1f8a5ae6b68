"""The request store: load requests, and save a transition (state + audit + outbox) in one go."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from engine.access_request import (
    AccessRequest,
    Decision,
    Exclusion,
    StageState,
    Status,
)
from engine.effects import Effect
from engine.eligibility import waiting_for
from engine.transitions import AuditRecord, Transition
from storage import audit_log
from storage.database import Database
from storage.outbox import outbox_row
from storage.tables import DecisionRow, GrantRow, RequestRow


class StaleRequest(Exception):
    """Someone else changed the request since it was loaded; reload and decide again."""


@dataclass(frozen=True)
class ActiveGrant:
    """A confirmed membership that has not been removed yet."""

    request_id: str
    principal: str
    connector: str
    target_group: str
    expires_at: datetime
    granted_at: datetime | None = None


def _stages_json(stages: Iterable[StageState]) -> str:
    return json.dumps(
        [
            {
                "index": s.index,
                "label": s.label,
                "approvers": list(s.approvers),
                "required": s.required,
                "excluded": [[e.email, e.reason] for e in s.excluded],
                "fallback": s.fallback,
                "started_at": s.started_at.isoformat() if s.started_at else None,
            }
            for s in stages
        ]
    )


def _stages(text: str) -> tuple[StageState, ...]:
    return tuple(
        StageState(
            index=s["index"],
            label=s["label"],
            approvers=tuple(s["approvers"]),
            required=s["required"],
            excluded=tuple(Exclusion(e, r) for e, r in s["excluded"]),
            fallback=s["fallback"],
            started_at=datetime.fromisoformat(s["started_at"]) if s["started_at"] else None,
        )
        for s in json.loads(text)
    )


def _values(request: AccessRequest, now: datetime) -> dict[str, Any]:
    return {
        "id": request.id,
        "requester": request.requester,
        "principal": request.principal,
        "principal_kind": request.principal_kind,
        "resource_id": request.resource_id,
        "status": request.status.value,
        "duration_seconds": int(request.duration.total_seconds()),
        "justification": request.justification,
        "ticket": request.ticket,
        "policy_version": request.policy_version,
        "approval_mode": request.approval_mode,
        "connector": request.connector,
        "target_group": request.target_group,
        "stage_count": request.stage_count,
        "stages": _stages_json(request.stages),
        "break_glass": request.break_glass,
        "break_glass_refused": request.break_glass_refused,
        "created_at": request.created_at,
        "updated_at": now,
        "pending_deadline": request.pending_deadline,
        "granted_at": request.granted_at,
        "expires_at": request.expires_at,
        "ended_at": request.ended_at,
        "deprovisioned_at": request.deprovisioned_at,
        "ended_by": request.ended_by,
        "end_reason": request.end_reason,
        "failure": request.failure,
        "self_extended_seconds": int(request.self_extended.total_seconds()),
        "origin": json.dumps(request.origin, sort_keys=True) if request.origin else None,
    }


def _request(row: RequestRow, decisions: Sequence[DecisionRow]) -> AccessRequest:
    return AccessRequest(
        id=row.id,
        requester=row.requester,
        principal=row.principal,
        principal_kind="service" if row.principal_kind == "service" else "human",
        resource_id=row.resource_id,
        duration=timedelta(seconds=row.duration_seconds),
        justification=row.justification,
        ticket=row.ticket,
        status=Status(row.status),
        policy_version=row.policy_version,
        created_at=row.created_at,
        stages=_stages(row.stages),
        stage_count=row.stage_count,
        approval_mode=(
            "auto"
            if row.approval_mode == "auto"
            else "break_glass"
            if row.approval_mode == "break_glass"
            else "stages"
        ),
        connector=row.connector,
        target_group=row.target_group,
        decisions=tuple(
            Decision(
                stage=d.stage,
                approver=d.approver,
                outcome="deny" if d.outcome == "deny" else "approve",
                at=d.at,
                reason=d.reason,
            )
            for d in sorted(decisions, key=lambda d: (d.at, d.id or 0))
        ),
        pending_deadline=row.pending_deadline,
        break_glass=row.break_glass,
        break_glass_refused=row.break_glass_refused,
        granted_at=row.granted_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        end_reason=row.end_reason,
        self_extended=timedelta(seconds=row.self_extended_seconds),
        deprovisioned_at=row.deprovisioned_at,
        failure=row.failure,
        origin=json.loads(row.origin) if row.origin else {},
        version=row.version,
    )


class Store:
    """Requests and their history. Every save is one transaction: state, audit, outbox."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def load(self, request_id: str) -> AccessRequest | None:
        async with self.database.transaction() as session:
            return await self._load(session, request_id)

    async def _load(self, session: AsyncSession, request_id: str) -> AccessRequest | None:
        # One round trip: the request with its decisions (if any) joined on.
        found = (
            await session.execute(
                select(RequestRow, DecisionRow)
                .outerjoin(DecisionRow, col(DecisionRow.request_id) == col(RequestRow.id))
                .where(col(RequestRow.id) == request_id)
            )
        ).all()
        if not found:
            return None
        return _request(found[0][0], [d for _, d in found if d is not None])

    async def save(self, transition: Transition, now: datetime) -> AccessRequest:
        """Write the new state, its decision, audit events and effects atomically.

        Raises StaleRequest when the stored version moved on since the request was loaded
        (another decision won the race); nothing is written then.
        """
        request = transition.request
        saved = request.evolve(version=request.version + 1)
        try:
            await self._write(transition, now, saved.version)
        except IntegrityError as exc:
            # A duplicate id or a second identical decision: the same race, seen by a constraint.
            raise StaleRequest(request.id) from exc
        return saved

    async def _write(self, transition: Transition, now: datetime, new_version: int) -> None:
        request = transition.request
        async with self.database.transaction() as session:
            values = _values(request, now)
            if request.version == 0:
                session.add(RequestRow(**values, version=1))
                await session.flush()
            else:
                result = await session.execute(
                    update(RequestRow)
                    .where(
                        col(RequestRow.id) == request.id, col(RequestRow.version) == request.version
                    )
                    .values(**values, version=new_version)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) != 1:
                    raise StaleRequest(request.id)
            if transition.decision is not None:
                d = transition.decision
                session.add(
                    DecisionRow(
                        request_id=request.id,
                        stage=d.stage,
                        approver=d.approver,
                        outcome=d.outcome,
                        reason=d.reason,
                        at=d.at,
                    )
                )
            await self._track_grant(session, request)
            for effect in transition.effects:
                session.add(outbox_row(effect, now))
            await audit_log.append(session, transition.audit, now)

    async def _track_grant(self, session: AsyncSession, request: AccessRequest) -> None:
        if request.granted_at is None or request.expires_at is None:
            return
        # Update in place (one statement); only the first save of a grant inserts it.
        result = await session.execute(
            update(GrantRow)
            .where(col(GrantRow.request_id) == request.id)
            .values(
                expires_at=request.expires_at,
                ended_at=request.ended_at,
                removed_at=request.deprovisioned_at,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 0:
            session.add(
                GrantRow(
                    request_id=request.id,
                    principal=request.principal,
                    connector=request.connector,
                    target_group=request.target_group,
                    granted_at=request.granted_at,
                    expires_at=request.expires_at,
                    ended_at=request.ended_at,
                    removed_at=request.deprovisioned_at,
                )
            )

    async def enqueue(
        self, effects: Iterable[Effect], now: datetime, audit: Iterable[AuditRecord] = ()
    ) -> None:
        """Queue effects that belong to no transition (alerts about failing jobs), with the
        audit records that tell of them: both are committed together or not at all."""
        async with self.database.transaction() as session:
            for effect in effects:
                session.add(outbox_row(effect, now))
            await audit_log.append(session, audit, now)

    async def find(
        self,
        statuses: Iterable[Status] | None = None,
        requester: str | None = None,
        limit: int = 200,
        ids: Iterable[str] | None = None,
    ) -> list[AccessRequest]:
        """Requests, newest first, filtered by status, requester and/or id."""
        query = select(RequestRow).order_by(col(RequestRow.created_at).desc()).limit(limit)
        if ids is not None:
            query = query.where(col(RequestRow.id).in_(list(ids)))
        if statuses is not None:
            query = query.where(col(RequestRow.status).in_([s.value for s in statuses]))
        if requester is not None:
            query = query.where(col(RequestRow.requester) == requester.lower())
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            decisions = (
                (
                    await session.execute(
                        select(DecisionRow).where(col(DecisionRow.request_id).in_(ids))
                    )
                )
                .scalars()
                .all()
            )
        by_request: dict[str, list[DecisionRow]] = {}
        for d in decisions:
            by_request.setdefault(d.request_id, []).append(d)
        return [_request(r, by_request.get(r.id, [])) for r in rows]

    async def request_counts(self, since: datetime) -> dict[tuple[str, str], int]:
        """How many requests each person made for each resource since ``since``."""
        query = (
            select(col(RequestRow.requester), col(RequestRow.resource_id), func.count())
            .where(col(RequestRow.created_at) >= since)
            .group_by(col(RequestRow.requester), col(RequestRow.resource_id))
        )
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).all()
        return {(str(who), str(what)): int(n) for who, what, n in rows}

    async def break_glass_count(self, requester: str, resource_id: str, since: datetime) -> int:
        """How many break-glass requests ``requester`` made for the resource since ``since``
        (the rate guard's count; asks the limit sent to the approvers are not among them)."""
        query = select(func.count()).where(
            col(RequestRow.requester) == requester.lower(),
            col(RequestRow.resource_id) == resource_id,
            col(RequestRow.approval_mode) == "break_glass",
            col(RequestRow.created_at) >= since,
        )
        async with self.database.transaction() as session:
            return int((await session.execute(query)).scalar_one())

    async def awaiting(self, approver: str, limit: int = 200) -> list[AccessRequest]:
        """Pending requests whose current stage this person may decide and has not yet."""
        approver = approver.lower()
        pending = await self.find([Status.PENDING], limit=limit * 5)
        return [r for r in pending if approver in waiting_for(r)][:limit]

    async def in_flight_grants(
        self, connector: str, target_group: str, principal: str
    ) -> list[str]:
        """Requests whose grant of this membership is under way (the connector may have
        added it already, and its confirmation is about to land)."""
        query = select(col(RequestRow.id)).where(
            col(RequestRow.status) == Status.PROVISIONING.value,
            col(RequestRow.connector) == connector,
            col(RequestRow.target_group) == target_group,
            col(RequestRow.principal) == principal,
        )
        async with self.database.transaction() as session:
            return list((await session.execute(query)).scalars().all())

    async def active_grants(
        self,
        connector: str | None = None,
        target_group: str | None = None,
        principal: str | None = None,
    ) -> list[ActiveGrant]:
        """Confirmed memberships still in force (not ended), optionally for one target group
        and/or one principal."""
        query = select(GrantRow).where(col(GrantRow.ended_at).is_(None))
        if connector is not None:
            query = query.where(col(GrantRow.connector) == connector)
        if target_group is not None:
            query = query.where(col(GrantRow.target_group) == target_group)
        if principal is not None:
            query = query.where(col(GrantRow.principal) == principal)
        async with self.database.transaction() as session:
            rows = (await session.execute(query)).scalars().all()
        return [
            ActiveGrant(
                r.request_id, r.principal, r.connector, r.target_group, r.expires_at, r.granted_at
            )
            for r in rows
        ]
