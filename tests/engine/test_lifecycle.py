"""The request lifecycle, one rule per test: what each transition does, and what it refuses.

Transitions are pure, so a refusal must leave the request exactly as it was.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from engine.access import (
    deprovision_confirmed,
    expire,
    extend,
    grant_confirmed,
    grant_failed,
    provisioning_started,
    revoke,
)
from engine.access_request import AccessRequest, Exclusion, Status
from engine.approvers import break_glass_reviewers, explain
from engine.directory import DirectorySnapshot, Person, snapshot_from_policy
from engine.drafts import RequestDraft
from engine.effects import (
    Deprovision,
    Effect,
    ExpireAt,
    NotifyAdmins,
    NotifyApprovers,
    NotifyPerson,
    NudgeAt,
    Provision,
    RemindAt,
    TimeoutAt,
)
from engine.lifecycle import (
    break_glass_refusal,
    cancel,
    decide,
    decision_trail_allows,
    nudge_due,
    submit,
    time_out,
)
from engine.policy import Policy
from engine.policy_loading import PolicyError, load_policy, parse_policy
from engine.refusals import Refused
from engine.transitions import SYSTEM_ACTOR, Transition
from message_templates import field_errors, refusal_text

POLICY_YAML = """\
admins:
  users: [adm@x.com, ada@x.com]
directory:
  people:
    - {email: req@x.com, name: Req, manager: mgr@x.com}
    - {email: mgr@x.com, name: Mgr, manager: vp@x.com}
    - {email: vp@x.com, name: VP}
    - {email: ann@x.com, name: Ann, manager: mgr@x.com}
    - {email: ben@x.com, name: Ben, manager: mgr@x.com}
    - {email: cat@x.com, name: Cat, manager: mgr@x.com}
    - {email: adm@x.com, name: Adm, manager: vp@x.com}
    - {email: ada@x.com, name: Ada, manager: vp@x.com}
    - {email: ina@x.com, name: Ina, manager: mgr@x.com, active: false}
    - {email: out@x.com, name: Out}
    - {email: bot@x.com, name: Bot}
  groups:
    eng: [req@x.com, ann@x.com, adm@x.com, ina@x.com]
    reviewers: [ann@x.com, ben@x.com, cat@x.com, bot@x.com]
connectors:
  ldap: {type: ldap, identity: bot@x.com}
resources:
  - id: two-stage
    name: Two stage
    risk: high
    owners: [group:reviewers]
    requesters: [group:eng]
    grant: {connector: ldap, group: cn=two}
    duration: {default: 1h, max: 4h}
    justification: {min_length: 10, max_length: 200}
    reminders: [1h, 15m]
    pending_timeout: 8h
    break_glass: {max: 1h, limit: 2/30d}
    approval:
      - {approvers: [group:reviewers], name: Review}
      - admins
  - id: ticketed
    name: Ticketed
    risk: medium
    grant: {connector: ldap, group: cn=ticketed}
    duration: {default: 2h, max: 8h}
    justification: {min_length: 10, ticket: '^INC-[0-9]+$'}
    approval: [admins]
  - id: self-listed
    name: Self listed
    risk: medium
    grant: {connector: ldap, group: cn=self}
    duration: {default: 1h, max: 4h}
    approval: [{approvers: [admins, group:eng]}]
  - id: admins-twice
    name: Admins twice
    risk: high
    grant: {connector: ldap, group: cn=a2}
    duration: {default: 1h, max: 4h}
    approval: [admins, admins]
  - id: admins-twice-same
    name: Admins twice, same person allowed
    risk: high
    grant: {connector: ldap, group: cn=a2s}
    duration: {default: 1h, max: 4h}
    allow_same_approver_across_stages: true
    approval: [admins, admins]
  - id: quorum-two
    name: Quorum two
    risk: high
    grant: {connector: ldap, group: cn=q2}
    duration: {default: 1h, max: 4h}
    approval: [{approvers: [group:reviewers], quorum: 2}]
  - id: quorum-all
    name: Quorum all
    risk: high
    grant: {connector: ldap, group: cn=qall}
    duration: {default: 1h, max: 4h}
    approval: [{approvers: [group:reviewers], quorum: all}]
  - id: auto
    name: Auto
    risk: low
    grant: {connector: ldap, group: cn=auto}
    duration: {default: 4h, max: 1d}
    reminders: [1h]
    extend: {self_service: 6h}
    approval: auto
  - id: inactive-only
    name: Inactive only
    risk: medium
    grant: {connector: ldap, group: cn=ina}
    duration: {default: 1h, max: 4h}
    approval: [user:ina@x.com]
  - id: managers
    name: Managers
    risk: high
    owners: [ann@x.com]
    grant: {connector: ldap, group: cn=mgr}
    duration: {default: 1h, max: 4h}
    approval: [resource_owner, manager]
  - id: skip-level
    name: Skip level
    risk: high
    grant: {connector: ldap, group: cn=skip}
    duration: {default: 1h, max: 4h}
    approval: [manager:2]
