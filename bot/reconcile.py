"""Drift reconciliation: compare managed groups with the grants in force, report, and clean up.

Used by ``clearance reconcile`` and by the daily job of ``clearance serve``. Members are
read before the grants, so a membership Clearance added while the members were read
always has a grant (or a request being provisioned) by the time the grants are read: a
reconciliation racing a grant never takes it back. Missing memberships are reported,
never re-granted: a human decides whether the grant or the group is wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.chat import Chat
from bot.connectors import Connectors, UnknownConnector
from bot.dispatcher import Dispatcher
from bot.usecases import Clearance
from engine.access_request import Status
from engine.drift import (
    REMOVAL_LIMIT,
    DriftReport,
    Holding,
    Target,
    TargetDrift,
    find_drift,
    managed_targets,
)
from engine.effects import PostDriftReport
from engine.policy import Policy
from engine.ports import ConnectorError
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from message_templates import render_json
from storage.chat_log import ChatLog
from storage.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

REPORT_TEMPLATE = "admin_drift_report"
# Requests whose membership may appear at any moment: the grant is on its way.
IN_FLIGHT = (Status.APPROVED, Status.PROVISIONING)
_IN_FLIGHT_LIMIT = 10_000


@dataclass(frozen=True)
class DriftRun:
    """One reconciliation: what was found and what became of each removal."""

    report: DriftReport
    policy: Policy
    checked_at: datetime
    dry_run: bool
    removed: frozenset[tuple[Target, str]] = frozenset()
    remove_failed: Mapping[tuple[Target, str], str] = field(default_factory=dict)

    @property
    def has_drift(self) -> bool:
        return self.report.has_drift

    @property
    def has_errors(self) -> bool:
        return bool(self.report.errors or self.remove_failed)

    def view(self) -> dict[str, Any]:
        """The report as template data (plain JSON values: it travels in an outbox row)."""
        targets = [
            self._target_view(t) for t in self.report.targets if t.has_drift or t.error is not None
        ]
        unexpected = [u for t in targets for u in t["unexpected"]]
        return {
            "policy_version": self.report.policy_version,
            "checked_ts": int(self.checked_at.timestamp()),
            "dry_run": self.dry_run,
            "targets_checked": len(self.report.targets),
            "targets": targets,
            "counts": {
                "unexpected": len(unexpected),
                "missing": sum(len(t["missing"]) for t in targets),
                "removed": sum(1 for u in unexpected if u["action"] == "removed"),
                "kept": sum(1 for u in unexpected if u["action"] == "kept"),
                "would_remove": sum(1 for u in unexpected if u["action"] == "would_remove"),
                "remove_failed": sum(1 for u in unexpected if u["action"] == "remove_failed"),
                "errors": len(self.report.errors),
            },
        }

    def _target_view(self, drift: TargetDrift) -> dict[str, Any]:
        names = {r.id: r.name for r in self.policy.resources}
        unexpected = []
        for u in drift.unexpected:
            key = (drift.target, u.member)
            if not u.remove:
                action, reason = "kept", u.reason
            elif self.dry_run:
                action, reason = "would_remove", ""
            elif key in self.remove_failed:
                action, reason = "remove_failed", self.remove_failed[key]
            else:
                action, reason = "removed", ""
            unexpected.append({"member": u.member, "action": action, "reason": reason})
        return {
            "connector": drift.target.connector,
            "group": drift.target.group,
            "resources": [{"id": rid, "name": names.get(rid, rid)} for rid in drift.resources],
            "mode": drift.mode,
            "note": drift.note,
            "error": drift.error,
            "unexpected": unexpected,
            "missing": [
                {"principal": m.principal, "request_id": m.request_id} for m in drift.missing
            ],
        }


class Reconciler:
    """Finds drift on every managed group, removes what policy allows, reports the rest."""

    def __init__(
        self,
        clearance: Clearance,
        connectors: Connectors,
        outbox: Outbox,
        chats: Sequence[Chat],
        chat_log: ChatLog,
    ) -> None:
        self.clearance = clearance
        self.connectors = connectors
        self.outbox = outbox
        self.chats = list(chats)
        self.chat_log = chat_log

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(PostDriftReport.kind, self.post_report)

    async def reconcile(
        self, dry_run: bool = False, trigger: str = "cli", removal_limit: int = REMOVAL_LIMIT
    ) -> DriftRun:
        """Check every managed group; unless ``dry_run``, remove, audit and queue the report.

        A dry run reads only: nothing is removed, audited or posted. A group that would lose
        more than ``removal_limit`` members loses none (see engine.drift).
        """
        policy = self.clearance.policy
        store = self.clearance.store
        targets = sorted(managed_targets(policy))
        before = {g.request_id: g for g in await store.active_grants()}
        listed = await asyncio.gather(*(self._members(t) for t in targets))
        after = {g.request_id: g for g in await store.active_grants()}
        opening = await store.find(IN_FLIGHT, limit=_IN_FLIGHT_LIMIT)
        checked_at = self.clearance.clock.now()

        # In force all along: must be a member. Granted meanwhile or on its way: may be.
        grants = [
            Holding(g.request_id, g.principal, g.connector, g.target_group)
            for rid, g in after.items()
            if rid in before
        ]
        in_flight = [
            Holding(g.request_id, g.principal, g.connector, g.target_group)
            for rid, g in after.items()
            if rid not in before
        ] + [Holding(r.id, r.principal, r.connector, r.target_group) for r in opening]
        members = {t: m for t, (m, _) in zip(targets, listed, strict=True) if m is not None}
        failures = {t: e for t, (_, e) in zip(targets, listed, strict=True) if e is not None}
        report = find_drift(policy, grants, members, failures, in_flight, removal_limit)
        run = DriftRun(report, policy, checked_at, dry_run)
        if dry_run:
            return run
        await self.clearance.record(*_detected(report, trigger))
        removed: set[tuple[Target, str]] = set()
        failed: dict[tuple[Target, str], str] = {}
        for target, member in report.removals:
            error = await self._remove(target, member)
            if error is None:
                removed.add((target, member))
            else:
                failed[(target, member)] = error
        run = DriftRun(report, policy, checked_at, dry_run, frozenset(removed), failed)
        await self.clearance.record(*_removals(run, trigger), _summary(run, trigger))
        if run.has_drift or run.has_errors:
            await self._queue_report(run)
        return run

    async def daily(self) -> DriftRun | None:
        """The scheduled run: once per UTC day however many replicas fire it."""
        now = self.clearance.clock.now()
        if not await self.chat_log.first_time(f"drift-reconcile:{now.date().isoformat()}", now):
            return None
        try:
            run = await self.reconcile(trigger="schedule")
        except Exception:  # the scheduler keeps running; tomorrow's check tries again
            log.exception("drift reconciliation failed")
            return None
        log.info(
            "drift reconciliation: %d finding(s), %d removed, %d error(s)",
            run.report.findings,
            len(run.removed),
            len(run.report.errors) + len(run.remove_failed),
        )
        return run

    async def post_report(self, item: OutboxItem[PostDriftReport]) -> None:
        """Outbox handler: post a queued drift report to every admin channel."""
        data = dict(item.effect.report)
        for chat in self.chats:
            await chat.post_admins(render_json(chat.platform, REPORT_TEMPLATE, data))

    # --- steps --------------------------------------------------------------------------

    async def _members(self, target: Target) -> tuple[list[str] | None, str | None]:
        """The target's members, or why they could not be listed (never raises)."""
        try:
            connector = self.connectors.get(target.connector)
            return list(await connector.members(target.group)), None
        except Exception as exc:  # one failing system must not hide drift on the others
            log.warning("drift: cannot list %s: %s", target, exc)
            return None, _describe(exc)

    async def _remove(self, target: Target, member: str) -> str | None:
        try:
            await self.connectors.get(target.connector).revoke(member, target.group)
        except Exception as exc:  # reported and audited; the other removals go on
            log.warning("drift: cannot remove %s from %s: %s", member, target, exc)
            return _describe(exc)
        return None

    async def _queue_report(self, run: DriftRun) -> None:
        # No request owns a drift report, so it is an effect of its own rather than NotifyAdmins.
        await self.outbox.add(PostDriftReport(run.view()), self.clearance.clock.now())
        self.clearance.wake()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, UnknownConnector | ConnectorError) and text:
        # Their messages say what is wrong in the operator's terms ("needs SLACK_BOT_TOKEN",
        # "unreachable: …"); the class name would only be noise in the report.
        return text[:500]
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]


