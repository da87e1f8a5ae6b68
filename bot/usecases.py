"""Use cases: each reads like the story it implements, and is the one call a handler makes.

load the request -> learn who the actor is -> ask the engine -> save state, audit and
effects in one transaction -> wake the dispatcher -> return what the surface shows.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime

from bot import logs
from bot.callbacks import with_callback
from bot.clock import Clock
from bot.policy_source import PolicySource
from engine import access, lifecycle
from engine.access_request import AccessRequest, Outcome, Status
from engine.approvers import Explanation, explain
from engine.directory import DirectorySnapshot, Person, lookups_for, workload_person
from engine.drafts import RequestDraft
from engine.policy import Policy, Resource
from engine.ports import Directory
from engine.refusals import Refusal, Refused
from engine.transitions import AuditRecord, Transition
from engine.workload_policy import is_workload, workload_id
from storage.audit_log import AuditLog
from storage.locks import NamedLocks
from storage.repository import StaleRequest, Store

# Refusals of Extend that mean "ask for the time through approval": surfaces then open the
# request form, prefilled, instead of showing the refusal.
EXTEND_NEEDS_REQUEST = ("needs_approval", "extension_cap")
_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: ids are read aloud and typed
_SAVE_ATTEMPTS = 5


def new_request_id() -> str:
    """A short, unguessable id people can type in admin commands: ``R-7K3QX9MD``."""
    return "R-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


async def snapshot_for(
    directory: Directory, policy: Policy, resource: Resource | None, *emails: str
) -> DirectorySnapshot:
    """Fetch from the live directory what deciding about ``resource`` needs, in parallel."""
    people: dict[str, Person] = {}
    groups: dict[str, tuple[str, ...]] = {}

    async def fetch(email: str) -> None:
        email = email.lower()
        if is_workload(email):
            # A workload is known from the policy, not the directory.
            if (workload := policy.workload(workload_id(email))) is not None:
                people[email] = workload_person(workload)
            return
        if email not in people:
            person = await directory.person(email)
            if person is not None:
                people[email] = person

    async def fetch_group(name: str) -> None:
        members = await directory.group_members(name)
        if members is not None:
            groups[name] = tuple(m.lower() for m in members)
            await asyncio.gather(*(fetch(m) for m in groups[name]))

    await asyncio.gather(*(fetch(e) for e in emails))
    if resource is not None:
        lookups = lookups_for(resource, policy)
        await asyncio.gather(
            *(fetch_group(g) for g in lookups.groups), *(fetch(p) for p in lookups.people)
        )
        # Walk the manager chain of each requester as far as the stage rules look.
        for email in emails[:1]:
            current: str | None = email.lower()
            for _ in range(lookups.manager_depth):
                person = people.get(current) if current else None
                current = person.manager if person else None
                if current is None:
                    break
                await fetch(current)
    return DirectorySnapshot(people=people, groups=groups)


class Clearance:
    """The application's use cases, over the store, the directory and the current policy."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        policies: PolicySource,
        directory: Directory,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
        new_id: Callable[[], str] = new_request_id,
    ) -> None:
        self.store = store
        self.audit = audit
        self.policies = policies
        self.directory = directory
        self.clock = clock
        self.wake = wake
        self.new_id = new_id
        self.locks = NamedLocks(store.database)

    @property
    def policy(self) -> Policy:
        return self.policies.current

    # --- identities ---------------------------------------------------------------------

    async def person_for_chat(
        self,
        platform: str,
        chat_id: str,
        email_lookup: Callable[[], Awaitable[str | None]] | None = None,
    ) -> Person:
        """The directory person behind a verified chat identity; refuses unknown people.

        The chat id is matched first; otherwise the platform's verified email for that
        id (``email_lookup``) is looked up in the directory.
        """
        person = await self.directory.person_by_chat_id(platform, chat_id)
        if person is None and email_lookup is not None:
            email = await email_lookup()
            if email:
                person = await self.directory.person(email)
        if person is None:
            raise Refused(Refusal("unknown_person"))
        if not person.active:
            raise Refused(Refusal("inactive"))
        # From here on, what this turn logs names who is acting.
        logs.bind(actor=person.email)
        return person

    # --- requests -----------------------------------------------------------------------

    async def submit(self, draft: RequestDraft) -> AccessRequest:
        """Create a request from a filled-in form; raises Refused with field-level errors."""
        policy = self.policy
        resource = policy.resource(draft.resource_id)
        directory = await snapshot_for(self.directory, policy, resource, draft.requester)
        async with self._recent_break_glass(draft, resource) as recent:
            for _ in range(_SAVE_ATTEMPTS):
                now = self.clock.now()
                transition = lifecycle.submit(draft, policy, directory, now, self.new_id(), recent)
                try:
                    return await self._save(transition, now, None)
                except StaleRequest:  # an id collision: draw another
                    continue
        raise Refused(Refusal("busy"))

    @asynccontextmanager
    async def _recent_break_glass(
        self, draft: RequestDraft, resource: Resource | None
    ) -> AsyncIterator[int]:
        """The requester's break-glass requests for the resource within its limit's window:
        a fact for the engine's rate guard (looked up only when there is a limit to apply).
        It holds until the request is saved, so two asks at once cannot both slip under the
        limit: the second counts the first (a named lock, across replicas on PostgreSQL)."""
        rule = resource.break_glass if resource else None
        if not draft.break_glass or resource is None or rule is None or rule.limit is None:
            yield 0
            return
        async with self.locks.hold(f"break-glass:{draft.requester.lower()}:{resource.id}"):
            since = self.clock.now() - rule.limit.window
            yield await self.store.break_glass_count(draft.requester, resource.id, since)

    async def decide(
        self,
        request_id: str,
        actor: str,
        outcome: Outcome,
        reason: str = "",
        expected_stage: int | None = None,
    ) -> AccessRequest:
        """An approver approves or denies the current stage."""

        async def step(request: AccessRequest, now: datetime) -> Transition:
            policy = self.policy
            directory = await snapshot_for(
                self.directory,
                policy,
                policy.resource(request.resource_id),
                request.requester,
                actor,
            )
            return lifecycle.decide(
                request, policy, directory, actor, outcome, now, reason, expected_stage
            )

        return (await self._apply(request_id, step)).request

    async def cancel(self, request_id: str, actor: str) -> AccessRequest:
        """The requester withdraws their request."""
        version = self.policy.version
        return (
            await self._apply_sync(
                request_id, lambda r, now: lifecycle.cancel(r, actor, now, version)
            )
        ).request

    async def revoke(self, request_id: str, actor: str, reason: str = "") -> AccessRequest:
        """End access early: the requester's "I'm done", or an admin's revoke."""
        policy = self.policy
        return (
            await self._apply_sync(
                request_id, lambda r, now: access.revoke(r, policy, actor, reason, now)
            )
        ).request

    async def extend(self, request_id: str, actor: str) -> AccessRequest:
        """The requester's Extend: more time without approvers where the resource allows it.

        Refused with ``needs_approval`` or ``extension_cap`` when more time must be asked
        for as a new request.
        """
        policy = self.policy
        return (
            await self._apply_sync(request_id, lambda r, now: access.extend(r, policy, actor, now))
        ).request

    async def revoke_for_review(
        self, request_id: str, campaign_id: str, reviewer: str, reason: str
    ) -> AccessRequest:
        """An access review's Revoke of a grant: the access ends with the review as reason."""
        version = self.policy.version
        return (
            await self._apply_sync(
                request_id,
                lambda r, now: access.revoke_for_review(
                    r, campaign_id, reviewer, reason, now, version
                ),
            )
        ).request

    async def explain(self, requester: str, resource_id: str) -> Explanation:
        """Who would approve, stage by stage, if ``requester`` asked for ``resource_id`` now."""
        policy = self.policy
        resource = policy.resource(resource_id)
        if resource is None:
            known = ", ".join(r.id for r in policy.resources)
            raise Refused(Refusal("unknown_resource", resource=resource_id, known=known))
        directory = await snapshot_for(self.directory, policy, resource, requester)
        return explain(requester, resource, policy, directory, self.clock.now())

    async def get(self, request_id: str) -> AccessRequest:
        request = await self.store.load(request_id)
        if request is None:
            raise Refused(Refusal("unknown_request", request=request_id))
        return request

    # --- timers and fulfilment (called by dispatcher handlers) ---------------------------

    async def time_out(self, request_id: str) -> Transition:
        version = self.policy.version
        return await self._apply_sync(
            request_id, lambda r, now: lifecycle.time_out(r, now, version)
        )

    async def expire(self, request_id: str) -> Transition:
        version = self.policy.version
        return await self._apply_sync(request_id, lambda r, now: access.expire(r, now, version))

    async def start_provisioning(self, request_id: str) -> Transition:
        version = self.policy.version
        return await self._apply_sync(
            request_id, lambda r, now: access.provisioning_started(r, now, version)
        )

    async def confirm_grant(self, request_id: str) -> Transition:
        policy = self.policy

        def step(request: AccessRequest, now: datetime) -> Transition:
            resource = policy.resource(request.resource_id)
            reminders = resource.reminders if resource else ()
            return access.grant_confirmed(request, now, policy.version, reminders)

        return await self._apply_sync(request_id, step)

    async def fail_grant(self, request_id: str, error: str, uncertain: bool = True) -> Transition:
        """The grant could not be made; ``uncertain`` when it may have landed anyway."""
        version = self.policy.version
        return await self._apply_sync(
            request_id, lambda r, now: access.grant_failed(r, error, now, version, uncertain)
        )

    async def confirm_removal(self, request_id: str) -> Transition:
        version = self.policy.version
        return await self._apply_sync(
            request_id, lambda r, now: access.deprovision_confirmed(r, now, version)
        )

    async def record(self, *records: AuditRecord) -> None:
        """Audit something that is not a request transition (admin command, policy load)."""
        await self.audit.record(records, self.clock.now())

    # --- the one way state changes -------------------------------------------------------

    async def _apply_sync(
        self, request_id: str, step: Callable[[AccessRequest, datetime], Transition]
    ) -> Transition:
        async def async_step(request: AccessRequest, now: datetime) -> Transition:
            return step(request, now)

        return await self._apply(request_id, async_step)

    async def _apply(self, request_id: str, step: _AsyncStep) -> Transition:
        """Load, transition, save under the version check; a lost race decides again, afresh.

        This is how two approvers clicking at once, a double click or a platform retry
        yield exactly one transition: the loser re-runs the engine and gets its refusal.
        """
        for _ in range(_SAVE_ATTEMPTS):
            request = await self.get(request_id)
            now = self.clock.now()
            transition = await step(request, now)
            if transition.request is request and not transition.effects and not transition.audit:
                return transition
            try:
                saved = await self._save(transition, now, request.status)
            except StaleRequest:
                continue
            return replace(transition, request=saved)
        raise Refused(Refusal("busy", what="request"))

    async def _save(
        self, transition: Transition, now: datetime, before: Status | None
    ) -> AccessRequest:
        saved = await self.store.save(with_callback(transition, before, self.policy), now)
        self.wake()
        return saved


_AsyncStep = Callable[[AccessRequest, datetime], Awaitable[Transition]]