"""

POLICY = parse_policy(POLICY_YAML, "test-policy.yaml")
UNLIMITED_POLICY = parse_policy(POLICY_YAML.replace(", limit: 2/30d", "", 1))
DIR = snapshot_from_policy(POLICY)
V = POLICY.version
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
REVIEWERS = ("ann@x.com", "ben@x.com", "cat@x.com")
ADMINS = ("adm@x.com", "ada@x.com")
REMINDERS = (timedelta(hours=1), timedelta(minutes=15))
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def draft(resource: str = "two-stage", requester: str = "req@x.com", **kw: object) -> RequestDraft:
    kw.setdefault("justification", "Investigating the login outage")
    return RequestDraft(requester=requester, resource_id=resource, **kw)  # type: ignore[arg-type]


def submitted(
    resource: str = "two-stage",
    requester: str = "req@x.com",
    directory: DirectorySnapshot = DIR,
    policy: Policy = POLICY,
    **kw: object,
) -> AccessRequest:
    return submit(draft(resource, requester, **kw), policy, directory, T0, "r1").request


def approve(
    request: AccessRequest,
    actor: str,
    now: datetime | None = None,
    directory: DirectorySnapshot = DIR,
    policy: Policy = POLICY,
) -> AccessRequest:
    return decide(request, policy, directory, actor, "approve", now or at(10)).request


def approved_two_stage() -> AccessRequest:
    return approve(approve(submitted(), "ann@x.com", at(10)), "adm@x.com", at(20))


def active_two_stage(granted: datetime | None = None) -> AccessRequest:
    request = provisioning_started(approved_two_stage(), at(30), V).request
    return grant_confirmed(request, granted or at(40), V, REMINDERS).request


def refused(call: Callable[[], Transition], request: AccessRequest | None, code: str) -> Refused:
    """Assert the call is refused with ``code`` and left the request exactly as it was."""
    before = copy.deepcopy(request)
    with pytest.raises(Refused) as info:
        call()
    assert info.value.code == code, info.value.refusals
    assert request == before
    return info.value


def kinds(effects: tuple[Effect, ...]) -> list[str]:
    return [f"{type(e).__name__}:{getattr(e, 'template', '')}".rstrip(":") for e in effects]


def with_person(directory: DirectorySnapshot, person: Person) -> DirectorySnapshot:
    return DirectorySnapshot(
        people={**directory.people, person.email: person}, groups=directory.groups
    )


# --- submitting ----------------------------------------------------------------------------


def test_submit_starts_the_first_stage() -> None:
    t = submit(draft(duration="2h"), POLICY, DIR, T0, "r1")
    r = t.request
    assert r.status is Status.PENDING
    assert (r.id, r.requester, r.principal, r.resource_id) == (
        "r1",
        "req@x.com",
        "req@x.com",
        "two-stage",
    )
    assert r.duration == timedelta(hours=2)
    assert r.policy_version == V and r.created_at == T0
    assert (r.connector, r.target_group, r.stage_count, r.approval_mode) == (
        "ldap",
        "cn=two",
        2,
        "stages",
    )
    assert r.stage is not None and r.stage.index == 0 and r.stage.label == "Review"
    assert r.stage.approvers == REVIEWERS
    assert r.stage.required == 1 and not r.stage.fallback and r.stage.started_at == T0
    assert r.pending_deadline == T0 + timedelta(hours=8)
    assert kinds(t.effects) == [
        "NotifyPerson:request_submitted",
        "NotifyApprovers",
        "NudgeAt",
        "TimeoutAt",
    ]
    assert t.effects[1] == NotifyApprovers("r1", stage=0)
    # Halfway to the 8h timeout, the approvers still waited on are reminded.
    assert t.effects[2] == NudgeAt("r1", stage=0, due_at=T0 + timedelta(hours=4))
    assert t.effects[3] == TimeoutAt("r1", due_at=T0 + timedelta(hours=8))
    assert [a.action for a in t.audit] == ["requested", "stage_started"]
    assert all(a.policy_version == V and a.request_id == "r1" for a in t.audit)
    assert t.audit[0].actor == "req@x.com" and t.audit[1].actor == SYSTEM_ACTOR


def test_requester_email_is_case_insensitive() -> None:
    r = submitted(requester="Req@X.com")
    assert r.requester == "req@x.com" and r.principal == "req@x.com"


@pytest.mark.parametrize("duration", [None, "", "   "])
def test_default_duration_is_used_when_none_is_given(duration: str | None) -> None:
    assert submitted(duration=duration).duration == timedelta(hours=1)


def test_duration_over_max_is_refused() -> None:
    err = refused(
        lambda: submit(draft(duration="5h"), POLICY, DIR, T0, "r1"), None, "duration_over_max"
    )
    assert refusal_text(err) == "4h is the longest Two stage allows; you asked for 5h."
    assert field_errors(err) == {"duration": refusal_text(err)}


@pytest.mark.parametrize("duration", ["forever", "4 hours", "0m"])
def test_malformed_duration_is_refused(duration: str) -> None:
    err = refused(
        lambda: submit(draft(duration=duration), POLICY, DIR, T0, "r1"), None, "bad_duration"
    )
    assert list(field_errors(err)) == ["duration"]
    assert f"'{duration}'" in refusal_text(err)


def test_duration_at_exactly_the_max_is_fine() -> None:
    assert submitted(duration="4h").duration == timedelta(hours=4)


def test_justification_too_short() -> None:
    err = refused(
        lambda: submit(draft(justification="   because  "), POLICY, DIR, T0, "r1"),
        None,
        "justification_too_short",
    )
    assert "at least 10 characters (you wrote 7)" in refusal_text(err)


def test_justification_too_long() -> None:
    err = refused(
        lambda: submit(draft(justification="x" * 201), POLICY, DIR, T0, "r1"),
        None,
        "justification_too_long",
    )
    assert "at most 200 characters (you wrote 201)" in refusal_text(err)
    assert submitted(justification="x" * 200).justification == "x" * 200


def test_ticket_required() -> None:
    err = refused(lambda: submit(draft("ticketed"), POLICY, DIR, T0, "r1"), None, "ticket_required")
    assert field_errors(err) == {"ticket": "Ticketed needs a ticket id matching ^INC-[0-9]+$."}


@pytest.mark.parametrize("ticket", ["CHG-1", "INC-", "INC-12 and more", "xINC-12"])
def test_ticket_mismatch(ticket: str) -> None:
    refused(
        lambda: submit(draft("ticketed", ticket=ticket), POLICY, DIR, T0, "r1"),
        None,
        "ticket_mismatch",
    )


def test_matching_ticket_is_recorded() -> None:
    r = submitted("ticketed", ticket=" INC-42 ")
    assert r.ticket == "INC-42"


def test_requester_not_in_requesters_group_is_refused() -> None:
    err = refused(
        lambda: submit(draft(requester="out@x.com"), POLICY, DIR, T0, "r1"), None, "not_allowed"
    )
    assert "only group:eng may request Two stage" in refusal_text(err)


def test_unknown_person_is_refused() -> None:
    err = refused(
        lambda: submit(draft(requester="ghost@x.com"), POLICY, DIR, T0, "r1"), None, "not_allowed"
    )
    assert "ghost@x.com is not in the directory" in refusal_text(err)


def test_inactive_person_is_refused_even_in_the_requesters_group() -> None:
    err = refused(
        lambda: submit(draft(requester="ina@x.com"), POLICY, DIR, T0, "r1"), None, "not_allowed"
    )
    assert "ina@x.com is marked inactive in the directory" in refusal_text(err)


def test_unknown_resource_lists_the_known_ids() -> None:
    err = refused(lambda: submit(draft("prod"), POLICY, DIR, T0, "r1"), None, "unknown_resource")
    known = ", ".join(r.id for r in POLICY.resources)
    assert refusal_text(err) == f"There is no resource 'prod'. Known resources: {known}"
    assert field_errors(err) == {"resource": refusal_text(err)}


def test_request_for_another_principal_is_refused() -> None:
    refused(
        lambda: submit(draft(principal="svc-deploy@x.com"), POLICY, DIR, T0, "r1"),
        None,
        "principal_not_allowed",
    )


def test_every_field_error_is_reported_together() -> None:
    err = refused(
        lambda: submit(
            draft(
                "ticketed",
                requester="ghost@x.com",
                duration="9h",
                justification="pls",
                ticket="CHG-9",
            ),
            POLICY,
            DIR,
            T0,
            "r1",
        ),
        None,
        "not_allowed",
    )
    assert [r.code for r in err.refusals] == [
        "not_allowed",
        "duration_over_max",
        "justification_too_short",
        "ticket_mismatch",
    ]
    assert set(field_errors(err)) == {"resource", "duration", "justification", "ticket"}
    assert field_errors(err)["duration"] == "8h is the longest Ticketed allows; you asked for 9h."


# --- who decides ---------------------------------------------------------------------------


def test_requester_never_approves_even_as_an_admin_listed_in_the_stage() -> None:
    r = submitted("self-listed", requester="adm@x.com")
    assert r.stage is not None
    assert "adm@x.com" not in r.stage.approvers
    assert Exclusion("adm@x.com", "is the requester") in r.stage.excluded
    err = refused(lambda: decide(r, POLICY, DIR, "ADM@x.com", "approve", at(5)), r, "self_approval")
    assert refusal_text(err) == "You cannot decide on your own request."
    refused(
        lambda: decide(r, POLICY, DIR, "adm@x.com", "deny", at(5), reason="no"), r, "self_approval"
    )


def test_one_person_approves_at_most_one_stage() -> None:
    r = approve(submitted("admins-twice"), "adm@x.com")
    assert r.stage is not None and r.stage.index == 1
    assert r.stage.approvers == ("ada@x.com",)
    assert Exclusion("adm@x.com", "already approved an earlier stage") in r.stage.excluded
    refused(lambda: decide(r, POLICY, DIR, "adm@x.com", "approve", at(20)), r, "second_stage")
    refused(
        lambda: decide(r, POLICY, DIR, "adm@x.com", "deny", at(20), reason="x"), r, "second_stage"
    )


def test_allow_same_approver_across_stages_lifts_the_rule() -> None:
    r = approve(submitted("admins-twice-same"), "adm@x.com")
    assert r.stage is not None and r.stage.approvers == ADMINS
    r = approve(r, "adm@x.com", at(20))
    assert r.status is Status.APPROVED
    assert [(d.stage, d.approver) for d in r.decisions] == [(0, "adm@x.com"), (1, "adm@x.com")]
    assert decision_trail_allows(r)


def test_only_current_stage_approvers_decide() -> None:
    r = submitted()
    err = refused(
        lambda: decide(r, POLICY, DIR, "adm@x.com", "approve", at(5)), r, "not_an_approver"
    )
    assert refusal_text(err) == "You cannot decide this request."
    refused(lambda: decide(r, POLICY, DIR, "out@x.com", "approve", at(5)), r, "not_an_approver")
    refused(
        lambda: decide(r, POLICY, DIR, "ghost@x.com", "deny", at(5), reason="x"),
        r,
        "not_an_approver",
    )


def test_stale_expected_stage_is_refused() -> None:
    r = approve(submitted(), "ann@x.com")
    err = refused(
        lambda: decide(r, POLICY, DIR, "adm@x.com", "approve", at(20), expected_stage=0), r, "stale"
    )
    assert "now at stage 2" in refusal_text(err)
    assert approve(r, "adm@x.com").status is Status.APPROVED
    assert (
        decide(r, POLICY, DIR, "adm@x.com", "approve", at(20), expected_stage=1).request.status
        is Status.APPROVED
    )


def test_double_click_gives_one_decision() -> None:
    r = submitted("quorum-two")
    once = approve(r, "ann@x.com")
    refused(
        lambda: decide(once, POLICY, DIR, "ann@x.com", "approve", at(11)), once, "already_decided"
    )
    assert len(once.decisions) == 1


def test_connector_identity_is_excluded_and_can_never_decide() -> None:
    r = submitted()
    assert r.stage is not None
    assert "bot@x.com" not in r.stage.approvers
    assert Exclusion("bot@x.com", "executes grants for a connector") in r.stage.excluded
    err = refused(lambda: decide(r, POLICY, DIR, "bot@x.com", "approve", at(5)), r, "executor")
    assert refusal_text(err) == "The identity that executes grants cannot decide on requests."


def test_quorum_of_two() -> None:
    r = submitted("quorum-two")
    assert r.stage is not None and r.stage.required == 2
    t = decide(r, POLICY, DIR, "ann@x.com", "approve", at(5))
    assert t.request.status is Status.PENDING
    assert kinds(t.effects) == ["RefreshCards", "NotifyPerson:decision_recorded"]
    assert t.audit[0].details["approvals"] == 1 and t.audit[0].details["required"] == 2
    t = decide(t.request, POLICY, DIR, "cat@x.com", "approve", at(6))
    assert t.request.status is Status.APPROVED
    assert [a.action for a in t.audit] == ["approved", "stage_completed", "fully_approved"]


def test_quorum_all_needs_every_eligible_approver() -> None:
    r = submitted("quorum-all")
    assert r.stage is not None and r.stage.required == 3 and r.stage.approvers == REVIEWERS
    r = approve(r, "ann@x.com")
    r = approve(r, "ben@x.com")
    assert r.status is Status.PENDING
    r = approve(r, "cat@x.com")
    assert r.status is Status.APPROVED
    assert decision_trail_allows(r)


def test_quorum_all_skips_the_requester() -> None:
    r = submitted("quorum-all", requester="ann@x.com")
    assert r.stage is not None and r.stage.approvers == ("ben@x.com", "cat@x.com")
    assert r.stage.required == 2


def test_one_denial_ends_the_request() -> None:
    r = approve(submitted("quorum-two"), "ann@x.com")
    t = decide(r, POLICY, DIR, "ben@x.com", "deny", at(15), reason="  not during the freeze ")
    d = t.request
    assert d.status is Status.DENIED and d.status.is_final
    assert (d.ended_at, d.ended_by, d.end_reason) == (at(15), "ben@x.com", "not during the freeze")
    assert d.denial is not None and d.denial.approver == "ben@x.com"
    assert t.decision == d.denial
    assert kinds(t.effects) == [
        "RefreshCards",
        "NotifyPerson:request_denied",
        "NotifyAdmins:request_denied",
    ]
    assert [a.action for a in t.audit] == ["denied"]
    assert not decision_trail_allows(d)
    err = refused(lambda: decide(d, POLICY, DIR, "cat@x.com", "approve", at(16)), d, "not_pending")
    assert refusal_text(err) == "This request was already denied by ben@x.com."


@pytest.mark.parametrize("reason", ["", "   "])
def test_denial_needs_a_reason(reason: str) -> None:
    r = submitted()
    err = refused(
        lambda: decide(r, POLICY, DIR, "ann@x.com", "deny", at(5), reason=reason),
        r,
        "reason_required",
    )
    assert field_errors(err) == {"reason": "Please give a reason for the denial."}


def test_overlong_reason_is_refused() -> None:
    r = submitted()
    refused(
        lambda: decide(r, POLICY, DIR, "ann@x.com", "deny", at(5), reason="x" * 501),
        r,
        "reason_too_long",
    )


@pytest.mark.parametrize("state", ["approved", "active", "cancelled", "expired"])
def test_decision_on_a_request_that_is_not_pending_is_refused(state: str) -> None:
    r = {
        "approved": approved_two_stage,
        "active": active_two_stage,
        "cancelled": lambda: cancel(submitted(), "req@x.com", at(1), V).request,
        "expired": lambda: expire(active_two_stage(), at(600), V).request,
    }[state]()
    err = refused(lambda: decide(r, POLICY, DIR, "ada@x.com", "approve", at(700)), r, "not_pending")
    assert "nothing to decide" in refusal_text(err)


def test_inactive_approver_is_skipped_with_a_reason() -> None:
    directory = with_person(DIR, dataclasses.replace(DIR.people["ben@x.com"], active=False))
    r = submitted(directory=directory)
    assert r.stage is not None
    assert r.stage.approvers == ("ann@x.com", "cat@x.com")
    assert Exclusion("ben@x.com", "inactive in the directory") in r.stage.excluded


def test_approver_deactivated_after_the_stage_started_cannot_decide() -> None:
    r = submitted()
    later = with_person(DIR, dataclasses.replace(DIR.people["ann@x.com"], active=False))
    err = refused(
        lambda: decide(r, POLICY, later, "ann@x.com", "approve", at(5)), r, "not_eligible"
    )
    assert refusal_text(err) == "You cannot decide this request (inactive in the directory)."
    gone = DirectorySnapshot(
        people={k: v for k, v in DIR.people.items() if k != "ann@x.com"}, groups=DIR.groups
    )
    err = refused(lambda: decide(r, POLICY, gone, "ann@x.com", "approve", at(5)), r, "not_eligible")
    assert refusal_text(err) == "You cannot decide this request (not found in the directory)."


# --- how approval completes --------------------------------------------------------------


def test_full_approval_asks_the_connector_and_traces_to_decisions() -> None:
    r = approve(submitted(), "ann@x.com", at(10))
    assert r.stage is not None and r.stage.index == 1 and r.stage.approvers == ADMINS
    assert r.pending_deadline == at(10) + timedelta(hours=8)
    t = decide(r, POLICY, DIR, "ada@x.com", "approve", at(20))
    a = t.request
    assert a.status is Status.APPROVED and a.pending_deadline is None
    assert a.granted_at is None and a.expires_at is None
    assert Provision("r1", connector="ldap", group="cn=two", principal="req@x.com") in t.effects
    assert [x.action for x in t.audit] == ["approved", "stage_completed", "fully_approved"]
    assert decision_trail_allows(a)


def test_auto_approval_is_approved_at_once_and_audited() -> None:
    t = submit(draft("auto", requester="out@x.com"), POLICY, DIR, T0, "r1")
    r = t.request
    assert r.status is Status.APPROVED and r.approval_mode == "auto"
    assert r.stages == () and r.decisions == () and r.stage_count == 0
    assert r.duration == timedelta(hours=4)
    assert [(a.action, a.actor) for a in t.audit] == [
        ("requested", "out@x.com"),
        ("fully_approved", SYSTEM_ACTOR),
    ]
    assert t.audit[1].details == {"rule": "approval: auto"}
    assert kinds(t.effects) == ["NotifyPerson:request_approved", "Provision"]
    assert decision_trail_allows(r)
    g = grant_confirmed(provisioning_started(r, at(1), V).request, at(2), V, ()).request
    assert g.status is Status.ACTIVE and g.expires_at == at(2) + timedelta(hours=4)


def test_break_glass_grants_at_once_and_alerts_admins() -> None:
    t = submit(draft(break_glass=True), POLICY, DIR, T0, "r1")
    r = t.request
    assert r.status is Status.APPROVED and r.break_glass and r.approval_mode == "break_glass"
    assert r.duration == timedelta(hours=1)  # the break-glass cap is the default
    assert NotifyAdmins("r1", template="break_glass_alert") in t.effects
    assert any(isinstance(e, Provision) for e in t.effects)
    assert [a.action for a in t.audit] == ["requested", "break_glass"]
    assert t.audit[1].details == {"review_required": True, "owners_alerted": list(REVIEWERS)}
    assert decision_trail_allows(r)


def test_break_glass_tells_each_owner_never_the_requester() -> None:
    # The owners are group:reviewers: Ann, Ben, Cat and the connector's identity, Bot.
    t = submit(draft(requester="req@x.com", break_glass=True), POLICY, DIR, T0, "r1")
    told = [e.email for e in t.effects if isinstance(e, NotifyPerson)]
    assert told == ["ann@x.com", "ben@x.com", "cat@x.com", "req@x.com"]
    assert kinds(t.effects).count("NotifyPerson:break_glass_owner_alert") == 3
    # Ann owns it and asks herself: the other owners are told, she hears only her answer.
    ann = submit(draft(requester="ann@x.com", break_glass=True), POLICY, DIR, T0, "r2")
    owners = [
        e.email
        for e in ann.effects
        if isinstance(e, NotifyPerson) and e.template == "break_glass_owner_alert"
    ]
    assert owners == ["ben@x.com", "cat@x.com"]


def test_break_glass_without_an_owner_left_falls_back_to_the_admins_channel() -> None:
    policy = parse_policy(
        POLICY_YAML.replace("owners: [group:reviewers]", "owners: [req@x.com, ina@x.com]", 1)
    )
    resource = policy.resource("two-stage")
    assert resource is not None
    reviewers = break_glass_reviewers("req@x.com", resource, policy, DIR)
    assert reviewers.people == ADMINS and not reviewers.owners
    t = submit(draft(break_glass=True), policy, DIR, T0, "r1")
    assert "NotifyPerson:break_glass_owner_alert" not in kinds(t.effects)
    assert NotifyAdmins("r1", template="break_glass_alert") in t.effects
    assert t.audit[1].details["owners_alerted"] == []


@pytest.mark.parametrize(("recent", "refusal"), [(0, None), (1, None), (2, "limit"), (7, "limit")])
def test_break_glass_limit_decides_from_the_count(recent: int, refusal: str | None) -> None:
    resource = POLICY.resource("two-stage")
    assert resource is not None and str(resource.break_glass.limit) == "2/30d"  # type: ignore[union-attr]
    assert break_glass_refusal(resource, recent) == refusal
    unlimited = UNLIMITED_POLICY.resource("two-stage")
    assert unlimited is not None and break_glass_refusal(unlimited, recent) is None


def test_break_glass_beyond_the_limit_goes_to_the_approvers_and_says_why() -> None:
    t = submit(draft(break_glass=True, ticket=None), POLICY, DIR, T0, "r1", recent_break_glass=2)
    r = t.request
    assert r.status is Status.PENDING and r.approval_mode == "stages" and r.stage_count == 2
    assert not r.break_glass and r.break_glass_refused == "limit"
    assert r.duration == timedelta(hours=1)  # asked as break-glass: its cap was the default
    assert kinds(t.effects)[:2] == ["NotifyPerson:request_submitted", "NotifyApprovers"]
    assert not any(isinstance(e, Provision) for e in t.effects)
    assert [a.action for a in t.audit] == ["requested", "stage_started"]
    details = t.audit[0].details
    assert details["break_glass"] is True
    assert (details["break_glass_refused"], details["break_glass_limit"], details["recent"]) == (
        "limit",
        "2/30d",
        2,
    )
    assert not decision_trail_allows(r)
    # Under the limit it is break-glass as before; a normal request never hears of it.
    assert submit(
        draft(break_glass=True), POLICY, DIR, T0, "r2", recent_break_glass=1
    ).request.break_glass
    normal = submit(draft(), POLICY, DIR, T0, "r3", recent_break_glass=9)
    assert normal.request.break_glass_refused is None
    assert "break_glass_refused" not in normal.audit[0].details


def test_break_glass_beyond_the_limit_is_still_validated_as_break_glass() -> None:
    refused(
        lambda: submit(
            draft(break_glass=True, duration="2h"), POLICY, DIR, T0, "r1", recent_break_glass=2
        ),
        None,
        "duration_over_max",
    )


def test_break_glass_is_capped_at_its_own_max() -> None:
    assert submitted(break_glass=True, duration="30m").duration == timedelta(minutes=30)
    err = refused(
        lambda: submit(draft(break_glass=True, duration="2h"), POLICY, DIR, T0, "r1"),
        None,
        "duration_over_max",
    )
    assert (
        refusal_text(err)
        == "1h is the longest break-glass access to Two stage allows; you asked for 2h."
    )


def test_break_glass_only_where_the_resource_allows_it() -> None:
    refused(
        lambda: submit(draft("quorum-two", break_glass=True), POLICY, DIR, T0, "r1"),
        None,
        "break_glass_not_allowed",
    )


def test_break_glass_still_checks_who_may_request() -> None:
    refused(
        lambda: submit(draft(requester="out@x.com", break_glass=True), POLICY, DIR, T0, "r1"),
        None,
        "not_allowed",
    )


# --- when nobody can approve -------------------------------------------------------------


def test_stage_with_nobody_eligible_falls_back_to_admins() -> None:
    t = submit(draft("inactive-only"), POLICY, DIR, T0, "r1")
    stage = t.request.stage
    assert stage is not None
    assert stage.fallback
    assert stage.approvers == ADMINS and stage.required == 1
    assert stage.excluded == (Exclusion("ina@x.com", "inactive in the directory"),)
    assert t.audit[-1].details["fallback_to_admins"] is True
    r = approve(t.request, "ada@x.com")
    assert r.status is Status.APPROVED and decision_trail_allows(r)


NO_ADMINS = parse_policy(
    dedent(
        """\
        directory:
          people:
            - {email: boss@x.com, name: Boss}
            - {email: req@x.com, name: Req, manager: boss@x.com}
            - {email: orphan@x.com, name: Orphan}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: high
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [manager]
        """
    )
)


def test_stage_with_nobody_and_no_admins_fails_and_never_passes() -> None:
    directory = snapshot_from_policy(NO_ADMINS)
    ok = submit(RequestDraft("req@x.com", "db", "a good reason"), NO_ADMINS, directory, T0, "r1")
    assert ok.request.status is Status.PENDING
    t = submit(RequestDraft("orphan@x.com", "db", "a good reason"), NO_ADMINS, directory, T0, "r2")
    r = t.request
    assert r.status is Status.FAILED and r.status.is_final
    assert (
        r.failure
        == "nobody can approve stage 1: its rules and the admins leave no eligible approver"
    )
    assert r.ended_at == T0 and r.stages == ()
    assert not decision_trail_allows(r)
    assert [a.action for a in t.audit] == ["requested", "failed"]
    assert not any(isinstance(e, NotifyApprovers | Provision) for e in t.effects)
    assert "NotifyPerson:request_failed" in kinds(t.effects)
    assert "NotifyAdmins:request_failed" in kinds(t.effects)
    refused(lambda: provisioning_started(r, at(1), NO_ADMINS.version), r, "not_approved")
    refused(lambda: grant_confirmed(r, at(1), NO_ADMINS.version, ()), r, "not_provisioning")


def test_a_later_stage_with_nobody_left_fails_the_request() -> None:
    # Sam, an admin, asks for the signing key: stage 1 falls back to the other admin, who
    # then may not approve stage 2 as well, and nobody else is left.
    policy = load_policy(EXAMPLE)
    directory = snapshot_from_policy(policy)
    t = submit(
        RequestDraft(
            "sam@example.com", "release-signing-key", "sign the 2.0 release now", ticket="CHG-7"
        ),
        policy,
        directory,
        T0,
        "r1",
    )
    stage = t.request.stage
    assert stage is not None and stage.fallback and stage.approvers == ("sara@example.com",)
    t = decide(t.request, policy, directory, "sara@example.com", "approve", at(5))
    assert t.request.status is Status.FAILED
    assert t.request.failure is not None and t.request.failure.startswith(
        "nobody can approve stage 2"
    )
    assert [a.action for a in t.audit] == ["approved", "stage_completed", "failed"]
    assert not any(isinstance(e, Provision) for e in t.effects)
    assert not decision_trail_allows(t.request)


# --- managers come from the directory when a stage starts ---------------------------------


def test_manager_is_resolved_when_the_stage_starts() -> None:
    before = DIR
    after = with_person(
        with_person(DIR, Person("new@x.com", "New Boss")),
        dataclasses.replace(DIR.people["req@x.com"], manager="new@x.com"),
    )
    r = submitted("managers", directory=before)
    assert r.stage is not None and r.stage.approvers == ("ann@x.com",)
    r = approve(r, "ann@x.com", directory=after)
    assert r.stage is not None and r.stage.index == 1
    assert r.stage.approvers == ("new@x.com",)
    refused(lambda: decide(r, POLICY, after, "mgr@x.com", "approve", at(20)), r, "not_an_approver")
    assert approve(r, "new@x.com", directory=after).status is Status.APPROVED


def test_manager_two_levels_up() -> None:
    r = submitted("skip-level")
    assert r.stage is not None and r.stage.approvers == ("vp@x.com",)
    moved = with_person(DIR, dataclasses.replace(DIR.people["mgr@x.com"], manager="adm@x.com"))
    r = submitted("skip-level", directory=moved)
    assert r.stage is not None and r.stage.approvers == ("adm@x.com",)


def test_inactive_manager_falls_back_to_admins() -> None:
    directory = with_person(DIR, dataclasses.replace(DIR.people["mgr@x.com"], active=False))
    r = approve(submitted("managers", directory=directory), "ann@x.com", directory=directory)
    assert r.stage is not None and r.stage.fallback
    assert r.stage.approvers == ADMINS
    assert Exclusion("mgr@x.com", "inactive in the directory") in r.stage.excluded


# --- fulfilment and the access clock --------------------------------------------------


def test_provisioning_started_is_idempotent() -> None:
    r = approved_two_stage()
    t = provisioning_started(r, at(30), V)
    assert t.request.status is Status.PROVISIONING
    assert [a.action for a in t.audit] == ["provisioning_started"]
    again = provisioning_started(t.request, at(31), V)
    assert again.request == t.request and again.effects == () and again.audit == ()


def test_access_clock_starts_at_grant_confirmed_not_at_request() -> None:
    r = provisioning_started(approved_two_stage(), at(30), V).request
    assert r.status is Status.PROVISIONING and r.granted_at is None and r.expires_at is None
    granted = T0 + timedelta(hours=3)
    t = grant_confirmed(r, granted, V, (timedelta(hours=1), timedelta(minutes=15)))
    a = t.request
    assert a.status is Status.ACTIVE
    assert a.granted_at == granted
    assert a.expires_at == granted + timedelta(hours=1) != a.created_at + a.duration
    assert ExpireAt("r1", due_at=a.expires_at) in t.effects
    [audit] = t.audit
    assert audit.action == "granted"
    assert audit.details["expires_at"] == a.expires_at.isoformat()
    assert audit.details["approvals"] == [
        {"stage": 0, "approver": "ann@x.com", "at": at(10).isoformat()},
        {"stage": 1, "approver": "adm@x.com", "at": at(20).isoformat()},
    ]
    assert decision_trail_allows(a)


def test_reminders_only_when_shorter_than_the_duration() -> None:
    reminders = (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(days=1),
        timedelta(minutes=15),
    )
    one_hour = provisioning_started(approved_two_stage(), at(30), V).request
    t = grant_confirmed(one_hour, at(40), V, reminders)
    assert [e for e in t.effects if isinstance(e, RemindAt)] == [
        RemindAt("r1", before="15m", due_at=at(40) + timedelta(minutes=45))
    ]
    four_hours = approve(approve(submitted(duration="4h"), "ann@x.com"), "ada@x.com")
    t = grant_confirmed(four_hours, at(40), V, reminders)
    expires = at(40) + timedelta(hours=4)
    assert [e for e in t.effects if isinstance(e, RemindAt)] == [
        RemindAt("r1", before="1h", due_at=expires - timedelta(hours=1)),
        RemindAt("r1", before="15m", due_at=expires - timedelta(minutes=15)),
    ]


def test_grant_failed_fails_the_request() -> None:
    r = provisioning_started(approved_two_stage(), at(30), V).request
    t = grant_failed(r, "no_such_group: cn=two", at(31), V, uncertain=False)
    f = t.request
    assert (
        f.status is Status.FAILED and f.failure == "no_such_group: cn=two" and f.granted_at is None
    )
    # The target refused: nothing landed, nothing to take back.
    assert kinds(t.effects) == ["NotifyPerson:request_failed", "NotifyAdmins:request_failed"]
    assert f.deprovisioned_at == at(31) and t.audit[0].details["cleanup"] is False
    refused(lambda: grant_confirmed(f, at(32), V, ()), f, "not_provisioning")
    refused(lambda: grant_failed(f, "again", at(32), V), f, "not_provisioning")


def test_a_grant_that_failed_uncertainly_is_taken_back_quietly() -> None:
    # Retries ran out on timeouts: the member may have been added; remove it to be sure.
    r = provisioning_started(approved_two_stage(), at(30), V).request
    t = grant_failed(r, "unreachable: timed out", at(31), V)
    f = t.request
    assert f.status is Status.FAILED and f.deprovisioned_at is None
    assert t.effects[-1] == Deprovision(
        "r1", connector="ldap", group="cn=two", principal="req@x.com", reason="grant_failed"
    )
    assert t.audit[0].details["cleanup"] is True
    done = deprovision_confirmed(f, at(32), V)
    assert done.request.deprovisioned_at == at(32) and done.request.status is Status.FAILED
    assert done.effects == ()  # the requester already heard it failed
    assert [a.action for a in done.audit] == ["access_removed"]
    # Never asked the connector: nothing to take back.
    approved = approved_two_stage()
    t = grant_failed(approved, "unknown connector", at(31), V)
    assert not [e for e in t.effects if isinstance(e, Deprovision)]


def test_grant_confirmed_needs_an_approved_request() -> None:
    r = submitted()
    refused(lambda: grant_confirmed(r, at(5), V, ()), r, "not_provisioning")
    refused(lambda: provisioning_started(r, at(5), V), r, "not_approved")


def test_expire_only_when_due() -> None:
    a = active_two_stage(granted=at(40))
    assert a.expires_at == at(100)
    err = refused(lambda: expire(a, at(99.99), V), a, "not_due")
    assert refusal_text(err) == "This access has not reached its end yet."
    t = expire(a, at(100), V)
    e = t.request
    assert e.status is Status.EXPIRED and e.ended_at == at(100) and e.ended_by == SYSTEM_ACTOR
    assert e.deprovisioned_at is None
    assert t.effects == (
        Deprovision(
            "r1", connector="ldap", group="cn=two", principal="req@x.com", reason="expired"
        ),
    )
    assert [x.action for x in t.audit] == ["expired"]
    refused(lambda: expire(e, at(101), V), e, "not_active")


def test_an_overdue_grant_expires_at_once() -> None:
    a = active_two_stage(granted=at(40))
    t = expire(a, at(60 * 24 * 7), V)
    assert t.request.status is Status.EXPIRED and t.request.ended_at == at(60 * 24 * 7)


def test_requester_revokes_with_im_done() -> None:
    a = active_two_stage()
    t = revoke(a, POLICY, "req@x.com", "", at(50))
    r = t.request
    assert r.status is Status.REVOKED
    assert (r.ended_by, r.end_reason, r.ended_at) == (
        "req@x.com",
        "returned by the requester",
        at(50),
    )
    assert r.deprovisioned_at is None
    assert kinds(t.effects) == ["RefreshCards", "Deprovision"]
    assert t.audit[0].details == {"reason": "returned by the requester", "was": "active"}


def test_admin_revokes_with_a_reason() -> None:
    a = active_two_stage()
    err = refused(lambda: revoke(a, POLICY, "ada@x.com", "  ", at(50)), a, "reason_required")
    assert field_errors(err) == {"reason": "Please give a reason for the revocation."}
    t = revoke(a, POLICY, "ADA@x.com", "suspicious activity", at(50))
    assert t.request.status is Status.REVOKED and t.request.ended_by == "ada@x.com"
    assert t.request.end_reason == "suspicious activity"
    assert kinds(t.effects) == ["RefreshCards", "Deprovision", "NotifyPerson:access_revoked"]


@pytest.mark.parametrize("actor", ["out@x.com", "ann@x.com", "bot@x.com", "mgr@x.com"])
def test_stranger_cannot_revoke(actor: str) -> None:
    a = active_two_stage()
    refused(lambda: revoke(a, POLICY, actor, "because", at(50)), a, "not_allowed")


def test_revoking_a_pending_request_needs_no_deprovision() -> None:
    r = submitted()
    t = revoke(r, POLICY, "adm@x.com", "wrong resource", at(5))
    assert t.request.status is Status.REVOKED and t.request.deprovisioned_at == at(5)
    assert t.request.pending_deadline is None
    assert not any(isinstance(e, Deprovision) for e in t.effects)
    assert deprovision_confirmed(t.request, at(6), V).effects == ()


def test_revoke_of_an_ended_request_is_refused() -> None:
    e = expire(active_two_stage(granted=at(40)), at(100), V).request
    refused(lambda: revoke(e, POLICY, "req@x.com", "", at(101)), e, "already_ended")


def test_deprovision_confirmed_is_idempotent() -> None:
    e = expire(active_two_stage(granted=at(40)), at(100), V).request
    t = deprovision_confirmed(e, at(101), V)
    d = t.request
    assert d.deprovisioned_at == at(101) and d.status is Status.EXPIRED
    assert kinds(t.effects) == ["NotifyPerson:access_ended"]
    assert [a.action for a in t.audit] == ["access_removed"]
    again = deprovision_confirmed(d, at(102), V)
    assert again.request == d and again.effects == () and again.audit == ()


def test_deprovision_confirmed_needs_an_ended_request() -> None:
    a = active_two_stage()
    refused(lambda: deprovision_confirmed(a, at(50), V), a, "not_ended")


def test_time_out_only_when_due() -> None:
    r = submitted()
    deadline = T0 + timedelta(hours=8)
    refused(lambda: time_out(r, deadline - timedelta(seconds=1), V), r, "not_due")
    t = time_out(r, deadline, V)
    o = t.request
    assert o.status is Status.TIMED_OUT and o.ended_at == deadline and o.ended_by == SYSTEM_ACTOR
    assert kinds(t.effects) == ["RefreshCards", "NotifyPerson:request_timed_out"]
    refused(lambda: time_out(o, deadline + timedelta(hours=1), V), o, "not_pending")
    refused(lambda: decide(o, POLICY, DIR, "ann@x.com", "approve", deadline), o, "not_pending")


def test_each_stage_gets_its_own_deadline() -> None:
    r = approve(submitted(), "ann@x.com", T0 + timedelta(hours=7))
    refused(lambda: time_out(r, T0 + timedelta(hours=9), V), r, "not_due")
    assert time_out(r, T0 + timedelta(hours=15), V).request.status is Status.TIMED_OUT


def test_time_out_of_an_approved_request_is_refused() -> None:
    r = approved_two_stage()
    refused(lambda: time_out(r, T0 + timedelta(days=2), V), r, "not_pending")


def test_cancel_by_the_requester_only_while_not_granted() -> None:
    r = submitted()
    refused(lambda: cancel(r, "ann@x.com", at(1), V), r, "not_requester")
    t = cancel(r, "REQ@x.com", at(1), V)
    assert t.request.status is Status.CANCELLED and t.request.ended_by == "req@x.com"
    assert t.request.pending_deadline is None
    assert cancel(approved_two_stage(), "req@x.com", at(30), V).request.status is Status.CANCELLED
    a = active_two_stage()
    refused(lambda: cancel(a, "req@x.com", at(50), V), a, "not_cancellable")
    c = t.request
    refused(lambda: cancel(c, "req@x.com", at(2), V), c, "not_cancellable")


def test_refusals_leave_a_request_with_origin_data_unchanged() -> None:
    r = submitted().evolve(origin={"via": "api", "workload": "deploy"})
    refused(lambda: decide(r, POLICY, DIR, "out@x.com", "approve", at(1)), r, "not_an_approver")
    assert r.origin == {"via": "api", "workload": "deploy"}


def test_transitions_do_not_touch_their_input() -> None:
    r = submitted()
    snapshot = copy.deepcopy(r)
    decide(r, POLICY, DIR, "ann@x.com", "approve", at(5))
    decide(r, POLICY, DIR, "ann@x.com", "deny", at(5), reason="no")
    cancel(r, "req@x.com", at(5), V)
    revoke(r, POLICY, "adm@x.com", "x", at(5))
    time_out(r, T0 + timedelta(days=1), V)
    assert r == snapshot


# --- explain ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> tuple[Policy, DirectorySnapshot]:
    policy = load_policy(EXAMPLE)
    return policy, snapshot_from_policy(policy)


def test_explain_for_the_example_policy(example: tuple[Policy, DirectorySnapshot]) -> None:
    policy, directory = example
    e = explain("Alice@example.com", policy.resource("prod-db-admin"), policy, directory, T0)  # type: ignore[arg-type]
    assert e.requester == "alice@example.com" and e.may_request and e.request_problem is None
    assert not e.auto_approve
    assert [(s.label, s.rules, s.quorum, s.approvers, s.fallback, s.blocked) for s in e.stages] == [
        ("stage 1", ("manager",), "1", ("bob@example.com",), False, False),
        (
            "stage 2",
            ("resource_owner",),
            "1",
            ("dora@example.com", "dan@example.com"),
            False,
            False,
        ),
        (
            "Security sign-off",
            ("admins",),
            "1",
            ("sam@example.com", "sara@example.com"),
            False,
            False,
        ),
    ]
    e = explain("alice@example.com", policy.resource("release-signing-key"), policy, directory, T0)  # type: ignore[arg-type]
    assert [(s.approvers, s.quorum) for s in e.stages] == [
        (("carol@example.com",), "1"),
        (("sam@example.com", "sara@example.com"), "all"),
    ]
    e = explain("erin@example.com", policy.resource("ci-admin"), policy, directory, T0)  # type: ignore[arg-type]
    [stage] = e.stages
    assert stage.label == "Platform review" and stage.approvers == ("bob@example.com",)
    assert stage.excluded == (Exclusion("erin@example.com", "is the requester"),)
    e = explain("alice@example.com", policy.resource("staging-db-read"), policy, directory, T0)  # type: ignore[arg-type]
    assert e.auto_approve and e.stages == ()


def test_explain_says_whether_break_glass_is_offered_and_who_reviews_it(
    example: tuple[Policy, DirectorySnapshot],
) -> None:
    policy, directory = example
    prod = policy.resource("prod-db-admin")
    assert prod is not None
    glass = explain("alice@example.com", prod, policy, directory, T0).break_glass
    assert glass is not None
    assert (glass.max, glass.review_within, glass.limit) == ("1h", "1d", "2/30d")
    assert (glass.limit_count, glass.limit_per) == (2, "30d")
    assert glass.reviewers.people == ("dora@example.com", "dan@example.com")
    assert glass.reviewers.owners
    ci = policy.resource("ci-admin")
    assert (
        ci is not None
        and explain("erin@example.com", ci, policy, directory, T0).break_glass is None
    )
    # Without a limit there is none to show; an owner asking is left out of the reviewers,
    # and when no owner is left the admins review it.
    two = UNLIMITED_POLICY.resource("two-stage")
    assert two is not None
    ann = explain("ann@x.com", two, UNLIMITED_POLICY, DIR, T0).break_glass
    assert ann is not None and ann.limit is None and ann.limit_count is None
    assert ann.reviewers.people == ("ben@x.com", "cat@x.com") and ann.reviewers.owners
    ownerless = parse_policy(
        POLICY_YAML.replace("owners: [group:reviewers]", "owners: [req@x.com]")
    )
    alone = explain("req@x.com", ownerless.resource("two-stage"), ownerless, DIR, T0).break_glass  # type: ignore[arg-type]
    assert alone is not None and alone.reviewers.people == ADMINS and not alone.reviewers.owners


def test_explain_shows_who_may_not_request(example: tuple[Policy, DirectorySnapshot]) -> None:
    policy, directory = example
    prod = policy.resource("prod-db-admin")
    assert prod is not None
    e = explain("dora@example.com", prod, policy, directory, T0)
    assert not e.may_request
    assert e.request_problem is not None
    assert (
        refusal_text(e.request_problem)
        == "only group:engineering may request Production database (admin)"
    )
    e = explain("frank@example.com", prod, policy, directory, T0)
    assert (
        not e.may_request
        and e.request_problem is not None
        and refusal_text(e.request_problem)
        == "frank@example.com is marked inactive in the directory"
    )


def test_explain_shows_fallbacks_and_blocked_stages(
    example: tuple[Policy, DirectorySnapshot],
) -> None:
    policy, directory = example
    e = explain("sam@example.com", policy.resource("release-signing-key"), policy, directory, T0)  # type: ignore[arg-type]
    first, second = e.stages
    assert first.fallback and first.approvers == ("sara@example.com",) and not first.blocked
    assert any("has no manager that far up" in n for n in first.notes)
    assert second.blocked and second.approvers == ()


def test_explain_notes_people_who_could_approve_two_stages() -> None:
    twice = POLICY.resource("admins-twice")
    assert twice is not None
    first, second = explain("req@x.com", twice, POLICY, DIR, T0).stages
    assert first.approvers == second.approvers == ADMINS
    assert first.notes == ()
    assert second.notes == (
        "adm@x.com can also approve stage 1; one person approves at most one stage",
        "ada@x.com can also approve stage 1; one person approves at most one stage",
    )
    same = POLICY.resource("admins-twice-same")
    assert same is not None
    assert all(s.notes == () for s in explain("req@x.com", same, POLICY, DIR, T0).stages)


def test_explain_excludes_the_connector_identity() -> None:
    quorum_all = POLICY.resource("quorum-all")
    assert quorum_all is not None
    [stage] = explain("req@x.com", quorum_all, POLICY, DIR, T0).stages
    assert stage.approvers == REVIEWERS and stage.quorum == "all"
    assert stage.excluded == (Exclusion("bot@x.com", "executes grants for a connector"),)


# --- extending -----------------------------------------------------------------------------


def active_auto(granted: datetime) -> AccessRequest:
    request = provisioning_started(submitted("auto"), granted, V).request
    return grant_confirmed(request, granted, V, (timedelta(hours=1),)).request


def test_extend_adds_the_default_duration_and_moves_every_timer() -> None:
    a = active_auto(at(0))
    assert a.expires_at == at(240)
    t = extend(a, POLICY, "REQ@x.com", at(200))
    e = t.request
    assert e.status is Status.ACTIVE and e.expires_at == at(480)
    assert e.self_extended == timedelta(hours=4) and e.granted_at == at(0)
    assert t.effects[:2] == (
        ExpireAt("r1", due_at=at(480)),
        RemindAt("r1", before="1h", due_at=at(420)),
    )
    assert kinds(t.effects)[2:] == ["NotifyPerson:access_extended", "NotifyAdmins:access_extended"]
    [audit] = t.audit
    assert audit.action == "extended" and audit.actor == "req@x.com"
    assert audit.details == {
        "added": "4h",
        "expires_at": at(480).isoformat(),
        "self_extended": "4h",
        "cap": "6h",
    }
    # The timer planned for the old end finds nothing due; the new one ends the access.
    refused(lambda: expire(e, at(240), V), e, "not_due")
    assert expire(e, at(480), V).request.status is Status.EXPIRED


def test_extend_stops_at_the_cap_then_asks_for_a_new_request() -> None:
    once = extend(active_auto(at(0)), POLICY, "req@x.com", at(200)).request
    twice = extend(once, POLICY, "req@x.com", at(300)).request
    assert twice.expires_at == at(600) and twice.self_extended == timedelta(hours=6)
    err = refused(lambda: extend(twice, POLICY, "req@x.com", at(310)), twice, "extension_cap")
    assert "6h" in refusal_text(err) and "new request" in refusal_text(err)


def test_no_reminder_is_planned_in_the_past_after_a_late_extend() -> None:
    # The extension rule's step can leave less time than a reminder's lead: none is planned.
    policy = parse_policy(
        POLICY_YAML.replace("extend: {self_service: 6h}", "extend: {self_service: 6h, step: 30m}"),
        "p.yaml",
    )
    a = active_auto(at(0))
    t = extend(a, policy, "req@x.com", at(239))
    assert t.request.expires_at == at(270)
    assert not [e for e in t.effects if isinstance(e, RemindAt)]


def test_only_the_requester_extends_and_only_active_access() -> None:
    a = active_auto(at(0))
    refused(lambda: extend(a, POLICY, "adm@x.com", at(10)), a, "not_allowed")
    refused(lambda: extend(a, POLICY, "req@x.com", at(240)), a, "not_active")
    pending = submitted()
    refused(lambda: extend(pending, POLICY, "req@x.com", at(10)), pending, "not_active")
    ended = revoke(a, POLICY, "req@x.com", "", at(20)).request
    refused(lambda: extend(ended, POLICY, "req@x.com", at(30)), ended, "not_active")


def test_extend_without_a_rule_needs_approval() -> None:
    a = active_two_stage(granted=at(40))
    err = refused(lambda: extend(a, POLICY, "req@x.com", at(50)), a, "needs_approval")
    assert "approval" in refusal_text(err)


# --- reminding approvers -------------------------------------------------------------------


def test_a_nudge_names_only_the_approvers_still_waited_on() -> None:
    policy = parse_policy(
        POLICY_YAML.replace(
            "approval: [{approvers: [group:reviewers], quorum: 2}]",
            "nudge_after: 1h\n    approval: [{approvers: [group:reviewers], quorum: 2}]",
        ),
        "p.yaml",
    )
    t = submit(draft("quorum-two"), policy, DIR, T0, "r1")
    assert [e for e in t.effects if isinstance(e, NudgeAt)] == [
        NudgeAt("r1", stage=0, due_at=T0 + timedelta(hours=1))
    ]
    r = t.request
    assert nudge_due(r, 0, at(60)) == REVIEWERS
    one = approve(r, "ann@x.com", at(30), policy=policy)
    assert nudge_due(one, 0, at(60)) == ("ben@x.com", "cat@x.com")
    # Decided, moved on, or past its deadline: nobody is reminded of that stage.
    done = approve(one, "ben@x.com", at(40), policy=policy)
    assert nudge_due(done, 0, at(60)) == ()
    assert nudge_due(r, 1, at(60)) == ()
    assert nudge_due(r, 0, r.pending_deadline or at(0)) == ()
    # The next stage plans its own nudge from when it starts.
    staged = approve(submitted(), "ann@x.com", at(10))
    t = decide(submitted(), POLICY, DIR, "ann@x.com", "approve", at(10))
    assert NudgeAt("r1", stage=1, due_at=at(10) + timedelta(hours=4)) in t.effects
    assert nudge_due(staged, 1, at(20)) == ADMINS


def test_nudge_after_must_come_before_the_timeout() -> None:
    text = POLICY_YAML.replace("pending_timeout: 8h", "pending_timeout: 8h\n    nudge_after: 8h")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    [problem] = info.value.problems
    assert "nudge_after 8h is not before the pending_timeout 8h" in problem.message


def test_who_has_a_part_in_a_request() -> None:
    pending = submitted()  # stage 1: the reviewers are asked
    assert pending.involves("req@x.com") and pending.involves("ben@x.com")
    assert not pending.involves("adm@x.com")  # not asked yet: stage 2 has not started
    assert not pending.involves("out@x.com")
    decided = approve(pending, "ann@x.com", at(10))
    assert decided.involves("adm@x.com")  # now asked, at stage 2
    denied = decide(decided, POLICY, DIR, "ada@x.com", "deny", at(20), "Not now").request
    assert denied.involves("ada@x.com") and not denied.involves("vp@x.com")
