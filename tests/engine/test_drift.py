"""Drift between managed groups and grants in force, computed from plain data."""

from __future__ import annotations

from textwrap import dedent

import pytest

from engine.drift import Holding, Missing, Target, Unexpected, find_drift, managed_targets
from engine.policy import Policy
from engine.policy_loading import PolicyError, parse_policy

DB = Target("ldap", "db")
SIGN = Target("ldap", "sign")
SHARED = Target("ldap", "shared")


def policy(extra: str = "") -> Policy:
    return parse_policy(
        dedent(
            """\
            connectors:
              ldap: {type: ldap}
            resources:
              - id: db
                name: Database
                risk: low
                grant: {connector: ldap, group: db}
                duration: {default: 1h, max: 4h}
                approval: auto
              - id: sign
                name: Signing key
                risk: low
                grant: {connector: ldap, group: sign}
                duration: {default: 1h, max: 4h}
                approval: auto
                drift: revoke
                baseline_members: [Robot@Example.com]
            """
        )
        + extra
    )


def grant(rid: str, who: str, target: Target) -> Holding:
    return Holding(rid, who, target.connector, target.group)


def test_no_drift_when_members_match_grants_and_baseline() -> None:
    report = find_drift(
        policy(),
        [grant("R-1", "ann@x.com", DB), grant("R-2", "bo@x.com", SIGN)],
        {DB: ["ann@x.com"], SIGN: ["BO@x.com", "robot@example.com"]},
    )
    assert not report.has_drift and report.findings == 0 and report.errors == ()
    assert [t.target for t in report.targets] == [DB, SIGN]


def test_member_without_grant_is_reported_and_removed_only_under_revoke() -> None:
    report = find_drift(policy(), [], {DB: ["eve@x.com"], SIGN: ["eve@x.com"]})
    db, sign = report.targets
    assert db.unexpected == (Unexpected("eve@x.com", remove=False, reason="drift: report"),)
    assert sign.unexpected == (Unexpected("eve@x.com", remove=True, reason=""),)
    assert report.removals == ((SIGN, "eve@x.com"),)
    assert report.findings == 2
    assert find_drift(policy(), [grant("R-1", "Ann@X.com ", DB)], {DB: ["ann@x.COM"]}).findings == 0


def test_grant_without_membership_is_missing() -> None:
    report = find_drift(
        policy(), [grant("R-1", "ann@x.com", DB), grant("R-2", "ann@x.com", DB)], {DB: [], SIGN: []}
    )
    assert report.targets[0].missing == (Missing("ann@x.com", "R-1"), Missing("ann@x.com", "R-2"))
    assert report.removals == ()


def test_baseline_members_are_tolerated_and_never_required() -> None:
    report = find_drift(policy(), [], {DB: [], SIGN: ["robot@example.com"]})
    assert not report.has_drift


def test_in_flight_grants_may_be_members_but_are_not_required() -> None:
    flying = [grant("R-9", "new@x.com", SIGN)]
    present = find_drift(policy(), [], {DB: [], SIGN: ["new@x.com"]}, in_flight=flying)
    absent = find_drift(policy(), [], {DB: [], SIGN: []}, in_flight=flying)
    assert not present.has_drift and not absent.has_drift


def test_a_target_that_cannot_be_listed_is_an_error_not_a_verdict() -> None:
    report = find_drift(
        policy(), [grant("R-1", "ann@x.com", SIGN)], {DB: ["eve@x.com"]}, {SIGN: "unreachable"}
    )
    db, sign = report.targets
    assert sign.error == "unreachable" and sign.missing == () and sign.unexpected == ()
    assert db.unexpected and report.errors == (sign,)
    unlisted = find_drift(policy(), [], {})
    assert all(t.error for t in unlisted.targets)


SHARED_RESOURCES = """\
  - id: shared-a
    name: A
    risk: low
    grant: {connector: ldap, group: shared}
    duration: {default: 1h, max: 4h}
    approval: auto
    drift: revoke
    baseline_members: [svc@x.com]
  - id: shared-b
    name: B
    risk: low
    grant: {connector: ldap, group: shared}
    duration: {default: 1h, max: 4h}
    approval: auto
    drift: %s
"""


