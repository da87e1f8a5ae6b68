"""What review messages show, as plain data for the templates (no wording here): a
reviewer's card, the form that asks for a reason, the admins' posts and the home's
"to review" list. The same data feeds the Slack and the Teams templates.

Names come from the directory; times are Unix timestamps, as in ``bot.presentation``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from bot.presentation import RISK_EMOJI, person_view, request_view
from bot.review_reports import campaign_view as report_view
from bot.reviews import HISTORY, Reviews
from engine.directory import Person
from engine.policy import Policy
from engine.refusals import Refusal, Refused
from engine.review_deadlines import summary
from engine.review_items import Campaign, ReviewItem, Verdict
from engine.reviews import may_review, needs_reason

# Undecided items one card lists; the rest are counted and come up as these are decided.
# Ten keep a Slack message well under its 50 blocks (two blocks an item) and leave a
# Teams card room under its size limit for the longest names and justifications.
CARD_ITEMS = 10
# The templates of review cards: logged when sent and updated in place after each decision.
REVIEW_CARDS = ("review_card", "break_glass_review")
# Campaigns the home lists under "to review" (the Slack home has room for 100 blocks).
HOME_REVIEWS = 5
# Groups a "revocations held" post lists by name.
HELD_GROUPS = 20


def card_template(campaign: Campaign) -> str:
    """The template of a reviewer's card: a campaign's item list, or the one question of a
    break-glass review."""
    return "break_glass_review" if campaign.kind == "break_glass" else "review_card"


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def campaign_view(campaign: Campaign, counts: Mapping[str, int], now: datetime) -> dict[str, Any]:
    """One campaign and how far it got, as the chat messages show it: the figures of
    ``review_reports.campaign_view`` plus what the cards need (a Revoke counts as revoked
    as soon as it is decided; its removal is the campaign's business, not the card's)."""
    return {
        **report_view(campaign, dict(counts), now),
        "break_glass": campaign.kind == "break_glass",
        "is_open": campaign.is_open,
        "request_id": campaign.request_id or "",
        "on_no_decision": campaign.on_no_decision,
        "max_revocations": campaign.max_revocations,
        "revoked": counts.get("revoked", 0) + counts.get("revoking", 0),
        "kept": counts.get("kept", 0),
    }


def item_view(
    item: ReviewItem,
    campaign: Campaign,
    policy: Policy,
    people: Mapping[str, Person],
    viewer: str | None,
) -> dict[str, Any]:
    """One item as a card shows it to ``viewer`` (None: the admins' view, no buttons)."""
    access = item.access
    return {
        "index": item.index,
        "holder": person_view(access.principal, people),
        "resource": {
            "id": access.resource_id,
            "name": _resource_name(policy, access.resource_id),
            "risk": item.risk,
            "risk_emoji": RISK_EMOJI.get(item.risk, ":white_circle:"),
        },
        "holding": access.holding,
        "connector": access.connector,
        "group": access.group,
        "request_id": access.request_id or "",
        "since_ts": _ts(access.since),
        "approvers": [person_view(a, people) for a in access.approvers],
        "justification": access.justification,
        "requests_90d": access.requests_90d,
        "history_days": HISTORY.days,
        "reviewers": [person_view(r, people) for r in item.reviewers],
        "role": item.role,
        "verdict": item.verdict or "",
        "reason": item.reason,
        "decided_by": person_view(item.decided_by, people) if item.decided_by else None,
        "decided_ts": _ts(item.decided_at),
        "defaulted": item.defaulted,
        "outcome": item.outcome,
        "can_decide": bool(viewer) and may_review(campaign, item, viewer or "", policy),
        "keep_needs_reason": needs_reason(item, "keep", campaign.kind),
    }


def _resource_name(policy: Policy, resource_id: str) -> str:
    resource = policy.resource(resource_id)
    return resource.name if resource else resource_id


def _emails(items: Iterable[ReviewItem]) -> set[str]:
    """Everyone an item view names."""
    found: set[str] = set()
    for item in items:
        found |= {item.access.principal, *item.access.approvers, *item.reviewers}
        if item.decided_by:
            found.add(item.decided_by)
    return found


def _card_items(
    campaign: Campaign,
    mine: Sequence[ReviewItem],
    others: Sequence[ReviewItem],
    viewer: str,
    policy: Policy,
) -> tuple[list[ReviewItem], list[ReviewItem]]:
    """The items waiting for ``viewer`` on their card, and those the card lists."""
    waiting = [i for i in mine if may_review(campaign, i, viewer, policy)]
    shown = list(mine or others) if campaign.kind == "break_glass" else waiting[:CARD_ITEMS]
    return waiting, shown


def card_data(
    campaign: Campaign,
    counts: Mapping[str, int],
    mine: Sequence[ReviewItem],
    viewer: str,
    policy: Policy,
    people: Mapping[str, Person],
    now: datetime,
    nudge: bool = False,
    others: Sequence[ReviewItem] = (),
) -> dict[str, Any]:
    """A reviewer's card: their undecided items (the first CARD_ITEMS), how many of
    theirs (``mine``: every item they review) are decided, and whether Keep all remaining
    applies. A break-glass card shows its one item whatever became of it (``others``: the
    campaign's items, when the viewer no longer reviews it), so that it says how it ended.
    """
    viewer = viewer.lower()
    waiting, shown = _card_items(campaign, mine, others, viewer, policy)
    return {
        "c": campaign_view(campaign, counts, now),
        "viewer": person_view(viewer, people),
        "mine": len(mine),
        "mine_decided": sum(1 for i in mine if not i.undecided),
        "items": [item_view(i, campaign, policy, people, viewer) for i in shown],
        "open": len(waiting),
        "more": len(waiting) - min(len(waiting), CARD_ITEMS),
        # Keep all remaining keeps what needs no reason: low and medium risk.
        "bulk": sum(1 for i in waiting if not needs_reason(i, "keep", campaign.kind)),
        "nudge": nudge,
    }


def reason_form_data(
    campaign: Campaign,
    counts: Mapping[str, int],
    item: ReviewItem,
    verdict: Verdict,
    policy: Policy,
    people: Mapping[str, Person],
    now: datetime,
    errors: Mapping[str, str] | None = None,
    prefill: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The form that asks a reviewer why they keep or revoke an item."""
    return {
        "c": campaign_view(campaign, counts, now),
        "item": item_view(item, campaign, policy, people, None),
        "verdict": verdict,
        "errors": dict(errors or {}),
        "prefill": dict(prefill or {}),
    }


def admin_data(
    campaign: Campaign,
    items: Sequence[ReviewItem],
    policy: Policy,
    people: Mapping[str, Person],
    now: datetime,
    index: int | None = None,
) -> dict[str, Any]:
    """What the admins hear of a campaign: its summary (figures per reviewer, who did not
    decide), the revocations held per group, who it was escalated to, and the item
    ``index`` names (a break-glass verdict)."""
    chosen = next((i for i in items if i.index == index), None)
    escalated_to = sorted({r for i in items if i.role == "escalated" for r in i.reviewers})
    return {
        "c": campaign_view(campaign, Counter[str](i.outcome for i in items), now),
        "summary": _summary(items, people),
        "held_groups": _held(items, policy),
        "escalated_to": [person_view(r, people) for r in escalated_to],
        "escalated_items": sum(1 for i in items if i.role == "escalated" and i.undecided),
        "item": item_view(chosen, campaign, policy, people, None) if chosen else None,
    }


def _summary(items: Sequence[ReviewItem], people: Mapping[str, Person]) -> dict[str, Any]:
    figures = summary(items)
    rows = cast(list[dict[str, Any]], figures["reviewers"])
    silent = cast(list[str], figures["silent"])
    # What the due time decided of each reviewer's items (the engine counts their own).
    defaulted = Counter(r for i in items if i.defaulted for r in i.reviewers)
    per: list[dict[str, Any]] = []
    for row in rows:
        email = str(row["reviewer"])
        kept, revoked = int(row["kept"]), int(row["revoked"])
        per.append(
            {
                "person": person_view(email, people),
                "decided": kept + revoked,
                "kept": kept,
                "revoked": revoked,
                "defaulted": defaulted[email],
            }
        )
    return {
        **{k: figures[k] for k in ("items", "decided", "kept", "revoked", "defaulted")},
        **{k: figures[k] for k in ("undecided", "held")},
        "reviewers": per,
        "silent": [person_view(e, people) for e in silent],
    }


def _held(items: Sequence[ReviewItem], policy: Policy) -> list[dict[str, Any]]:
    """The groups whose default revocations wait for an admin, most held first."""
    groups: dict[tuple[str, str], list[ReviewItem]] = {}
    for item in items:
        if item.outcome == "held":
            groups.setdefault((item.access.connector, item.access.group), []).append(item)
    out = []
    for (connector, group), held in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        names = sorted({_resource_name(policy, i.access.resource_id) for i in held})
        out.append({"connector": connector, "group": group, "count": len(held), "resources": names})
    return out


def to_review_data(
    found: Sequence[tuple[Campaign, int]], counts: Sequence[Mapping[str, int]], now: datetime
) -> dict[str, Any]:
    """The home's "to review": open campaigns with items waiting for the viewer (``found``,
    soonest due first, one more than HOME_REVIEWS when there are more) and how many."""
    return {
        "campaigns": [
            {"c": campaign_view(c, n_counts, now), "waiting": n}
            for (c, n), n_counts in zip(found[:HOME_REVIEWS], counts, strict=False)
        ],
        "truncated": len(found) > HOME_REVIEWS,
    }


class ReviewViews:
    """Loads what review messages show from the review store and the directory."""

    def __init__(self, reviews: Reviews) -> None:
        self.reviews = reviews
        self.clearance = reviews.clearance
        self.store = reviews.store

    async def people(self, emails: Iterable[str]) -> dict[str, Person]:
        wanted = sorted({e.lower() for e in emails if e})
        found = await asyncio.gather(*(self.clearance.directory.person(e) for e in wanted))
        return {p.email.lower(): p for p in found if p is not None}

    async def card(self, campaign: Campaign, viewer: str, nudge: bool = False) -> dict[str, Any]:
        """A reviewer's card as it is now (``card_data``)."""
        viewer = viewer.lower()
        policy = self.clearance.policy
        mine = await self.store.items(campaign.id, reviewer=viewer)
        others = await self.store.items(campaign.id) if campaign.kind == "break_glass" else []
        _, shown = _card_items(campaign, mine, others, viewer, policy)
        # Only the people the card names are looked up, not every holder of 300 items.
        people = await self.people({viewer, *_emails(shown)})
        counts = await self.store.progress(campaign.id)
        now = self.clearance.clock.now()
        data = card_data(campaign, counts, mine, viewer, policy, people, now, nudge, others)
        return await self._with_request(campaign, data, people)

    async def card_for(self, campaign_id: str, viewer: str) -> tuple[Campaign, dict[str, Any]]:
        """A reviewer's card by campaign id, for someone it was meant for; refused to anyone
        else, who learns nothing about the campaign."""
        campaign = await self.reviews.get(campaign_id)
        data = await self.card(campaign, viewer)
        if not data["mine"]:
            raise Refused(Refusal("not_reviewer"))
        return campaign, data

    async def reason_form(
        self,
        campaign: Campaign,
        item: ReviewItem,
        verdict: Verdict,
        errors: Mapping[str, str],
        prefill: Mapping[str, str],
    ) -> dict[str, Any]:
        people = await self.people(_emails([item]))
        counts = await self.store.progress(campaign.id)
        data = reason_form_data(
            campaign,
            counts,
            item,
            verdict,
            self.clearance.policy,
            people,
            self.clearance.clock.now(),
            errors,
            prefill,
        )
        return await self._with_request(campaign, data, people)

    async def admin(self, campaign: Campaign, index: int | None) -> dict[str, Any]:
        items = await self.store.items(campaign.id)
        people = await self.people(_emails(items))
        now = self.clearance.clock.now()
        data = admin_data(campaign, items, self.clearance.policy, people, now, index)
        return await self._with_request(campaign, data, people)

    async def to_review(self, email: str) -> dict[str, Any]:
        found = await self.store.to_review(email.lower(), limit=HOME_REVIEWS + 1)
        counts = [await self.store.progress(c.id) for c, _ in found[:HOME_REVIEWS]]
        return to_review_data(found, counts, self.clearance.clock.now())

    async def _with_request(
        self, campaign: Campaign, data: dict[str, Any], people: dict[str, Person]
    ) -> dict[str, Any]:
        """A break-glass review's messages also show the request under review (``r``), as
        the request templates show one."""
        if campaign.kind != "break_glass":
            return data
        request = await self.clearance.get(campaign.request_id or "")
        people.update(await self.people({request.requester, request.ended_by or ""}))
        now = self.clearance.clock.now()
        return {**data, "r": request_view(request, self.clearance.policy, people, now)}
