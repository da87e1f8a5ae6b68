"""The audit hash chain: a sealed chain verifies, and any edit, deletion or move is caught."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.audit import (
    GENESIS_HASH,
    AuditEvent,
    canonical_time,
    seal,
    verify_chain,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def chain(n: int = 5) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    prev_seq, prev_hash = 0, GENESIS_HASH
    for i in range(n):
        event = seal(
            prev_seq,
            prev_hash,
            T0 + timedelta(minutes=i, microseconds=i),
            ["requested", "stage_started", "approved", "fully_approved", "granted"][i % 5],
            "alice@x.com" if i % 2 else "clearance",
            f"req-{i // 3}",
            "prod-db",
            "v" * 64,
            {"stage": i, "nested": {"b": [1, 2], "a": "ü <b>"}},
        )
        events.append(event)
        prev_seq, prev_hash = event.seq, event.hash
    return events


def head(events: list[AuditEvent]) -> tuple[int, str]:
    return events[-1].seq, events[-1].hash


def test_a_sealed_chain_verifies() -> None:
    events = chain()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert len({e.hash for e in events}) == 5
    report = verify_chain(events, head(events))
    assert report.ok and report.checked == 5
    assert report.first_bad_seq is None and report.reason is None


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]).ok
    assert verify_chain([], (0, GENESIS_HASH)).ok


def test_sealing_is_deterministic_and_normalises_details() -> None:
    a = seal(0, GENESIS_HASH, T0, "x", "y", None, None, "v", {"b": 1, "a": (1, 2)})
    b = seal(0, GENESIS_HASH, T0, "x", "y", None, None, "v", {"a": [1, 2], "b": 1})
    assert a.hash == b.hash
    assert a.details == {"a": [1, 2], "b": 1}
    assert a.as_dict()["at"] == "2025-03-03T09:00:00.000000Z"


def test_the_same_instant_in_another_zone_is_the_same_event() -> None:
    events = chain(3)
    cet = timezone(timedelta(hours=1))
    moved = dataclasses.replace(events[1], at=events[1].at.astimezone(cet))
    assert verify_chain([events[0], moved, events[2]]).ok
    naive = dataclasses.replace(events[1], at=events[1].at.replace(tzinfo=None))
    assert verify_chain([events[0], naive, events[2]]).ok
    assert canonical_time(naive.at) == canonical_time(events[1].at)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("at", T0 + timedelta(minutes=2, microseconds=3)),
        ("action", "denied"),
        ("actor", "mallory@x.com"),
        ("request_id", "req-9"),
        ("request_id", None),
        ("resource_id", "other-db"),
        ("policy_version", "w" * 64),
        ("details", {"stage": 2, "nested": {"b": [1, 2], "a": "u <b>"}}),
        ("details", {"stage": 2}),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
    ],
)
def test_editing_any_field_is_detected_at_that_event(field: str, value: object) -> None:
    events = chain()
    edited = dataclasses.replace(events[2], **{field: value})
    assert edited != events[2]
    report = verify_chain([*events[:2], edited, *events[3:]], head(events))
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.checked == 2
    assert report.reason is not None and "event 3" in report.reason


@pytest.mark.parametrize(
    ("new_seq", "expected"), [(2, "duplicated"), (4, "missing"), (99, "missing")]
)
def test_editing_the_seq_is_detected_at_that_event(new_seq: int, expected: str) -> None:
    events = chain()
    edited = dataclasses.replace(events[2], seq=new_seq)
    report = verify_chain([*events[:2], edited, *events[3:]], head(events))
    assert not report.ok and report.first_bad_seq == 3
    assert report.reason is not None and expected in report.reason


def test_resealing_an_edited_event_is_caught_by_the_next_one() -> None:
    events = chain()
    e = events[2]
    forged = seal(
        2,
        e.prev_hash,
        e.at,
        e.action,
        "mallory@x.com",
        e.request_id,
        e.resource_id,
        e.policy_version,
        e.details,
    )
    report = verify_chain([*events[:2], forged, *events[3:]], head(events))
    assert not report.ok and report.first_bad_seq == 4
    assert report.reason == "event 4 does not follow event 3 (its prev_hash differs)"


def test_rewriting_the_whole_tail_is_caught_by_the_head() -> None:
    events = chain()
    rewritten = events[:2]
    for e in events[2:]:
        rewritten.append(
            seal(
                rewritten[-1].seq,
                rewritten[-1].hash,
                e.at,
                e.action,
                "mallory@x.com",
                e.request_id,
                e.resource_id,
                e.policy_version,
                e.details,
            )
        )
    assert verify_chain(rewritten).ok  # without the head, a full rewrite is self-consistent
    report = verify_chain(rewritten, head(events))
    assert not report.ok and report.first_bad_seq == 5
    assert report.reason == "the recorded head (event 5) does not match the chain"


def test_deleting_a_middle_event_is_detected() -> None:
    events = chain()
    report = verify_chain([*events[:2], *events[3:]], head(events))
    assert not report.ok
    assert report.first_bad_seq == 3 and report.checked == 2
    assert report.reason == "event 3 is missing (found 4 in its place)"


def test_deleting_the_first_event_is_detected() -> None:
    events = chain()
    report = verify_chain(events[1:], head(events))
    assert not report.ok and report.first_bad_seq == 1


def test_renumbering_after_a_deletion_is_detected() -> None:
    events = chain()
    renumbered = [*events[:2], *(dataclasses.replace(e, seq=e.seq - 1) for e in events[3:])]
    report = verify_chain(renumbered)
    assert not report.ok and report.first_bad_seq == 3


@pytest.mark.parametrize(("i", "j"), [(1, 2), (0, 4), (3, 4)])
def test_swapping_two_events_is_detected_at_the_first_moved(i: int, j: int) -> None:
    events = chain()
    swapped = list(events)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    report = verify_chain(swapped, head(events))
    assert not report.ok and report.first_bad_seq == i + 1 and report.checked == i


def test_swapping_contents_but_keeping_the_numbers_is_detected() -> None:
    events = chain()
    a, b = events[1], events[2]
    swapped = [
        events[0],
        dataclasses.replace(b, seq=2),
        dataclasses.replace(a, seq=3),
        *events[3:],
    ]
    report = verify_chain(swapped, head(events))
    assert not report.ok and report.first_bad_seq == 2


def test_a_duplicated_event_is_reported_where_it_sits() -> None:
    events = chain()
    report = verify_chain([*events[:3], events[2], *events[3:]], head(events))
    assert not report.ok
    assert report.first_bad_seq == 4  # event 3 itself is fine; the copy in place 4 is not
    assert report.reason == "event 4 is out of order or duplicated (found 3 in its place)"


@pytest.mark.parametrize("keep", [4, 1, 0])
def test_deleting_the_tail_is_detected_through_the_head(keep: int) -> None:
    events = chain()
    truncated = events[:keep]
    assert verify_chain(truncated).ok  # a truncated chain is self-consistent...
    report = verify_chain(truncated, head(events))  # ...but not with the recorded head
    assert not report.ok
    assert report.first_bad_seq == keep + 1 and report.checked == keep
    assert report.reason == (
        f"the chain ends at event {keep} but the recorded head is event 5"
        " (events were removed from the end)"
    )


def test_a_head_that_does_not_match_the_last_hash_is_detected() -> None:
    events = chain()
    report = verify_chain(events, (5, "0" * 63 + "1"))
    assert not report.ok and report.first_bad_seq == 5


def test_verify_reads_any_iterable_once() -> None:
    events = chain()
    assert verify_chain(iter(events), head(events)).ok
