"""Outbox handlers that talk to people: DMs, approval cards, the admin feed, reminders.

Every message is rendered from a template with data read fresh from the store, so a card
always shows the current state. Messages that may change later (approval cards and the
requester's confirmation) are logged and updated in place after each decision. A retried
job never sends the same message twice: each send is logged under the job's id (the
sending itself is ``bot.delivery``, shared with the review notifier).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.chat import Chat
from bot.delivery import Delivery
from bot.dispatcher import Dispatcher
from bot.presentation import History, history_of, person_view, request_view
from bot.usecases import Clearance
from engine.access import reminder_due
from engine.access_request import AccessRequest
from engine.directory import Person, workload_person
from engine.durations import parse_duration
from engine.effects import (
    Effect,
    NotifyAdmins,
    NotifyApprovers,
    NotifyPerson,
    NudgeAt,
    RefreshCards,
    RemindAt,
)
from engine.lifecycle import nudge_due
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from engine.workload_policy import is_workload, workload_id
from storage.chat_log import ChatLog, SentMessage
from storage.outbox import OutboxItem

LIVE_TEMPLATES = ("approval_card", "request_submitted")


@dataclass(frozen=True)
class _Shown:
    """What every message of one job shows about its request, looked up once per job."""

    request: AccessRequest
    people: dict[str, Person]
    history: History  # the requester's earlier requests for the same resource


class Notifier:
    """Turns notify effects into messages on every configured chat platform."""

    def __init__(self, clearance: Clearance, chats: Sequence[Chat], chat_log: ChatLog) -> None:
        self.clearance = clearance
        self.delivery = Delivery(chats, chat_log, clearance.directory, clearance.clock)
        self.chats = self.delivery.chats

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(NotifyPerson.kind, self.notify)
        dispatcher.register(NotifyApprovers.kind, self.notify_approvers)
        dispatcher.register(NotifyAdmins.kind, self.notify_admins)
        dispatcher.register(RefreshCards.kind, self.refresh_cards)
        dispatcher.register(RemindAt.kind, self.remind)
        dispatcher.register(NudgeAt.kind, self.nudge)

    # --- data ---------------------------------------------------------------------------

    async def people(self, request: AccessRequest, *more: str) -> dict[str, Person]:
        emails = {request.requester, *more}
        emails |= {d.approver for d in request.decisions}
        for stage in request.stages[-1:]:
            emails |= set(stage.approvers)
        if request.ended_by:
            emails.add(request.ended_by)
        found = await asyncio.gather(*(self.clearance.directory.person(e) for e in emails))
        people = {p.email: p for p in found if p is not None}
        requester = people.get(request.requester)
        if is_workload(request.requester):
            # A workload's "manager" is its owner (policy, not directory).
            workload = self.clearance.policy.workload(workload_id(request.requester))
            requester = workload_person(workload) if workload else None
        if requester and requester.manager and requester.manager not in people:
            manager = await self.clearance.directory.person(requester.manager)
            if manager:
                people[manager.email] = manager
        return people

    async def view(self, request: AccessRequest, viewer: str | None) -> dict[str, Any]:
        return self._view(await self._shown(request), viewer)

    async def _shown(self, request: AccessRequest) -> _Shown:
        people = await self.people(request)
        theirs = await self.clearance.store.find(requester=request.requester, limit=200)
        return _Shown(request, people, history_of(request, theirs, self.clearance.clock.now()))

    def _view(self, shown: _Shown, viewer: str | None) -> dict[str, Any]:
        return request_view(
            shown.request,
            self.clearance.policy,
            shown.people,
            self.clearance.clock.now(),
            viewer,
            shown.history,
        )

    # --- handlers -----------------------------------------------------------------------

    async def notify(self, item: OutboxItem[NotifyPerson]) -> None:
        effect = item.effect
        shown = await self._shown(await self.clearance.get(effect.request_id))
        await self._send(item, shown, effect.email, effect.template, dict(effect.context))

    async def notify_approvers(self, item: OutboxItem[NotifyApprovers]) -> None:
        request = await self.clearance.get(item.effect.request_id)
        stage = request.stage
        if stage is None or stage.index != item.effect.stage:
            return  # decided or moved on before we got here: nobody should be asked now
        shown = await self._shown(request)
        for approver in stage.approvers:
            await self._send(item, shown, approver, "approval_card", {}, stage.index)

    async def notify_admins(self, item: OutboxItem[NotifyAdmins]) -> None:
        effect = item.effect
        shown = await self._shown(await self.clearance.get(effect.request_id))
        await self._post_admins(item, shown, "admin_" + effect.template, dict(effect.context))

    async def _post_admins(
        self, item: OutboxItem[Effect], shown: _Shown, template: str, context: dict[str, Any]
    ) -> None:
        """Post to every platform's admin channel once per job, however often it is retried."""
        data = {"r": self._view(shown, None), "context": context}
        await self.delivery.admins(item.id, shown.request.id, template, data)

    async def refresh_cards(self, item: OutboxItem[RefreshCards]) -> None:
        shown = await self._shown(await self.clearance.get(item.effect.request_id))

        async def data_for(sent: SentMessage) -> dict[str, Any]:
            return {"r": self._view(shown, sent.recipient)}

        await self.delivery.refresh(shown.request.id, LIVE_TEMPLATES, data_for)

    async def remind(self, item: OutboxItem[RemindAt]) -> None:
        request = await self.clearance.get(item.effect.request_id)
        before = item.effect.before
        if not reminder_due(request, self.clearance.clock.now(), parse_duration(before)):
            return  # ended or extended since the reminder was planned
        shown = await self._shown(request)
        await self._send(item, shown, request.requester, "expiry_reminder", {"before": before})

    async def nudge(self, item: OutboxItem[NudgeAt]) -> None:
        """A stage still waits: remind its approvers who have not decided, tell the admins."""
        request = await self.clearance.get(item.effect.request_id)
        stage = item.effect.stage
        waiting = nudge_due(request, stage, self.clearance.clock.now())
        if not waiting:
            return  # decided, moved on or timed out since the reminder was planned
        shown = await self._shown(request)
        for approver in waiting:
            await self._send(item, shown, approver, "approval_card", {"nudge": True}, stage)
        context = {"waiting": [person_view(a, shown.people) for a in waiting]}
        await self._post_admins(item, shown, "admin_request_waiting", context)
        await self.clearance.record(
            AuditRecord(
                action="approvers_reminded",
                actor=SYSTEM_ACTOR,
                request_id=request.id,
                resource_id=request.resource_id,
                policy_version=self.clearance.policy.version,
                details={"stage": stage, "approvers": list(waiting)},
            )
        )

    # --- sending ------------------------------------------------------------------------

    async def _send(
        self,
        item: OutboxItem[Effect],
        shown: _Shown,
        email: str,
        template: str,
        context: dict[str, Any],
        stage: int | None = None,
    ) -> None:
        if is_workload(email):
            # A workload reads no messages: its owner is told of everything instead.
            workload = self.clearance.policy.workload(workload_id(email))
            if workload is None:
                return
            email = workload.owner
        data = {"r": self._view(shown, email), **context}
        reached = await self.delivery.direct(
            item.id, shown.request.id, email, template, data, stage
        )
        if not reached:
            await self._tell_admins_unreachable(shown, email, template)

    async def _tell_admins_unreachable(self, shown: _Shown, email: str, template: str) -> None:
        data = {
            "r": self._view(shown, None),
            "context": {
                "error": f"{email} could not be reached in chat ({template})",
                "kind": "notify",
                "attempts": "1",
            },
        }
        await self.delivery.alert_admins("admin_job_failed", data)
