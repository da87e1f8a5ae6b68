"""Admin commands typed in the private admin channel: parse, authorize, run, audit.

Only people in ``admins.users`` may run them, and only in the admin channel the policy
names. Every attempt, allowed or refused, is audited. The result is data for the
``admin_reply`` template of whichever chat platform the command came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.notifier import Notifier
from bot.review_reports import ReviewReports
from bot.reviews import Reviews
from bot.usecases import Clearance
from engine.access_request import Status
from engine.policy_loading import PolicyError
from engine.refusals import Refusal, Refused
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from message_templates import refusal_text, wording

_MENTION = re.compile(r"^\s*(<@[A-Z0-9]+>|<at>[^<]*</at>)\s*")
_LIST_LIMIT = 15


@dataclass
class AdminReply:
    """What the admin sees, as template data."""

    title: str
    lines: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    footer: str = ""

    def data(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "lines": self.lines,
            "requests": self.requests,
            "events": self.events,
            "footer": self.footer,
        }


def parse(text: str) -> tuple[str, list[str]]:
    """``@Clearance revoke R-1 reason words`` -> ("revoke", ["R-1", "reason words"])."""
    text = _MENTION.sub("", text or "").strip()
    while _MENTION.match(text):
        text = _MENTION.sub("", text).strip()
    if not text:
        return "help", []
    command, _, rest = text.partition(" ")
    command = command.lower()
    rest = rest.strip()
    if command == "revoke":
        request_id, _, reason = rest.partition(" ")
        return command, [a for a in (request_id.upper(), reason.strip()) if a]
    return command, [a.upper() if a.lower().startswith("r-") else a for a in rest.split()]


class AdminCommands:
    """Runs admin commands for a verified actor in a known channel."""

    def __init__(self, clearance: Clearance, notifier: Notifier, reviews: Reviews) -> None:
        self.clearance = clearance
        self.notifier = notifier
        self.reviews = reviews
        self.reports = ReviewReports(reviews.store, clearance.store)

    async def run(self, actor: str, in_admin_channel: bool, text: str) -> AdminReply:
        command, args = parse(text)
        policy = self.clearance.policy
        allowed = in_admin_channel and policy.is_admin(actor)
        await self._audit(actor, command, args, allowed)
        if not in_admin_channel:
            return AdminReply(_say("not_here_title"), [_say("not_here")])
        if not policy.is_admin(actor):
            return AdminReply(_say("not_allowed_title"), [_say("not_allowed", actor=actor)])
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            return AdminReply(
                _say("unknown_title"), [_say("unknown", command=command), *help_lines()]
            )
        try:
            reply: AdminReply = await handler(actor, args)
        except Refused as exc:
            return AdminReply(_say("refused_title"), [refusal_text(exc)])
        return reply

    async def _audit(self, actor: str, command: str, args: list[str], allowed: bool) -> None:
        await self.clearance.record(
            AuditRecord(
                action="admin_command",
                actor=actor,
                request_id=args[0] if args and args[0].startswith("R-") else None,
                resource_id=None,
                policy_version=self.clearance.policy.version,
                details={"command": command, "args": args, "allowed": allowed},
            )
        )

    async def _cmd_help(self, _actor: str, _args: list[str]) -> AdminReply:
        return AdminReply(_say("help_title"), help_lines())

    async def _list(
        self, name: str, statuses: list[Status], lines: list[str] | None = None
    ) -> AdminReply:
        found = await self.clearance.store.find(statuses, limit=_LIST_LIMIT + 1)
        views = [await self.notifier.view(r, None) for r in found[:_LIST_LIMIT]]
        more = _say("list_more", limit=_LIST_LIMIT) if len(found) > _LIST_LIMIT else ""
        empty = [] if views else [_say(f"{name}_empty")]
        return AdminReply(_say(f"{name}_title"), [*(lines or []), *empty], views, footer=more)

    async def _cmd_pending(self, _actor: str, _args: list[str]) -> AdminReply:
        # Emergency access is granted before anyone looks at it; its review stays on this
        # list until someone says whether it was justified.
        waiting = await self.reports.break_glass_waiting(self.clearance.clock.now())
        lines = [_say("pending_break_glass", count=len(waiting))] if waiting else []
        lines += [_say("break_glass_line", c=c) for c in waiting[:_LIST_LIMIT]]
        statuses = [Status.PENDING, Status.APPROVED, Status.PROVISIONING]
        return await self._list("pending", statuses, lines)

    async def _cmd_active(self, _actor: str, _args: list[str]) -> AdminReply:
        return await self._list("active", [Status.ACTIVE])

    async def _cmd_show(self, _actor: str, args: list[str]) -> AdminReply:
        request = await self.clearance.get(_one(args, "show <request>"))
        return AdminReply(
            _say("show_title", request=request.id),
            requests=[await self.notifier.view(request, None)],
        )

    async def _cmd_revoke(self, actor: str, args: list[str]) -> AdminReply:
        if len(args) < 2:
            return AdminReply(_say("usage_title"), [_say("revoke_usage")])
        request = await self.clearance.revoke(args[0], actor, args[1])
        return AdminReply(
            _say("revoked_title", request=request.id),
            [_say("revoked", request=request.id)],
            [await self.notifier.view(request, None)],
        )

    async def _cmd_audit(self, _actor: str, args: list[str]) -> AdminReply:
        request_id = _one(args, "audit <request>")
        await self.clearance.get(request_id)
        events = [
            {
                "seq": e.seq,
                "ts": int(e.at.timestamp()),
                "action": e.action,
                "actor": e.actor,
                "details_text": json.dumps(dict(e.details), ensure_ascii=False, sort_keys=True),
            }
            async for e in self.clearance.audit.events(request_id=request_id)
        ]
        shown = events[-40:]
        more = len(events) > len(shown)
        footer = _say("audit_more", shown=len(shown), total=len(events)) if more else ""
        return AdminReply(_say("audit_title", request=request_id), events=shown, footer=footer)

    async def _cmd_reviews(self, _actor: str, _args: list[str]) -> AdminReply:
        running = await self.reports.open_campaigns(self.clearance.clock.now())
        lines = [_say("campaign_line", c=c) for c in running] or [_say("reviews_empty")]
        return AdminReply(_say("reviews_title"), lines)

    async def _cmd_review(self, actor: str, args: list[str]) -> AdminReply:
        action, target = (args[0].lower(), args[1]) if len(args) >= 2 else ("", "")
        handler = {
            "start": self._review_start,
            "show": self._review_show,
            "confirm": self._review_confirm,
        }.get(action)
        if handler is None:
            raise Refused(Refusal("usage", usage=_say("review_usage")))
        return await handler(actor, target)

    async def _review_start(self, actor: str, review_id: str) -> AdminReply:
        campaign = await self.reviews.start(review_id, actor)
        view = await self.reports.detail(campaign.id, self.clearance.clock.now())
        reviewers = len(view["reviewers"])
        return AdminReply(
            _say("review_started_title", campaign=campaign.id),
            [_say("review_started", c=view, reviewers=reviewers)],
        )

    async def _review_show(self, _actor: str, campaign_id: str) -> AdminReply:
        view = await self.reports.detail(campaign_id, self.clearance.clock.now())
        lines = [_say("review_status", c=view), _say("review_figures", c=view)]
        lines += [_say("review_reviewer", r=r) for r in view["reviewers"]]
        if view["silent"]:
            lines.append(_say("review_silent", people=view["silent"]))
        if view["unassigned"]:
            lines.append(_say("review_unassigned", count=view["unassigned"]))
        return AdminReply(_say("review_show_title", c=view), lines)

    async def _review_confirm(self, actor: str, campaign_id: str) -> AdminReply:
        held = (await self.reports.detail(campaign_id, self.clearance.clock.now()))["held"]
        campaign = await self.reviews.confirm(campaign_id, actor)
        return AdminReply(
            _say("review_confirmed_title", campaign=campaign.id),
            [_say("review_confirmed", campaign=campaign.id, count=held)],
        )

    async def _cmd_policy(self, _actor: str, _args: list[str]) -> AdminReply:
        policy = self.clearance.policy
        lines = [
            _say("policy_version", version=policy.version),
            policy.summary(),
            _say("policy_file", source=policy.source),
        ]
        lines += [
            _say("policy_resource", id=r.id, name=r.name, risk=r.risk)
            for r in policy.resources[:30]
        ]
        return AdminReply(_say("policy_title"), lines)

    async def _cmd_reload(self, actor: str, _args: list[str]) -> AdminReply:
        old = self.clearance.policy
        try:
            new, _ = self.clearance.policies.reload()
        except PolicyError as exc:
            shown = [str(p) for p in exc.problems[:20]]
            more = len(exc.problems) - len(shown)
            return AdminReply(
                _say("reload_refused_title"),
                [*shown, *([_say("reload_more", more=more)] if more > 0 else [])],
                footer=_say("reload_unchanged", version=old.version[:12]),
            )
        await self.clearance.record(
            AuditRecord(
                action="policy_loaded",
                actor=actor,
                request_id=None,
                resource_id=None,
                policy_version=new.version,
                details={
                    "source": new.source,
                    "previous": old.version,
                    "by": actor or SYSTEM_ACTOR,
                },
            )
        )
        change = _say("reloaded", old=old.version[:12], new=new.version[:12])
        return AdminReply(_say("reloaded_title"), [new.summary(), change])


def _one(args: list[str], usage: str) -> str:
    if not args:
        raise Refused(Refusal("usage", usage=usage))
    return args[0]


def _say(phrase: str, **params: object) -> str:
    return wording("admin", phrase, **params)


def help_lines() -> list[str]:
    """The admin commands and what each does, one per line."""
    return _say("help").splitlines()
