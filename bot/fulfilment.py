"""Outbox handlers that make decisions real: grant, remove, expire, time out.

A grant is reported only after the connector confirmed it; a removal is retried until it
succeeds; membership another active grant still needs is never removed.
"""

from __future__ import annotations

import contextlib
import logging

from bot.connectors import Connectors, UnknownConnector
from bot.dispatcher import Dispatcher, Permanent
from bot.usecases import Clearance
from engine.access_request import Status
from engine.effects import (
    Deprovision,
    Effect,
    ExpireAt,
    NotifyAdmins,
    NotifyAdminsOfReview,
    Provision,
    ReviewEffect,
    RevokeReviewed,
    TimeoutAt,
)
from engine.ports import ConnectorError
from engine.refusals import Refused
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from storage.outbox import OutboxItem

log = logging.getLogger(__name__)


class Fulfilment:
    """The handlers for provision, deprovision, expire and timeout rows."""

    def __init__(self, clearance: Clearance, connectors: Connectors) -> None:
        self.clearance = clearance
        self.connectors = connectors

    def register(
        self, dispatcher: Dispatcher, grant_attempts: int, revoke_alert_every: int
    ) -> None:
        dispatcher.register(Provision.kind, self.provision, max_attempts=grant_attempts)
        dispatcher.register(
            Deprovision.kind, self.deprovision, max_attempts=None, alert_every=revoke_alert_every
        )
        dispatcher.register(
            ExpireAt.kind, self.expire, max_attempts=None, alert_every=revoke_alert_every
        )
        dispatcher.register(TimeoutAt.kind, self.time_out, max_attempts=8)

    async def provision(self, item: OutboxItem[Provision]) -> None:
        rid = item.effect.request_id
        request = await self.clearance.get(rid)
        if request.status not in (Status.APPROVED, Status.PROVISIONING):
            return  # cancelled or revoked before we got here: nothing to grant
        try:
            connector = self.connectors.get(request.connector)
        except UnknownConnector as exc:
            await self._fail_for_sure(rid, str(exc))
            raise Permanent(str(exc)) from None
        await self.clearance.start_provisioning(rid)
        try:
            await connector.grant(request.principal, request.target_group)
        except ConnectorError as exc:
            if not exc.failure.retryable:
                # The target refused (no such group or user, bad credentials): nothing
                # landed, so the request fails now with nothing to clean up.
                await self._fail_for_sure(rid, str(exc))
                raise Permanent(str(exc)) from None
            raise
        try:
            await self.clearance.confirm_grant(rid)
        except Refused:
            # Revoked while the grant was in flight: take the membership back at once.
            latest = await self.clearance.get(rid)
            if latest.status.is_final:
                if not await self._needed_elsewhere(
                    rid, request.principal, request.connector, request.target_group
                ):
                    await connector.revoke(request.principal, request.target_group)
                if latest.status is Status.REVOKED and latest.deprovisioned_at is None:
                    await self.clearance.confirm_removal(rid)

    async def _fail_for_sure(self, rid: str, error: str) -> None:
        """Fail the request before the row gives up, so on_give_up finds it failed already."""
        with contextlib.suppress(Refused):  # already ended some other way
            await self.clearance.fail_grant(rid, error, uncertain=False)

    async def deprovision(self, item: OutboxItem[Deprovision]) -> None:
        rid = item.effect.request_id
        request = await self.clearance.get(rid)
        if request.deprovisioned_at is not None:
            return
        try:
            connector = self.connectors.get(request.connector)
        except UnknownConnector as exc:
            raise Permanent(str(exc)) from None
        if not await self._needed_elsewhere(
            rid, request.principal, request.connector, request.target_group
        ):
            await connector.revoke(request.principal, request.target_group)
        await self.clearance.confirm_removal(rid)

    async def _needed_elsewhere(self, rid: str, principal: str, connector: str, group: str) -> bool:
        """Whether another grant in force, or under way, needs this membership (then only
        rid ends). A grant under way counts: its connector call may already have added the
        member, and removing it now would leave that grant active without its membership."""
        store = self.clearance.store
        others = [
            g.request_id
            for g in await store.active_grants(connector, group, principal)
            if g.request_id != rid
        ]
        others += [r for r in await store.in_flight_grants(connector, group, principal) if r != rid]
        if others:
            log.info("request %s ended; membership kept for %s", rid, others[0])
        return bool(others)

    async def expire(self, item: OutboxItem[ExpireAt]) -> None:
        try:
            await self.clearance.expire(item.effect.request_id)
        except Refused as exc:
            if exc.code not in ("not_due", "not_active"):
                raise
            # Extended, revoked or already expired: this timer has nothing left to do.

    async def time_out(self, item: OutboxItem[TimeoutAt]) -> None:
        # Refused means decided, or moved on to a later stage with its own deadline.
        with contextlib.suppress(Refused):
            await self.clearance.time_out(item.effect.request_id)

    async def on_give_up(self, item: OutboxItem[Effect], error: str, final: bool) -> None:
        """A job failed for good (grants) or keeps failing (removals): tell the admins."""
        rid = item.request_id
        effect = item.effect
        if isinstance(effect, Provision) and final and rid:
            with contextlib.suppress(Refused):  # already ended some other way
                await self.clearance.fail_grant(rid, error)
            return
        context = {"error": error[:500], "kind": item.kind, "attempts": str(item.attempts)}
        alert: Effect
        if isinstance(effect, ReviewEffect):
            # A review's revocation that keeps failing is as loud as a failing expiry.
            index = effect.index if isinstance(effect, RevokeReviewed) else None
            alert = NotifyAdminsOfReview(
                effect.campaign_id, template="review_job_failing", index=index, context=context
            )
            about: dict[str, str] = {"campaign": effect.campaign_id}
        elif rid is not None:
            removing = isinstance(effect, Deprovision | ExpireAt)
            template = "revoke_failing" if removing else "job_failed"
            alert = NotifyAdmins(rid, template=template, context=context)
            about = {}
        else:
            return
        record = AuditRecord(
            action="job_failing" if not final else "job_failed",
            actor=SYSTEM_ACTOR,
            request_id=rid,
            resource_id=None,
            policy_version=self.clearance.policy.version,
            details={**about, "kind": item.kind, "attempts": item.attempts, "error": error[:500]},
        )
        # One transaction: the admins are never told of a failure the audit trail lacks.
        await self.clearance.store.enqueue([alert], self.clearance.clock.now(), audit=[record])