def test_shared_target_any_grant_covers_and_baseline_of_any_resource_counts() -> None:
    p = policy(SHARED_RESOURCES % "revoke")
    assert [r.id for r in managed_targets(p)[SHARED]] == ["shared-a", "shared-b"]
    report = find_drift(
        p,
        [grant("R-1", "ann@x.com", SHARED)],
        {DB: [], SIGN: [], SHARED: ["ann@x.com", "svc@x.com", "eve@x.com"]},
    )
    shared = report.targets[1]
    assert shared.target == SHARED and shared.resources == ("shared-a", "shared-b")
    assert shared.mode == "revoke" and shared.note == ""
    assert shared.unexpected == (Unexpected("eve@x.com", remove=True, reason=""),)


def test_shared_target_whose_resources_disagree_is_only_reported_and_says_why() -> None:
    report = find_drift(
        policy(SHARED_RESOURCES % "report"), [], {DB: [], SIGN: [], SHARED: ["eve@x.com"]}
    )
    shared = report.targets[1]
    assert shared.mode == "mixed"
    assert "shared-a say drift: revoke" in shared.note
    assert "shared-b say drift: report" in shared.note
    assert shared.unexpected[0].remove is False and "disagree" in shared.unexpected[0].reason
    assert report.removals == ()


def test_member_named_without_email_is_never_removed_by_email() -> None:
    dn = "uid=eve,ou=people,dc=example,dc=com"
    report = find_drift(policy(), [], {DB: [], SIGN: [dn, "  ", "Eve@X.com", "eve@x.com"]})
    sign = report.targets[1]
    assert [u.member for u in sign.unexpected] == ["Eve@X.com", dn]
    assert sign.unexpected[1].remove is False and "by hand" in sign.unexpected[1].reason
    assert report.removals == ((SIGN, "Eve@X.com"),)


def test_grants_on_targets_no_resource_manages_are_ignored() -> None:
    report = find_drift(policy(), [grant("R-1", "ann@x.com", Target("old", "gone"))], {DB: []})
    assert [t.target for t in report.targets] == [DB, SIGN]
    assert report.targets[0].missing == ()


def test_baseline_members_must_be_emails() -> None:
    with pytest.raises(PolicyError) as info:
        policy(
            """\
  - id: bad
    name: Bad
    risk: low
    grant: {connector: ldap, group: bad}
    duration: {default: 1h, max: 4h}
    approval: auto
    baseline_members: [not-an-email]
"""
        )
    assert "baseline member 'not-an-email' is not an email address" in str(info.value)
    assert policy().resources[1].baseline_members == ("robot@example.com",)
    assert policy().resources[0].baseline_members == ()


def test_a_mass_removal_is_held_for_a_human_to_confirm() -> None:
    strangers = [f"s{i}@x.com" for i in range(11)]
    report = find_drift(policy(), [], {DB: [], SIGN: [*strangers, "DN-only-member"]})
    [sign] = [t for t in report.targets if t.target == SIGN]
    assert report.removals == ()  # eleven is above the default limit of ten: nobody goes
    held = [u for u in sign.unexpected if u.member.endswith("@x.com")]
    assert len(held) == 11 and not any(u.remove for u in held)
    assert held[0].reason.startswith("held: 11 removals from one group")
    assert "clearance reconcile --max-removals 11" in held[0].reason
    # A member that could never be removed keeps its own reason.
    [dn] = [u for u in sign.unexpected if u.member == "DN-only-member"]
    assert "no email address" in dn.reason
    # At the limit, or with the limit raised on purpose, they are removed.
    assert len(find_drift(policy(), [], {SIGN: strangers[:10]}).removals) == 10
    confirmed = find_drift(policy(), [], {SIGN: strangers}, removal_limit=11)
    assert len(confirmed.removals) == 11
