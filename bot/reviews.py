"""Access-review use cases: start a campaign from live data, decide items, and the outbox
handlers that move campaigns on (the due time, a revocation, a break-glass review).

Each reads like the request use cases: load, snapshot what the engine needs, ask the
engine, save state + audit + outbox in one transaction; a lost race decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta

from bot.connectors import Connectors, UnknownConnector
from bot.dispatcher import Dispatcher, Permanent
from bot.usecases import Clearance, snapshot_for
from engine import review_deadlines, reviews
from engine.directory import DirectorySnapshot, Person
from engine.effects import ReviewDueAt, RevokeReviewed, StartBreakGlassReview
from engine.policy import Policy, Resource
from engine.ports import ConnectorError
from engine.refusals import Refusal, Refused
from engine.review_items import (
    Campaign,
    HeldAccess,
    Holding,
    ReviewItem,
    ReviewTransition,
    Verdict,
)
from engine.review_policy import ReviewPolicy
from engine.rules import Manager
from engine.transitions import SYSTEM_ACTOR
from message_templates import refusal_text
from storage.locks import NamedLocks
from storage.outbox import OutboxItem
from storage.reviews import CampaignExists, ReviewStore, StaleReview

log = logging.getLogger("clearance.reviews")

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_ATTEMPTS = 5
HISTORY = timedelta(days=90)  # "how many times they requested it" looks this far back
# An escalated break-glass review stays open until decided; its admins are asked once.
_BREAK_GLASS_ESCALATION = timedelta(days=7)


def new_campaign_id() -> str:
    """A short id admins can type: ``C-7K3QX9MD``."""
    return "C-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class Reviews:
    """The access-review use cases over the review store, the request store and connectors."""

    def __init__(
        self,
        clearance: Clearance,
        store: ReviewStore,
        connectors: Connectors,
        new_id: Callable[[], str] = new_campaign_id,
    ) -> None:
        self.clearance = clearance
        self.store = store
        self.connectors = connectors
        self.new_id = new_id
        self.locks = NamedLocks(store.database)

    def register(self, dispatcher: Dispatcher, revoke_alert_every: int) -> None:
        dispatcher.register(ReviewDueAt.kind, self.on_due, max_attempts=None)
        # A revocation is retried until it lands, like an expiry; the admins hear of it.
        dispatcher.register(
            RevokeReviewed.kind, self.on_revoke, max_attempts=None, alert_every=revoke_alert_every
        )
        dispatcher.register(StartBreakGlassReview.kind, self.on_break_glass, max_attempts=None)

    # --- starting -----------------------------------------------------------------------

    async def start(self, review_id: str, actor: str) -> Campaign:
        """Open a campaign of a policy review now (its cadence, or an admin)."""
        policy = self.clearance.policy
        review = policy.review(review_id)
        if review is None:
            known = ", ".join(r.id for r in policy.document.reviews)
            raise Refused(Refusal("unknown_review", review=review_id, known=known))
        if (running := await self.store.open_campaign_of(review.id)) is not None:
            raise Refused(Refusal("review_already_open", review=review.id, campaign=running.id))
        now = self.clearance.clock.now()
        held = await self._held(review, policy, now)
        directory = await self._directory(review, policy, held)
        transition = reviews.start(
            review, held, policy, directory, now, self.new_id(), actor.lower()
        )
        try:
            await self._save(transition, None)
        except CampaignExists:
            running = await self.store.open_campaign_of(review.id)
            raise Refused(
                Refusal(
                    "review_already_open", review=review.id, campaign=running.id if running else ""
                )
            ) from None
        return transition.campaign

    async def start_due(self) -> list[Campaign]:
        """Start each review whose cadence (``every:``) says it is time (the scheduled job).

        Every replica runs this; a lock per review makes the check and the start one step
        across them, so a campaign that closes at once (nothing to review) still is not
        started twice. A review that cannot start now (a connector is down) is tried again
        on the next run; the others go ahead."""
        started: list[Campaign] = []
        for review in self.clearance.policy.document.reviews:
            if review.every is None:
                continue
            async with self.locks.hold(f"review-cadence:{review.id}"):
                latest = await self.store.latest_campaign_of(review.id)
                last = latest.started_at if latest is not None else None
                if not reviews.cadence_due(review, last, self.clearance.clock.now()):
                    continue
                try:
                    started.append(await self.start(review.id, SYSTEM_ACTOR))
                except Refused as exc:
                    if exc.code != "review_already_open":  # open already: nothing to do
                        why = refusal_text(exc)
                        log.warning("review %s not started on its cadence: %s", review.id, why)
        return started

    async def _held(self, review: ReviewPolicy, policy: Policy, now: datetime) -> list[HeldAccess]:
        """Who holds each covered resource now: grants from the store, members from the
        connector (a member with a grant is reviewed as the grant)."""
        counts = await self.clearance.store.request_counts(now - HISTORY)
        found: dict[tuple[str, str], HeldAccess] = {}
        for resource in policy.resources:
            if review.covers(resource.id, resource.risk):
                for access in await self._held_of(resource, review, now, counts):
                    found.setdefault((access.principal, access.resource_id), access)
        return list(found.values())

    async def _held_of(
        self,
        resource: Resource,
        review: ReviewPolicy,
        now: datetime,
        counts: Mapping[tuple[str, str], int],
    ) -> list[HeldAccess]:
        target = resource.grant
        store = self.clearance.store
        grants = {g.principal: g for g in await store.active_grants(target.connector, target.group)}
        ids = [g.request_id for g in grants.values()]
        requests = {r.id: r for r in await store.find(ids=ids, limit=len(ids) or 1)}

        def held(principal: str, holding: Holding) -> HeldAccess:
            grant = grants.get(principal) if holding == "grant" else None
            request = requests.get(grant.request_id) if grant else None
            return HeldAccess(
                principal=principal,
                resource_id=resource.id,
                connector=target.connector,
                group=target.group,
                holding=holding,
                request_id=grant.request_id if grant else None,
                since=grant.granted_at if grant else None,
                approvers=tuple(d.approver for d in request.approvals()) if request else (),
                justification=request.justification if request else "",
                requests_90d=counts.get((principal, resource.id), 0),
            )

        out: list[HeldAccess] = []
        if "grants" in review.scope:
            old_enough = now - review.min_age
            out += [
                held(p, "grant")
                for p, g in grants.items()
                if g.granted_at is None or g.granted_at <= old_enough
            ]
        if "members" in review.scope:
            for member in await self._members(target.connector, target.group):
                principal = member.lower()
                if principal in grants:
                    out.append(held(principal, "grant"))
                elif principal in resource.baseline_members:
                    out.append(held(principal, "baseline"))
                else:
                    out.append(held(principal, "member"))
        return out

    async def _members(self, connector: str, group: str) -> list[str]:
        try:
            return list(await self.connectors.get(connector).members(group))
        except (UnknownConnector, ConnectorError) as exc:
            raise Refused(
                Refusal("connector_unreachable", connector=connector, error=str(exc))
            ) from None

    async def _directory(
        self, review: ReviewPolicy | None, policy: Policy, held: Iterable[HeldAccess]
    ) -> DirectorySnapshot:
        """What assigning reviewers needs: the holders (and their managers when a rule
        names them), and each resource's owners, groups and admins."""
        held = list(held)
        holders = sorted({h.principal for h in held})
        # Each holder is looked up once, each resource's people once: a campaign of
        # thousands of holders over dozens of resources must not ask for every pair.
        directory = self.clearance.directory
        parts = [await snapshot_for(directory, policy, None, *holders)] + [
            await snapshot_for(directory, policy, policy.resource(rid))
            for rid in sorted({h.resource_id for h in held})
        ]
        people: dict[str, Person] = {}
        groups: dict[str, tuple[str, ...]] = {}
        for part in parts:
            people.update(part.people)
            groups.update(part.groups)
        rules = (review.reviewer, review.fallback) if review else ()
        if any(isinstance(r, Manager) for r in rules):
            managers = {p.manager for p in people.values() if p.manager and p.manager not in people}
            found = await asyncio.gather(*(self.clearance.directory.person(m) for m in managers))
            people.update({p.email: p for p in found if p is not None})
        return DirectorySnapshot(people=people, groups=groups)

    # --- deciding -----------------------------------------------------------------------

    async def get(self, campaign_id: str) -> Campaign:
        campaign = await self.store.campaign(campaign_id.upper())
        if campaign is None:
            raise Refused(Refusal("unknown_campaign", campaign=campaign_id))
        return campaign

    async def item(self, campaign_id: str, index: int) -> ReviewItem:
        item = await self.store.item(campaign_id.upper(), index)
        if item is None:
            raise Refused(Refusal("unknown_review_item", campaign=campaign_id, item=index))
        return item

    async def decide(
        self, campaign_id: str, index: int, actor: str, verdict: Verdict, reason: str = ""
    ) -> ReviewItem:
        """A reviewer's Keep / Revoke (Justified / Not justified) of one item."""

        async def step(campaign: Campaign) -> ReviewTransition:
            item = await self.item(campaign.id, index)
            left = await self.store.count(campaign.id, "undecided") - (1 if item.undecided else 0)
            return reviews.decide(
                campaign,
                item,
                actor,
                verdict,
                reason,
                self.clearance.clock.now(),
                self.clearance.policy,
                left,
            )

        transition = await self._apply(campaign_id, step)
        return transition.items[0] if transition.items else await self.item(campaign_id, index)

    async def keep_all(self, campaign_id: str, actor: str) -> int:
        """Keep all remaining low and medium risk items of this reviewer; how many."""

        async def step(campaign: Campaign) -> ReviewTransition:
            mine = await self.store.items(campaign.id, ["undecided"], reviewer=actor.lower())
            left = await self.store.count(campaign.id, "undecided")
            return reviews.keep_all(
                campaign, mine, actor, self.clearance.clock.now(), self.clearance.policy, left
            )

        return len((await self._apply(campaign_id, step)).items)

    async def confirm(self, campaign_id: str, actor: str) -> Campaign:
        """An admin lets the held default revocations go ahead."""

        async def step(campaign: Campaign) -> ReviewTransition:
            held = await self.store.items(campaign.id, ["held"])
            return review_deadlines.confirm(
                campaign, held, actor, self.clearance.clock.now(), self.clearance.policy
            )

        return (await self._apply(campaign_id, step)).campaign

    # --- outbox handlers ----------------------------------------------------------------

    async def on_due(self, job: OutboxItem[ReviewDueAt]) -> None:
        policy = self.clearance.policy

        async def step(campaign: Campaign) -> ReviewTransition:
            undecided = await self.store.items(campaign.id, ["undecided"])
            review = policy.review(campaign.review_id)
            directory = await self._directory(review, policy, (i.access for i in undecided))
            again = review.due if review else _BREAK_GLASS_ESCALATION
            return review_deadlines.due(
                campaign, undecided, self.clearance.clock.now(), policy, directory, again
            )

        await self._apply(job.effect.campaign_id, step)

    async def on_revoke(self, job: OutboxItem[RevokeReviewed]) -> None:
        """Carry out a Revoke: a grant ends through the request's own path (its removal is
        an ordinary deprovision job); a membership without one is removed here."""
        campaign = await self.get(job.effect.campaign_id)
        item = await self.item(campaign.id, job.effect.index)
        if item.outcome != "revoking":
            return  # done already (a retry after a crash), or held for an admin
        access = item.access
        if access.holding == "grant" and access.request_id:
            reviewer = item.decided_by or SYSTEM_ACTOR
            await self.clearance.revoke_for_review(
                access.request_id, campaign.id, reviewer, item.reason
            )
        else:
            try:
                connector = self.connectors.get(access.connector)
            except UnknownConnector as exc:
                raise Permanent(str(exc)) from None
            await connector.revoke(access.principal, access.group)

        async def step(latest: Campaign) -> ReviewTransition:
            current = await self.item(latest.id, item.index)
            return review_deadlines.revoked(latest, current, self.clearance.clock.now())

        await self._apply(campaign.id, step)

    async def on_break_glass(self, job: OutboxItem[StartBreakGlassReview]) -> None:
        """Emergency access started: open its review (once, however often this runs)."""
        request_id = job.effect.request_id
        if await self.store.campaign_for_request(request_id) is not None:
            return
        request = await self.clearance.get(request_id)
        policy = self.clearance.policy
        resource = policy.resource(request.resource_id)
        if resource is None or resource.break_glass is None:
            raise Permanent(
                f"{request.resource_id} no longer allows break-glass; review it by hand"
            )
        access = HeldAccess.of_grant(request)
        directory = await self._directory(None, policy, (access,))
        transition = reviews.start_break_glass(
            access,
            policy,
            directory,
            self.clearance.clock.now(),
            self.new_id(),
            resource.break_glass.review_within,
        )
        try:
            await self._save(transition, None)
        except CampaignExists:
            return  # another replica opened it first

    # --- the one way campaigns change ---------------------------------------------------

    async def _apply(
        self, campaign_id: str, step: Callable[[Campaign], Awaitable[ReviewTransition]]
    ) -> ReviewTransition:
        for _ in range(_ATTEMPTS):
            campaign = await self.get(campaign_id)
            transition = await step(campaign)
            if transition.campaign == campaign and not transition.items and not transition.audit:
                return transition
            try:
                await self._save(transition, campaign)
            except StaleReview:
                continue
            await self._settle(transition)
            return transition
        raise Refused(Refusal("busy", what="review"))

    async def _settle(self, transition: ReviewTransition) -> None:
        """Two reviewers deciding the last two items at once each saw one left: whoever
        finds none left closes the campaign."""
        campaign = transition.campaign
        if campaign.status != "open" or transition.created:
            return
        if await self.store.count(campaign.id, "undecided") == 0:
            latest = await self.get(campaign.id)
            closing = review_deadlines.settle(latest, self.clearance.clock.now())
            if closing.campaign != latest:
                with contextlib.suppress(StaleReview):  # someone else closed it
                    await self._save(closing, latest)

    async def _save(self, transition: ReviewTransition, loaded: Campaign | None) -> None:
        await self.store.save(transition, loaded, self.clearance.clock.now())
        self.clearance.wake()
