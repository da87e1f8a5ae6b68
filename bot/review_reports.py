"""What access reviews look like from outside: progress for the admins and the CLI, and the
evidence export an auditor asks for. Reads only; the use cases are in ``bot.reviews``.

Every surface (the admin commands, ``clearance review status`` and ``export``) takes its
figures from here, so a campaign reads the same wherever it is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.audit import canonical_time
from engine.refusals import Refusal, Refused
from engine.review_deadlines import summary
from engine.review_items import Campaign, CampaignKind, ReviewItem, verdict_name
from storage.repository import Store
from storage.reviews import ReviewStore

# What happened to the access of a campaign item, by its outcome. A break-glass review
# judges access that was already used and removes nothing: its rows say what became of
# the request instead (active, expired, revoked).
ACCESS_AFTER = {
    "undecided": "undecided",
    "kept": "kept",
    "revoking": "removal_pending",
    "revoked": "revoked",
    "held": "held",
}

# The export's columns, in order (CSV header; the keys of each JSON line).
EVIDENCE_COLUMNS = (
    "campaign",
    "review",
    "kind",
    "item",
    "principal",
    "resource",
    "risk",
    "holding",
    "request_id",
    "held_since",
    "reviewers",
    "reviewer_role",
    "decision",
    "flagged",
    "reason",
    "decided_by",
    "decided_at",
    "defaulted",
    "access",
    "policy_version",
    "campaign_started_at",
    "campaign_due_at",
    "campaign_status",
)


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def _iso(value: datetime | None) -> str | None:
    # The audit export's format: an item's decided_at reads as its decision event's time.
    return canonical_time(value) if value else None


def campaign_view(campaign: Campaign, counts: dict[str, int], now: datetime) -> dict[str, Any]:
    """One campaign and its items per state, as template data. ``counts`` is items per
    outcome (``ReviewStore.progress``). Decided counts every item with a verdict that is
    not waiting for an admin (held)."""
    total = sum(counts.values())
    undecided = counts.get("undecided", 0)
    held = counts.get("held", 0)
    return {
        "campaign": campaign.id,
        "review": campaign.review_id,
        "kind": campaign.kind,
        "status": campaign.status,
        "request_id": campaign.request_id,
        "started_by": campaign.started_by,
        "started_ts": _ts(campaign.started_at),
        "due_ts": _ts(campaign.due_at),
        "closed_ts": _ts(campaign.closed_at),
        "overdue": campaign.is_open and now >= campaign.due_at,
        "escalated": campaign.escalated,
        "total": total,
        "decided": total - undecided - held,
        "undecided": undecided,
        "held": held,
        "removal_pending": counts.get("revoking", 0),
        "revoked": counts.get("revoked", 0),
    }


class ReviewReports:
    """Progress and evidence of campaigns, from the review store (and the request store, for
    what became of break-glass access)."""

    def __init__(self, store: ReviewStore, requests: Store) -> None:
        self.store = store
        self.requests = requests

    async def campaign(self, campaign_id: str) -> Campaign:
        campaign = await self.store.campaign(campaign_id.strip().upper())
        if campaign is None:
            raise Refused(Refusal("unknown_campaign", campaign=campaign_id))
        return campaign

    async def open_campaigns(
        self, now: datetime, kind: CampaignKind | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The campaigns still open (held ones too), newest first, each with its progress."""
        found = await self.store.campaigns(open_only=True, limit=limit, kind=kind)
        return [campaign_view(c, await self.store.progress(c.id), now) for c in found]

    async def break_glass_waiting(self, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
        """Break-glass reviews nobody decided yet, oldest due first, with whose emergency
        access each is and who is asked."""
        found = await self.store.campaigns(open_only=True, limit=limit, kind="break_glass")
        out = []
        for campaign in sorted(found, key=lambda c: c.due_at):
            items = await self.store.items(campaign.id, ["undecided"])
            if not items:
                continue
            item = items[0]
            out.append(
                {
                    **campaign_view(campaign, {"undecided": len(items)}, now),
                    "principal": item.access.principal,
                    "resource": item.access.resource_id,
                    "reviewers": list(item.reviewers),
                }
            )
        return out

    async def detail(self, campaign_id: str, now: datetime) -> dict[str, Any]:
        """One campaign with its progress per reviewer and who has not decided anything."""
        campaign = await self.campaign(campaign_id)
        items = await self.store.items(campaign.id)
        counts: dict[str, int] = {}
        for item in items:
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
        figures = summary(items)
        return {
            **campaign_view(campaign, counts, now),
            "reviewers": figures["reviewers"],
            "silent": figures["silent"],
            "unassigned": sum(1 for i in items if not i.reviewers),
        }

    async def evidence(self, campaign_id: str) -> tuple[Campaign, list[dict[str, Any]]]:
        """One row per item of the campaign, in item order: who held what, who reviewed it,
        the decision with its reason, and what happened to the access."""
        campaign = await self.campaign(campaign_id)
        items = await self.store.items(campaign.id)
        statuses: dict[str, str] = {}
        if campaign.kind == "break_glass":
            ids = [i.access.request_id for i in items if i.access.request_id]
            found = await self.requests.find(ids=ids, limit=len(ids) or 1)
            statuses = {r.id: r.status.value for r in found}
        return campaign, [_evidence_row(campaign, item, statuses) for item in items]


def _evidence_row(campaign: Campaign, item: ReviewItem, statuses: dict[str, str]) -> dict[str, Any]:
    access = item.access
    decision = verdict_name(item.verdict, campaign.kind) if item.verdict else None
    if campaign.kind == "break_glass":
        after = statuses.get(access.request_id or "", "unknown")
    else:
        after = ACCESS_AFTER[item.outcome]
    row: dict[str, Any] = {
        "campaign": campaign.id,
        "review": campaign.review_id,
        "kind": campaign.kind,
        "item": item.index,
        "principal": access.principal,
        "resource": access.resource_id,
        "risk": item.risk,
        "holding": access.holding,
        "request_id": access.request_id,
        "held_since": _iso(access.since),
        "reviewers": list(item.reviewers),
        "reviewer_role": item.role,
        "decision": decision,
        # "Not justified" emergency access is what an auditor must not miss.
        "flagged": decision == "not_justified",
        "reason": item.reason,
        "decided_by": item.decided_by,
        "decided_at": _iso(item.decided_at),
        "defaulted": item.defaulted,
        "access": after,
        "policy_version": campaign.policy_version,
        "campaign_started_at": _iso(campaign.started_at),
        "campaign_due_at": _iso(campaign.due_at),
        "campaign_status": campaign.status,
    }
    return row


def csv_cells(row: dict[str, Any]) -> dict[str, str]:
    """A row as CSV cells: reviewers joined by spaces, booleans as true/false, none empty."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Sequence) and not isinstance(value, str):
            return " ".join(str(v) for v in value)
        return str(value)

    return {k: cell(v) for k, v in row.items()}
