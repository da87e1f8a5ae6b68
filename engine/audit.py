"""The audit trail's hash chain: each event seals the hash of the one before it.

Editing, deleting or reordering any stored event breaks the chain at that event, and the
recorded head (last sequence number and hash) catches a truncated tail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """One sealed audit event as stored and exported."""

    seq: int
    at: datetime
    action: str
    actor: str
    request_id: str | None
    resource_id: str | None
    policy_version: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": canonical_time(self.at),
            "action": self.action,
            "actor": self.actor,
            "request_id": self.request_id,
            "resource_id": self.resource_id,
            "policy_version": self.policy_version,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def canonical_time(at: datetime) -> str:
    """UTC with microseconds: what both SQLite and PostgreSQL give back unchanged."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_details(details: Mapping[str, Any]) -> str:
    """Details as canonical JSON (sorted keys, no spaces), the exact text that is hashed."""
    return json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def event_hash(
    seq: int,
    at: datetime,
    action: str,
    actor: str,
    request_id: str | None,
    resource_id: str | None,
    policy_version: str,
    details_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 over every field of the event and the previous event's hash."""
    body = json.dumps(
        [
            seq,
            canonical_time(at),
            action,
            actor,
            request_id,
            resource_id,
            policy_version,
            details_json,
            prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def seal(
    prev_seq: int,
    prev_hash: str,
    at: datetime,
    action: str,
    actor: str,
    request_id: str | None,
    resource_id: str | None,
    policy_version: str,
    details: Mapping[str, Any],
) -> AuditEvent:
    """The next event of the chain after (prev_seq, prev_hash)."""
    details_json = canonical_details(details)
    seq = prev_seq + 1
    digest = event_hash(
        seq, at, action, actor, request_id, resource_id, policy_version, details_json, prev_hash
    )
    return AuditEvent(
        seq=seq,
        at=at,
        action=action,
        actor=actor,
        request_id=request_id,
        resource_id=resource_id,
        policy_version=policy_version,
        details=json.loads(details_json),
        prev_hash=prev_hash,
        hash=digest,
    )


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying a chain: ok, or the first event that does not fit and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(events: Iterable[AuditEvent], head: tuple[int, str] | None = None) -> ChainReport:
    """Recompute every hash in order; name the first event that was edited, removed or moved."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for event in events:
        if event.seq != expected_seq:
            what = "missing" if event.seq > expected_seq else "out of order or duplicated"
            # The event in place ``expected_seq`` is the first that does not fit; an earlier
            # seq found here (a duplicate, a move backwards) does not make that event bad.
            return ChainReport(
                False,
                checked,
                expected_seq,
                f"event {expected_seq} is {what} (found {event.seq} in its place)",
            )
        if event.prev_hash != prev_hash:
            return ChainReport(
                False,
                checked,
                event.seq,
                f"event {event.seq} does not follow event {event.seq - 1} (its prev_hash differs)",
            )
        digest = event_hash(
            event.seq,
            event.at,
            event.action,
            event.actor,
            event.request_id,
            event.resource_id,
            event.policy_version,
            canonical_details(event.details),
            event.prev_hash,
        )
        if digest != event.hash:
            return ChainReport(
                False, checked, event.seq, f"event {event.seq} was altered (hash mismatch)"
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq != checked or (checked and head_hash != prev_hash):
            first = checked + 1 if head_seq > checked else head_seq
            return ChainReport(
                False,
                checked,
                first,
                f"the chain ends at event {checked} but the recorded head is event {head_seq}"
                " (events were removed from the end)"
                if head_seq > checked
                else f"the recorded head (event {head_seq}) does not match the chain",
            )
    return ChainReport(True, checked)