def _resource_id(drift: TargetDrift) -> str | None:
    return drift.resources[0] if len(drift.resources) == 1 else None


def _detected(report: DriftReport, trigger: str) -> list[AuditRecord]:
    records = []
    for t in report.targets:
        where = {
            "connector": t.target.connector,
            "group": t.target.group,
            "resources": list(t.resources),
            "mode": t.mode,
            "trigger": trigger,
        }
        for u in t.unexpected:
            details = {**where, "finding": "unexpected_member", "member": u.member}
            details["action"] = "remove" if u.remove else "report"
            if u.reason:
                details["reason"] = u.reason
            records.append(_record("drift_detected", None, _resource_id(t), report, details))
        for m in t.missing:
            details = {**where, "finding": "missing_membership", "principal": m.principal}
            records.append(
                _record("drift_detected", m.request_id, _resource_id(t), report, details)
            )
        if t.error is not None:
            details = {**where, "error": t.error}
            records.append(_record("drift_check_failed", None, _resource_id(t), report, details))
    return records


def _removals(run: DriftRun, trigger: str) -> list[AuditRecord]:
    by_target = {t.target: t for t in run.report.targets}
    records = []
    for target, member in run.report.removals:
        details: dict[str, Any] = {
            "connector": target.connector,
            "group": target.group,
            "member": member,
            "resources": list(by_target[target].resources),
            "trigger": trigger,
        }
        resource_id = _resource_id(by_target[target])
        if (target, member) in run.removed:
            records.append(_record("drift_revoked", None, resource_id, run.report, details))
        else:
            details["error"] = run.remove_failed.get((target, member), "")
            records.append(_record("drift_revoke_failed", None, resource_id, run.report, details))
    return records


def _summary(run: DriftRun, trigger: str) -> AuditRecord:
    counts = run.view()["counts"]
    details = {"trigger": trigger, "targets": len(run.report.targets), **counts}
    return _record("drift_reconciled", None, None, run.report, details)


def _record(
    action: str,
    request_id: str | None,
    resource_id: str | None,
    report: DriftReport,
    details: dict[str, Any],
) -> AuditRecord:
    return AuditRecord(
        action=action,
        actor=SYSTEM_ACTOR,
        request_id=request_id,
        resource_id=resource_id,
        policy_version=report.policy_version,
        details=details,
    )
