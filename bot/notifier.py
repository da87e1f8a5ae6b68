"""Outbox handlers that talk to people: DMs, approval cards, the admin feed, reminders.

Every message is rendered from a template with data read fresh from the store, so a card
always shows the current state. Messages that may change later (approval cards and the
requester's confirmation) are logged and updated in place after each decision. A retried
job never sends the same message twice: each send is logged under the job's id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.chat import Chat, Unreachable
from bot.dispatcher import Dispatcher
from bot.presentation import History, history_of, person_view, request_view
from bot.usecases import Clearance
from engine.access import reminder_due
from engine.access_request import AccessRequest
from engine.directory import Person
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
from message_templates import render_json
from storage.chat_log import ChatLog, SentMessage
from storage.outbox import OutboxItem

log = logging.getLogger(__name__)

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
        self.chats = {chat.platform: chat for chat in chats}
        self.chat_log = chat_log

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
        for chat in self.chats.values():
            if await self.chat_log.was_sent(item.id, chat.platform, "admins"):
                continue
            delivered = await chat.post_admins(render_json(chat.platform, template, data))
            if delivered is not None:
                await self._log(chat, shown.request, "admins", template, None, delivered, item.id)

    async def refresh_cards(self, item: OutboxItem[RefreshCards]) -> None:
        shown = await self._shown(await self.clearance.get(item.effect.request_id))
        for sent in await self.chat_log.for_request(shown.request.id, LIVE_TEMPLATES):
            chat = self.chats.get(sent.platform)
            if chat is None:
                continue
            data = {"r": self._view(shown, sent.recipient)}
            await chat.update(
                sent.channel, sent.message_id, render_json(chat.platform, sent.template, data)
            )

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
        request = shown.request
        person = await self.clearance.directory.person(email)
        reached = False
        if person is not None:
            for chat in self._chats_for(person):
                if await self.chat_log.was_sent(item.id, chat.platform, email):
                    reached = True
                    continue
                data = {"r": self._view(shown, email), **context}
                try:
                    delivered = await chat.send_direct(
                        person, render_json(chat.platform, template, data)
                    )
                except Unreachable:
                    continue
                reached = True
                await self._log(chat, request, email, template, stage, delivered, item.id)
        if not reached:
            # Never drop a message silently: the admins hear who could not be reached.
            log.warning("request %s: %s could not be reached for %s", request.id, email, template)
            await self._tell_admins_unreachable(shown, email, template)

    def _chats_for(self, person: Person) -> Iterable[Chat]:
        return [chat for chat in self.chats.values() if chat.reaches(person)]

    async def _log(
        self,
        chat: Chat,
        request: AccessRequest,
        recipient: str,
        template: str,
        stage: int | None,
        delivered: Any,
        outbox_id: int,
    ) -> None:
        await self.chat_log.add(
            SentMessage(
                request.id,
                chat.platform,
                recipient,
                template,
                stage,
                delivered.channel,
                delivered.message_id,
            ),
            outbox_id,
            self.clearance.clock.now(),
        )

    async def _tell_admins_unreachable(self, shown: _Shown, email: str, template: str) -> None:
        data = {
            "r": self._view(shown, None),
            "context": {
                "error": f"{email} could not be reached in chat ({template})",
                "kind": "notify",
                "attempts": "1",
            },
        }
        for chat in self.chats.values():
            await chat.post_admins(render_json(chat.platform, "admin_job_failed", data))
