"""Random policies and random event sequences: the lifecycle invariants hold after every step.

Each example builds a policy from a fixed small directory with random stages and quorums,
submits one request and throws a random sequence of events at it (decisions by anyone,
including the requester, admins, strangers and the connector identity; cancel, revoke,
timers and connector outcomes), with the clock only moving forward.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, event, given, reject, settings
from hypothesis import strategies as st

from engine.access import (
    deprovision_confirmed,
    expire,
    extend,
    grant_confirmed,
    grant_failed,
    provisioning_started,
    revoke,
)
from engine.access_request import AccessRequest, Status
from engine.directory import DirectorySnapshot, snapshot_from_policy
from engine.drafts import RequestDraft
from engine.effects import Deprovision, NotifyApprovers, NudgeAt, Provision, TimeoutAt
from engine.lifecycle import cancel, decide, decision_trail_allows, submit, time_out
from engine.policy import Policy, Resource
from engine.policy_loading import PolicyError, parse_policy
from engine.refusals import Refused
from engine.transitions import Transition
from message_templates import refusal_text

REQUESTER = "req@x.com"
EXECUTOR = "bot@x.com"
ADMINS = ["a1@x.com", "a2@x.com"]
PEOPLE: list[dict[str, Any]] = [
    {"email": REQUESTER, "name": "Req", "manager": "m1@x.com"},
    {"email": "m1@x.com", "name": "M1", "manager": "m2@x.com"},
    {"email": "m2@x.com", "name": "M2"},
    {"email": "p1@x.com", "name": "P1", "manager": "m1@x.com"},
    {"email": "p2@x.com", "name": "P2", "manager": "m1@x.com"},
    {"email": "p3@x.com", "name": "P3", "manager": "m2@x.com"},
    {"email": "p4@x.com", "name": "P4", "manager": "m2@x.com", "active": False},
    {"email": "a1@x.com", "name": "A1", "manager": "m2@x.com"},
    {"email": "a2@x.com", "name": "A2", "manager": "m2@x.com"},
    {"email": "s@x.com", "name": "Stranger"},
    {"email": EXECUTOR, "name": "Bot"},
]
GROUPS = {
    "g1": ["p1@x.com", "p2@x.com", EXECUTOR, REQUESTER],
    "g2": ["p2@x.com", "p3@x.com", "p4@x.com"],
    "g3": ["a1@x.com", "p3@x.com"],
}
RULES = [
    "manager",
    "manager:2",
    "resource_owner",
    "admins",
    "group:g1",
    "group:g2",
    "group:g3",
    "user:p3@x.com",
    "user:req@x.com",
    "user:bot@x.com",
]
ACTORS = [p["email"] for p in PEOPLE] + ["ghost@x.com"]
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
FINAL = frozenset(s for s in Status if s.is_final)


@dataclass(frozen=True)
class Setup:
    policy: Policy
    resource: Resource
    draft: RequestDraft
    directories: tuple[DirectorySnapshot, DirectorySnapshot]

    def __repr__(self) -> str:  # short enough to read in a falsifying example
        res = self.resource
        stages = [(s.approvers, s.quorum) for s in res.approval] or "auto"
        return (
            f"Setup(admins={list(self.policy.admins.users)}, owners={list(res.owners)}, "
            f"stages={stages}, allow_same={res.allow_same_approver_across_stages}, "
            f"duration={self.draft.duration}, break_glass={self.draft.break_glass})"
        )


def _other_directory(base: DirectorySnapshot) -> DirectorySnapshot:
    """The directory a while later: a new manager for the requester, p2 deactivated."""
    people = dict(base.people)
    people[REQUESTER] = dataclasses.replace(people[REQUESTER], manager="p3@x.com")
    people["p2@x.com"] = dataclasses.replace(people["p2@x.com"], active=False)
    return DirectorySnapshot(people=people, groups=base.groups)


stage_st = st.builds(
    lambda rules, quorum, named: {
        "approvers": rules,
        "quorum": quorum,
        **({"name": "Named"} if named else {}),
    },
    st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True),
    st.sampled_from([1, 1, 2, 3, "all"]),
    st.booleans(),
)


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    auto = draw(st.integers(0, 9)) == 0
    risk = "low" if auto else draw(st.sampled_from(["medium", "high"]))
    resource: dict[str, Any] = {
        "id": "res",
        "name": "Resource",
        "risk": risk,
        "owners": draw(st.sampled_from([["p1@x.com"], ["group:g2"], ["group:g3", "p1@x.com"]])),
        "grant": {"connector": "ldap", "group": "cn=res"},
        "duration": {"default": "1h", "max": "4h"},
        "justification": {"min_length": 5},
        "reminders": ["1h", "15m"],
        "pending_timeout": "8h",
        "break_glass": {"max": "1h"},
        "allow_same_approver_across_stages": draw(st.booleans()),
        "approval": "auto" if auto else draw(st.lists(stage_st, min_size=1, max_size=3)),
    }
    if risk != "high" and draw(st.booleans()):
        resource["extend"] = {"self_service": draw(st.sampled_from(["30m", "2h", "4h"]))}
    document = {
        "admins": {"users": draw(st.sampled_from([ADMINS, ADMINS[:1], []]))},
        "directory": {"people": PEOPLE, "groups": GROUPS},
        "connectors": {"ldap": {"type": "ldap", "identity": EXECUTOR}},
        "resources": [resource],
    }
    try:
        policy = parse_policy(yaml.safe_dump(document, sort_keys=False))
    except PolicyError:
        # Most often a quorum above the people a stage can name (the loader's job to
        # refuse, tested elsewhere): ask for one approval per stage instead.
        if not isinstance(resource["approval"], list):
            reject()
        resource["approval"] = [{**stage, "quorum": 1} for stage in resource["approval"]]
        try:
            policy = parse_policy(yaml.safe_dump(document, sort_keys=False))
        except PolicyError:
            reject()
    directory = snapshot_from_policy(policy)
    draft = RequestDraft(
        requester=REQUESTER,
        resource_id="res",
        justification="routine maintenance",
        duration=draw(st.sampled_from([None, "30m", "1h", "2h", "4h"])),
        break_glass=draw(st.integers(0, 9)) == 0,
    )
    if draft.break_glass and draft.duration not in (None, "30m", "1h"):
        draft = dataclasses.replace(draft, duration=None)
    res = policy.resource("res")
    assert res is not None
    return Setup(policy, res, draft, (directory, _other_directory(directory)))


actor_st = st.one_of(
    st.sampled_from(ACTORS),
    st.sampled_from([REQUESTER, *ADMINS]),  # the people who may cancel and revoke
    # "the k-th approver of the current stage", so sequences make progress often
    st.integers(0, 3).map(lambda k: f"current:{k}"),
    st.integers(0, 3).map(lambda k: f"current:{k}"),
)
event_st = st.tuples(
    st.sampled_from(
        [
            "decide",
            "decide",
            "decide",
            "decide",
            "cancel",
            "revoke",
            "time_out",
            "provisioning_started",
            "grant_confirmed",
            "grant_confirmed",
            "grant_failed",
            "expire",
            "extend",
            "deprovision_confirmed",
            "retry_last_decision",
        ]
    ),
    actor_st,
    st.sampled_from(["approve", "approve", "approve", "deny"]),
    st.sampled_from(["", "", "needs review"]),
    st.sampled_from([None, None, "current", "stale"]),
    st.integers(0, 1),  # which directory snapshot the use case fetched
    st.sampled_from([0, 1, 5, 30, 90, 240, 600]),  # minutes the clock moves on first
)


def _actor(spec: str, request: AccessRequest) -> str:
    if not spec.startswith("current:"):
        return spec
    stage = request.stage
    if stage is None or not stage.approvers:
        return "s@x.com"
    return stage.approvers[int(spec.partition(":")[2]) % len(stage.approvers)]


def check_state(r: AccessRequest, setup: Setup) -> None:
    """What must hold of any request the engine produced."""
    allow_same = setup.resource.allow_same_approver_across_stages
    approvals = [d for d in r.decisions if d.outcome == "approve"]
    # The requester never approves and is never asked; the executor neither.
    assert all(d.approver != REQUESTER for d in r.decisions)
    assert all(d.approver != EXECUTOR for d in r.decisions)
    for stage in r.stages:
        assert REQUESTER not in stage.approvers
        assert EXECUTOR not in stage.approvers
        assert len(set(stage.approvers)) == len(stage.approvers)
        assert stage.required >= 1
        assert len(stage.approvers) >= stage.required  # never a stage nobody can complete
    assert [s.index for s in r.stages] == list(range(len(r.stages)))
    assert len(r.stages) <= r.stage_count
    # Every decision was made by someone that stage asked, on a stage that exists, once.
    for d in r.decisions:
        assert d.stage < len(r.stages)
        assert d.approver in r.stages[d.stage].approvers
    pairs = Counter((d.approver, d.stage) for d in r.decisions)
    assert max(pairs.values(), default=0) <= 1
    # One person approves at most one stage, and is not even asked for a later one.
    if not allow_same:
        stages_by_person: dict[str, set[int]] = {}
        for d in approvals:
            stages_by_person.setdefault(d.approver, set()).add(d.stage)
        assert all(len(s) == 1 for s in stages_by_person.values()), stages_by_person
        for d in approvals:
            for later in r.stages[d.stage + 1 :]:
                assert d.approver not in later.approvers
    assert [d.at for d in r.decisions] == sorted(d.at for d in r.decisions)
    # A stage is left behind only once it has its quorum.
    for stage in r.stages[:-1]:
        assert len(r.approvals_in(stage.index)) >= stage.required
    if r.status is Status.PENDING:
        current = r.stage
        assert current is not None and current is r.stages[-1]
        assert len(r.approvals_in(current.index)) < current.required
        assert r.pending_deadline is not None
    # One denial ends the request.
    denials = [d for d in r.decisions if d.outcome == "deny"]
    assert len(denials) <= 1
    if denials:
        assert r.status is Status.DENIED and r.decisions[-1] == denials[0]
    if r.status is Status.DENIED:
        assert denials and r.ended_by == denials[0].approver
    # Every grant traces to the decisions that allowed it; the clock starts at the grant.
    if r.status in (Status.APPROVED, Status.PROVISIONING, Status.ACTIVE) or r.granted_at:
        assert decision_trail_allows(r), r
    if r.granted_at is not None:
        assert r.expires_at == r.granted_at + r.duration + r.self_extended
    else:
        assert r.expires_at is None
    if r.status is Status.ACTIVE:
        assert r.granted_at is not None
    if r.status.is_final:
        assert r.ended_at is not None
    if r.approval_mode != "stages":
        assert r.decisions == () and r.stages == ()
    # Time added without approvers never passes the resource's cap (none without a rule).
    rule = setup.resource.extend
    assert r.self_extended <= (rule.self_service if rule else timedelta(0))
    assert r.duration <= (
        setup.resource.break_glass.max  # type: ignore[union-attr]
        if r.break_glass
        else setup.resource.duration.max
    )


def check_step(
    before: AccessRequest, t: Transition, kind: str, setup: Setup, now: datetime
) -> None:
    """What must hold of one accepted transition."""
    after = t.request
    assert after.id == before.id and after.requester == before.requester
    assert after.duration == before.duration and after.created_at == before.created_at
    # Final states never change back; only the cleanup timestamp may be filled in once.
    if before.status.is_final:
        assert after.status is before.status
        assert dataclasses.replace(after, deprovisioned_at=before.deprovisioned_at) == before
        assert before.deprovisioned_at is None or after.deprovisioned_at == before.deprovisioned_at
    # Decisions only ever grow, by at most one, and only through decide.
    assert after.decisions[: len(before.decisions)] == before.decisions
    added = len(after.decisions) - len(before.decisions)
    assert added in ((0, 1) if kind == "decide" else (0,))
    if kind == "decide":
        assert added == 1 and t.decision == after.decisions[-1] and t.decision.at == now
    # Reported as granted only after the connector confirmed it.
    if after.status is Status.ACTIVE and before.status is not Status.ACTIVE:
        assert kind == "grant_confirmed"
        assert before.status in (Status.APPROVED, Status.PROVISIONING)
        assert after.granted_at == now
        [granted] = [a for a in t.audit if a.action == "granted"]
        assert granted.details["approvals"] == [
            {"stage": d.stage, "approver": d.approver, "at": d.at.isoformat()}
            for d in after.decisions
            if d.outcome == "approve"
        ]
    if kind == "extend":
        # Only the requester, only while access is in force, only forward, and all counted.
        assert before.status is after.status is Status.ACTIVE
        assert before.expires_at is not None and after.expires_at is not None
        assert now < before.expires_at < after.expires_at
        assert after.self_extended - before.self_extended == after.expires_at - before.expires_at
        assert [a.actor for a in t.audit] == [REQUESTER]
    elif before.granted_at is not None:
        assert after.granted_at == before.granted_at and after.expires_at == before.expires_at
    # The connector is asked only for an approved request the decisions allow.
    if any(isinstance(e, Provision) for e in t.effects):
        assert after.status is Status.APPROVED and decision_trail_allows(after)
    for e in t.effects:
        if isinstance(e, NotifyApprovers):
            assert after.status is Status.PENDING and after.stage is not None
            assert e.stage == after.stage.index
        if isinstance(e, TimeoutAt):
            assert e.due_at == after.pending_deadline
        if isinstance(e, NudgeAt):
            # A reminder for the stage that just started, always before it could time out.
            assert after.stage is not None and e.stage == after.stage.index
            assert after.pending_deadline is not None and now < e.due_at < after.pending_deadline
    # Every grant ends: leaving a state where access may exist always asks for its removal.
    if (
        before.status in (Status.PROVISIONING, Status.ACTIVE)
        and after.status.is_final
        and kind != "grant_failed"
    ):
        assert [e for e in t.effects if isinstance(e, Deprovision)] == [
            Deprovision(
                after.id,
                connector="ldap",
                group="cn=res",
                principal=REQUESTER,
                reason=after.status.value,
            )
        ]
    if any(isinstance(e, Deprovision) for e in t.effects):
        assert before.status in (Status.PROVISIONING, Status.ACTIVE)
    # A grant that failed after the connector was asked may have landed: it is taken back.
    if kind == "grant_failed" and before.status is Status.PROVISIONING:
        assert [e.reason for e in t.effects if isinstance(e, Deprovision)] == ["grant_failed"]
    if after.status.is_final and not any(isinstance(e, Deprovision) for e in t.effects):
        assert (
            after.deprovisioned_at is not None
            or before.status.is_final
            or (before.status not in (Status.PROVISIONING, Status.ACTIVE))
        )
    if after.status is Status.EXPIRED and before.status is not Status.EXPIRED:
        assert before.expires_at is not None and now >= before.expires_at
    if after.status is Status.TIMED_OUT and before.status is not Status.TIMED_OUT:
        assert before.pending_deadline is not None and now >= before.pending_deadline
    assert all(a.policy_version == setup.policy.version for a in t.audit)
    assert all(a.request_id == after.id for a in t.audit)


def apply(
    kind: str,
    request: AccessRequest,
    setup: Setup,
    now: datetime,
    actor: str,
    outcome: str,
    reason: str,
    expected: str | None,
    directory: DirectorySnapshot,
) -> Callable[[], Transition]:
    policy, v = setup.policy, setup.policy.version
    stage = request.stage
    expected_stage = None
    if expected == "current":
        expected_stage = stage.index if stage else 0
    elif expected == "stale":
        expected_stage = (stage.index if stage else 0) + 1
    calls: dict[str, Callable[[], Transition]] = {
        "decide": lambda: decide(
            request,
            policy,
            directory,
            actor,
            outcome,
            now,
            reason,
            expected_stage,  # type: ignore[arg-type]
        ),
        "cancel": lambda: cancel(request, actor, now, v),
        "revoke": lambda: revoke(request, policy, actor, reason, now),
        "time_out": lambda: time_out(request, now, v),
        "provisioning_started": lambda: provisioning_started(request, now, v),
        "grant_confirmed": lambda: grant_confirmed(request, now, v, setup.resource.reminders),
        "grant_failed": lambda: grant_failed(request, "unreachable: ldap down", now, v),
        "expire": lambda: expire(request, now, v),
        "extend": lambda: extend(request, policy, actor, now),
        "deprovision_confirmed": lambda: deprovision_confirmed(request, now, v),
    }
    return calls[kind]


def run(setup: Setup, events: list[tuple[Any, ...]]) -> tuple[AccessRequest, datetime]:
    now = T0
    try:
        first = submit(setup.draft, setup.policy, setup.directories[0], now, "r1")
    except Refused:
        raise AssertionError("the generated draft is valid") from None
    request = first.request
    check_state(request, setup)
    last_decide: Callable[[AccessRequest, bool], Transition] | None = None
    for kind, actor_spec, outcome, reason, expected, dir_index, minutes in events:
        now += timedelta(minutes=minutes)
        if kind == "retry_last_decision":
            # A double click or a platform retry of the last accepted decision: the same
            # payload (its card's stage) again. Without the stage it is still refused unless
            # the policy lets one person approve several stages.
            if last_decide is None:
                continue
            retries = [True] if setup.resource.allow_same_approver_across_stages else [True, False]
            for with_stage in retries:
                before = copy.deepcopy(request)
                try:
                    last_decide(request, with_stage)
                except Refused:
                    assert request == before
                    continue
                raise AssertionError("a repeated decision was accepted twice")
            continue
        actor = _actor(actor_spec, request)
        directory = setup.directories[dir_index]
        call = apply(kind, request, setup, now, actor, outcome, reason, expected, directory)
        before = copy.deepcopy(request)
        try:
            t = call()
        except Refused as refusal:
            assert request == before, "a refusal changed the request"
            assert refusal.refusals and all(refusal_text(r) for r in refusal.refusals)
            continue
        assert request == before, "a transition changed its input"
        if kind == "decide":
            assert expected != "stale", "a decision from an out-of-date card was accepted"
        check_step(before, t, kind, setup, now)
        check_state(t.request, setup)
        if kind == "decide":
            assert t.decision is not None
            bound = (actor, outcome, reason, directory, now, t.decision.stage)

            def last_decide(
                r: AccessRequest, with_stage: bool, bound: tuple[Any, ...] = bound
            ) -> Transition:
                a, o, why, d, at, stage_index = bound
                expected_stage = stage_index if with_stage else None
                return decide(r, setup.policy, d, a, o, at, why, expected_stage)

        request = t.request
    return request, now


SWEEP_ACTORS = (REQUESTER, *ADMINS, "p1@x.com", "p3@x.com", "m1@x.com", EXECUTOR, "current:0")
SWEEP_CALLS = (("approve", ""), ("deny", "no"), ("approve", "ok"))


def look_ahead(request: AccessRequest, setup: Setup, now: datetime) -> None:
    """Try every event by every kind of actor on the end state; each must keep the rules."""
    snapshot = copy.deepcopy(request)
    attempts: list[tuple[str, str, str, str, DirectorySnapshot]] = []
    for kind in ("decide", "cancel", "revoke"):
        for actor_spec in SWEEP_ACTORS:
            for outcome, reason in SWEEP_CALLS:
                for directory in setup.directories if kind == "decide" else setup.directories[:1]:
                    attempts.append((kind, _actor(actor_spec, request), outcome, reason, directory))
    for kind in ("time_out", "provisioning_started", "grant_confirmed", "grant_failed", "expire"):
        attempts.append((kind, "", "", "", setup.directories[0]))
    attempts.append(("deprovision_confirmed", "", "", "", setup.directories[0]))
    for kind, actor, outcome, reason, directory in attempts:
        call = apply(kind, request, setup, now, actor, outcome, reason, None, directory)
        try:
            t = call()
        except Refused:
            continue
        finally:
            assert request == snapshot
        check_step(snapshot, t, kind, setup, now)
        check_state(t.request, setup)


def finish(request: AccessRequest, now: datetime, setup: Setup) -> None:
    """Every request can still end, and nothing moves one that has ended."""
    event(f"ended {request.status.value}" + (" after a grant" if request.granted_at else ""))
    v, tick = setup.policy.version, timedelta(microseconds=1)
    look_ahead(request, setup, now)
    if request.status.is_final:
        later = (request.ended_at or T0) + timedelta(days=30)
        for kind in ("decide", "cancel", "revoke", "time_out", "provisioning_started"):
            for actor in (REQUESTER, *ADMINS, "p1@x.com", "p3@x.com"):
                for outcome, reason in (("approve", ""), ("deny", "no"), ("approve", "ok")):
                    before = copy.deepcopy(request)
                    call = apply(
                        kind,
                        request,
                        setup,
                        later,
                        actor,
                        outcome,
                        reason,
                        None,
                        setup.directories[0],
                    )
                    try:
                        call()
                    except Refused:
                        assert request == before
                    else:
                        raise AssertionError(f"{kind} by {actor} moved a {request.status} request")
        for kind in ("grant_confirmed", "grant_failed", "expire"):
            try:
                apply(kind, request, setup, later, "", "", "", None, setup.directories[0])()
            except Refused:
                pass
            else:
                raise AssertionError(f"{kind} moved a {request.status} request")
        if request.status in (Status.EXPIRED, Status.REVOKED):
            done = deprovision_confirmed(request, later, v).request
            assert done == dataclasses.replace(request, deprovisioned_at=done.deprovisioned_at)
            assert deprovision_confirmed(done, later + tick, v).request == done
    if request.status is Status.PENDING:
        assert request.pending_deadline is not None
        try:
            time_out(request, request.pending_deadline - tick, v)
        except Refused as refusal:
            assert refusal.code == "not_due"
        else:
            raise AssertionError("timed out before the deadline")
        assert time_out(request, request.pending_deadline, v).request.status is Status.TIMED_OUT
    if request.status is Status.ACTIVE:
        assert request.expires_at is not None
        try:
            expire(request, request.expires_at - tick, v)
        except Refused as refusal:
            assert refusal.code == "not_due"
        else:
            raise AssertionError("expired before its time")
        ended = expire(request, request.expires_at, v).request
        assert ended.status is Status.EXPIRED
        done = deprovision_confirmed(ended, request.expires_at, v).request
        assert done.deprovisioned_at == request.expires_at
        assert deprovision_confirmed(done, request.expires_at, v).request == done


@settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(setup=setups(), events=st.lists(event_st, max_size=30))
def test_invariants_hold_after_every_event(setup: Setup, events: list[tuple[Any, ...]]) -> None:
    finish(*run(setup, events), setup)


# Sequences that mostly ask the current approvers, so many reach a grant and its end.
progress_st = st.tuples(
    st.sampled_from(
        ["decide"] * 6 + ["provisioning_started", "grant_confirmed", "grant_confirmed", "expire"]
    ),
    st.integers(0, 3).map(lambda k: f"current:{k}"),
    st.sampled_from(["approve"] * 9 + ["deny"]),
    st.just("ok"),
    st.sampled_from([None, "current"]),
    st.integers(0, 1),
    st.sampled_from([1, 10, 30, 60, 300]),
)


@settings(
    max_examples=150,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(setup=setups(), events=st.lists(progress_st, min_size=3, max_size=20))
def test_invariants_hold_on_paths_to_a_grant(setup: Setup, events: list[tuple[Any, ...]]) -> None:
    finish(*run(setup, events), setup)
