"""Real requests and views, made by the engine, to render the message templates of each chat.

Requests are made by the engine itself (``submit``, ``decide`` and the other transitions on
the example policy) and shown through ``bot.presentation.request_view``, as the notifier
does. Beside the representative data is worst-case data: hostile text wherever a person, a
directory or a connector supplies text, at the longest each field takes, 30 decisions, 40
approvers, 270 resources in the form, 40 drifting groups. What is hostile depends on the
chat's markup, so each chat's tests bring their own (a ``Hostile``) to ``TemplateData``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

from bot.forms import form_data
from bot.presentation import History, request_view
from bot.reconcile import DriftRun
from bot.review_views import to_review_data
from engine.access import (
    deprovision_confirmed,
    expire,
    extend,
    grant_confirmed,
    grant_failed,
    provisioning_started,
    revoke,
)
from engine.access_request import AccessRequest, Decision, StageState, Status
from engine.directory import DirectorySnapshot, Person, snapshot_from_policy
from engine.drafts import RequestDraft
from engine.drift import Holding, Target, find_drift
from engine.lifecycle import cancel, decide, submit, time_out
from engine.policy import Policy
from engine.policy_loading import parse_policy
from engine.review_items import Campaign

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JUSTIFICATION = "Investigating INC-42: replication lag on the primary"
NO_TEAMS = "dan@example.com"  # someone without a Teams account: never in a refresh list

Chat = Literal["slack", "teams"]
Case = tuple[str, str, dict[str, Any]]  # (template, label, data)


@dataclass(frozen=True)
class Hostile:
    """Text that would break one chat's markup if it were shown live."""

    text: str  # one run of it; repeated to fill the longer fields
    name: str  # a person's or a stage's name, 120 characters
    resource: str  # a resource's name in the policy

    @property
    def long(self) -> str:
        """2000 characters: a justification, a failure, a description."""
        return (self.text * (2000 // len(self.text) + 1))[:2000]

    @property
    def reason(self) -> str:
        """500 characters: a decision's or an ending's reason."""
        return self.long[:500]

    @property
    def ticket(self) -> str:
        return self.long[:100]


# --- real requests in every state ---------------------------------------------------------


@dataclass(frozen=True)
class World:
    policy: Policy
    directory: DirectorySnapshot
    requests: dict[str, AccessRequest]


def draft(resource: str, **kw: Any) -> RequestDraft:
    values: dict[str, Any] = {
        "requester": "alice@example.com",
        "resource_id": resource,
        "justification": JUSTIFICATION,
    }
    values.update(kw)
    return RequestDraft(**values)


def requests_in_every_state(policy: Policy) -> dict[str, AccessRequest]:
    d = snapshot_from_policy(policy)
    v = policy.version
    at = T0
    out: dict[str, AccessRequest] = {}

    def step(minutes: int) -> datetime:
        return at + timedelta(minutes=minutes)

    p1 = submit(draft("prod-db-admin", ticket="INC-42"), policy, d, at, "R-1").request
    p2 = decide(p1, policy, d, "bob@example.com", "approve", step(5), "Looks fine").request
    p3 = decide(p2, policy, d, "dora@example.com", "approve", step(10)).request
    approved = decide(p3, policy, d, "sam@example.com", "approve", step(15)).request
    provisioning = provisioning_started(approved, step(16), v).request
    active = grant_confirmed(provisioning, step(17), v, ()).request
    expired = expire(active, active.expires_at or step(0), v).request
    out.update(
        pending_stage1=p1,
        pending_stage2=p2,
        pending_stage3=p3,
        approved=approved,
        provisioning=provisioning,
        active=active,
        expired=expired,
        ended=deprovision_confirmed(expired, step(80), v).request,
        returned=revoke(active, policy, "alice@example.com", "", step(30)).request,
        revoked=revoke(active, policy, "sam@example.com", "Left the team", step(30)).request,
        revoked_pending=revoke(p2, policy, "sara@example.com", "Wrong resource", step(8)).request,
        denied=decide(
            p2, policy, d, "dora@example.com", "deny", step(12), "Use the read replica"
        ).request,
        cancelled=cancel(p1, "alice@example.com", step(3), v).request,
        timed_out=time_out(p1, p1.pending_deadline or step(0), v).request,
        failed=grant_failed(
            provisioning, "slack usergroups.update: ratelimited", step(20), v
        ).request,
    )
    glass = submit(
        draft("prod-db-admin", ticket="INC-99", break_glass=True), policy, d, at, "R-2"
    ).request
    out["break_glass"] = glass
    out["break_glass_active"] = grant_confirmed(glass, step(1), v, ()).request
    out["break_glass_refused"] = submit(
        draft("prod-db-admin", ticket="INC-98", break_glass=True),
        policy,
        d,
        at,
        "R-6",
        recent_break_glass=2,  # the example allows 2 in 30 days
    ).request
    out["auto"] = submit(draft("staging-db-read"), policy, d, at, "R-3").request
    auto_active = grant_confirmed(
        provisioning_started(out["auto"], step(1), v).request, step(2), v, ()
    ).request
    out["extended"] = extend(auto_active, policy, "alice@example.com", step(30)).request
    s1 = submit(draft("release-signing-key", ticket="CHG-7"), policy, d, at, "R-4").request
    s2 = decide(s1, policy, d, "carol@example.com", "approve", step(5)).request
    out["signing_partial"] = decide(s2, policy, d, "sam@example.com", "approve", step(6)).request
    out["ci_pending"] = submit(
        draft("ci-admin", requester="erin@example.com"), policy, d, at, "R-5"
    ).request
    return out


@cache
def world() -> World:
    """The example policy, its directory as written there, and requests in every state."""
    policy = parse_policy(EXAMPLE_POLICY.read_bytes(), str(EXAMPLE_POLICY))
    return World(policy, snapshot_from_policy(policy), requests_in_every_state(policy))


def teams_people(people: Mapping[str, Person], hostile: bool) -> dict[str, Person]:
    """The directory with a Teams id for everyone but Dan (hostile: JSON-breaking ids)."""
    prefix = '29:"\\</script>' if hostile else "29:1"
    return {
        email: replace(person, teams_id=None if email == NO_TEAMS else prefix + email.split("@")[0])
        for email, person in people.items()
    }


@cache
def teams_world() -> World:
    """The world with Teams ids in the directory."""
    w = world()
    people = teams_people(w.directory.people, hostile=False)
    return World(w.policy, DirectorySnapshot(people, w.directory.groups), w.requests)


@cache
def worst_world(hostile: Hostile, chat: Chat) -> World:
    """The example policy with hostile resource and stage names, and hostile people.

    Everyone but Bob gets a hostile name. On Slack half lose their Slack id (names are shown
    then) and only Bob keeps his Teams id; on Teams everyone but Dan has a hostile Teams id.
    """
    text = EXAMPLE_POLICY.read_text()
    for field, value, hostile_value in (
        ("name", "Production database (admin)", hostile.resource),
        ("description", "Superuser on the primary PostgreSQL cluster", hostile.long),
        ("name", "Security sign-off", hostile.name),
    ):
        assert f"{field}: {value}" in text, f"the example policy no longer has {value!r}"
        quoted = json.dumps(hostile_value, ensure_ascii=False)  # a YAML double-quoted string
        text = text.replace(f"{field}: {value}", f"{field}: {quoted}")
    policy = parse_policy(text.encode(), "worst.yaml")
    base = snapshot_from_policy(policy)
    people = dict(base.people)
    for i, (email, person) in enumerate(sorted(people.items())):
        if email == "bob@example.com":
            continue
        people[email] = replace(person, name=f"{hostile.name} {i}")
        if chat == "slack":
            slack_id = person.slack_id if i % 2 else None
            people[email] = replace(people[email], slack_id=slack_id, teams_id=None)
    for i in range(40):
        email = f"x{i}@example.com"
        people[email] = Person(email=email, name=f"{hostile.name} x{i}")
    if chat == "teams":
        people = teams_people(people, hostile=True)
    directory = DirectorySnapshot(people, base.groups)
    return World(policy, directory, requests_in_every_state(policy))


# (request, viewer) pairs for the approval card: approvers of the current stage, of earlier
# stages and of none, requesters, on pending and on decided requests.
APPROVER_CASES = [
    ("pending_stage1", "bob@example.com"),
    ("pending_stage1", "alice@example.com"),
    ("pending_stage2", "bob@example.com"),
    ("pending_stage2", "dan@example.com"),
    ("pending_stage2", "dora@example.com"),
    ("pending_stage3", "sam@example.com"),
    ("pending_stage3", "sara@example.com"),
    ("signing_partial", "sam@example.com"),
    ("signing_partial", "sara@example.com"),
    ("denied", "dan@example.com"),
    ("approved", "sam@example.com"),
    ("active", "bob@example.com"),
    ("cancelled", "bob@example.com"),
    ("timed_out", "bob@example.com"),
    ("revoked_pending", "dan@example.com"),
    ("ci_pending", "bob@example.com"),
    ("ci_pending", "erin@example.com"),
    ("break_glass", "sam@example.com"),
    ("break_glass_refused", "bob@example.com"),
]

# The templates with a "Request again" button, and the request each shows.
REQUEST_AGAIN = [
    ("request_denied", "denied"),
    ("request_timed_out", "timed_out"),
    ("access_ended", "ended"),
    ("request_failed", "failed"),
]


# --- data for templates that show no request, or not only one -------------------------------


def request_form(selected: str | None, break_glass: bool = False, **prefill: str) -> dict[str, Any]:
    return form_data(list(world().policy.resources), selected, prefill, "meta", break_glass)


def to_review(n: int) -> dict[str, Any]:
    """The home's "to review": ``n`` open campaigns with items waiting (five are listed)."""
    found = [
        (
            Campaign(
                id=f"C-{i:08d}",
                review_id=f"quarterly-{i}",
                kind="break_glass" if i % 3 == 2 else "campaign",
                status="open",
                policy_version="v1",
                started_by="sam@example.com",
                started_at=T0,
                due_at=T0 + timedelta(days=7 + i),
                on_no_decision="revoke",
                max_revocations=25,
            ),
            300 - i,
        )
        for i in range(n)
    ]
    counts = [{"undecided": waiting, "kept": 12} for _, waiting in found]
    return to_review_data(found, counts, T0)


def admin_reply(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": title, "lines": [], "requests": [], "events": [], "footer": "", **kw}


def failure_context(error: str) -> dict[str, Any]:
    return {"context": {"error": error, "kind": "deprovision", "attempts": "5"}}


def drift_report(dry_run: bool = False, errors: bool = False) -> dict[str, Any]:
    """A drift report made by the engine on the example policy, as the reconciler shows it."""
    policy = world().policy
    signing, staging = Target("slack-groups", "S0SIGNING"), Target("slack-groups", "S0STAGINGRO")
    grants = [Holding("R-7", "dora@example.com", "slack-groups", "S0SIGNING")]
    members = {
        signing: ["eve@example.com", "U0NOEMAIL"],
        staging: ["alice@example.com"],
        Target("slack-groups", "S0DBADMIN"): [],
        Target("slack-groups", "S0CIADMIN"): [],
        Target("slack-groups", "S0DEPLOY"): [],
    }
    failures: dict[Target, str] = {}
    if errors:
        del members[staging]
        failures[staging] = "unreachable: slack usergroups.users.list timed out"
    report = find_drift(policy, grants, members, failures)
    failed: dict[tuple[Target, str], str] = (
        {} if dry_run else {(signing, "eve@example.com"): "rejected: not allowed"}
    )
    return DriftRun(report, policy, T0, dry_run, remove_failed=failed).view()


# --- one chat's data: views with its ids, worst cases with its hostile text -----------------


@dataclass(frozen=True)
class TemplateData:
    """Data for one chat's templates, representative and worst case."""

    chat: Chat
    hostile: Hostile

    def world(self) -> World:
        return teams_world() if self.chat == "teams" else world()

    def worst_world(self) -> World:
        return worst_world(self.hostile, self.chat)

    def worst(self, request: AccessRequest, *, stage_with_bob: bool = False) -> AccessRequest:
        """The request with hostile text everywhere a person can type, and 30 decisions."""
        h = self.hostile
        decisions = tuple(
            Decision(
                stage=i % 2,
                approver=f"x{i}@example.com",
                outcome="approve" if i % 3 else "deny",
                at=T0 + timedelta(minutes=i),
                reason=h.reason,
            )
            for i in range(30)
        )
        changes: dict[str, Any] = {
            "justification": h.long,
            "ticket": h.ticket,
            "decisions": decisions,
            "end_reason": h.reason if request.end_reason else None,
            "failure": h.long if request.status is Status.FAILED else None,
        }
        if request.status is Status.PENDING:
            approvers = tuple(f"x{i}@example.com" for i in range(40))
            if stage_with_bob:
                approvers = ("bob@example.com", *approvers)
            changes["stages"] = (
                *request.stages[:-1],
                StageState(index=2, label=h.name, approvers=approvers, required=40, fallback=True),
            )
        return request.evolve(**changes)

    def view(
        self,
        key: str,
        viewer: str | None = "alice@example.com",
        *,
        hostile: bool = False,
        previous: int = 0,
        last_ended: datetime | None = None,
        directory: DirectorySnapshot | None = None,
    ) -> dict[str, Any]:
        """The request ``key`` as ``viewer`` sees it (hostile: its worst case)."""
        w = self.worst_world() if hostile else self.world()
        request = w.requests[key]
        if hostile:
            request = self.worst(request, stage_with_bob=viewer == "bob@example.com")
        people = (directory or w.directory).people
        history = History(previous, last_ended)
        return request_view(request, w.policy, people, T0 + timedelta(minutes=40), viewer, history)

    def r(
        self,
        key: str,
        viewer: str | None = "alice@example.com",
        previous: int = 0,
        last_ended: datetime | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A template's data showing one request."""
        return {"r": self.view(key, viewer, previous=previous, last_ended=last_ended), **extra}

    def w(self, key: str, viewer: str | None = "alice@example.com", **extra: Any) -> dict[str, Any]:
        """A template's data showing one request at its worst."""
        view = self.view(key, viewer, hostile=True, previous=7, last_ended=T0 - timedelta(days=3))
        return {"r": view, **extra}

    def resource(self, i: int) -> dict[str, Any]:
        """A resource of the request form, hostile and with 149 durations."""
        h = self.hostile
        return {
            "id": f"res-{i}",
            "name": f"{h.name} {i}",
            "risk": "critical",
            "description": h.long,
            "duration_options": [
                {"value": f"{n}h", "label": f"{n} hours {h.text}"} for n in range(1, 150)
            ],
            "default_duration": "1h",
            "max_duration": "149h",
            "ticket_pattern": "^" + "(INC|CHG)-[0-9]+" * 20 + "$",
            "min_justification": 20,
            "break_glass": {
                "max": "149h",
                "max_spoken": f"149 hours {h.text}",
                "limit_count": 99,
                "limit_per": h.text,
            },
        }

    def worst_request_form(self, selected: int) -> dict[str, Any]:
        """270 groups of 250 hostile resources, the ``selected``-th chosen, hostile prefill."""
        h = self.hostile
        resources = [self.resource(i) for i in range(250)]
        return {
            "resources": [
                {"risk": "critical", "label": h.name, "resources": resources[:150]},
                *(
                    {"risk": "x", "label": f"group {i}", "resources": resources[i : i + 1]}
                    for i in range(120)
                ),
            ],
            "selected": resources[selected],
            "break_glass": True,
            "prefill": {"justification": h.long + h.text, "ticket": h.long, "duration": "nope"},
            "private_metadata": "m" * 5000,
        }

    def home(self, hostile: bool, n: int) -> dict[str, Any]:
        """A home tab with ``n`` entries in each list."""
        awaiting_key = "pending_stage2" if hostile else "pending_stage1"
        return {
            "me": {
                "name": self.hostile.name if hostile else "Alice Archer",
                "email": "alice@example.com",
            },
            "open": [self.view("pending_stage2", hostile=hostile) for _ in range(n)],
            "awaiting": [self.view(awaiting_key, "bob@example.com", hostile=hostile)] * n,
            "active": [self.view("active", hostile=hostile) for _ in range(n)],
            "truncated": hostile,
            "to_review": to_review(n),
        }

    def events(self, n: int, hostile: bool) -> list[dict[str, Any]]:
        """An audit trail of ``n`` events."""
        h = self.hostile
        return [
            {
                "seq": i,
                "ts": int(T0.timestamp()) + i,
                "action": h.name if hostile else "approved",
                "actor": h.name if hostile else "bob@example.com",
                "details_text": json.dumps({"reason": h.long if hostile else "fine", "stage": 0}),
            }
            for i in range(n)
        ]

    def worst_drift_report(self, targets: int, lines: int) -> dict[str, Any]:
        """Hostile names everywhere a connector or directory supplies text, and long lists."""
        h = self.hostile
        return {
            "policy_version": h.text,
            "checked_ts": int(T0.timestamp()),
            "dry_run": False,
            "targets_checked": targets,
            "counts": {
                "unexpected": targets * lines,
                "missing": targets * lines,
                "removed": 1,
                "kept": 2,
                "would_remove": 3,
                "remove_failed": 4,
                "errors": targets,
            },
            "targets": [
                {
                    "connector": h.name,
                    "group": h.long,
                    "resources": [{"id": f"res-{j}", "name": h.long} for j in range(6)],
                    "mode": "mixed",
                    "note": h.long,
                    "error": h.long,
                    "unexpected": [
                        {"member": h.long, "action": action, "reason": h.long}
                        for action in ("removed", "kept", "would_remove", "remove_failed")
                        for _ in range(lines // 4)
                    ],
                    "missing": [{"principal": h.long, "request_id": h.long}] * lines,
                }
                for _ in range(targets)
            ],
        }

    def cases(self) -> Iterator[Case]:
        """The cases every chat has: each template, representative and worst case.

        Not here, as the chats' data differ: the worst request form and deny form.
        """
        h, r, w = self.hostile, self.r, self.w
        everything = "pending_stage1 pending_stage2 approved provisioning active expired ended"
        everything += " returned revoked revoked_pending denied cancelled timed_out failed"
        everything += " break_glass break_glass_refused auto signing_partial"
        for key in everything.split():
            yield "request_submitted", key, r(key)
            yield "approval_card", f"{key}-nobody", r(key, None)
        for key in ("pending_stage1", "pending_stage2", "denied", "failed", "timed_out"):
            yield "request_submitted", f"worst-{key}", w(key)
        for key, viewer in APPROVER_CASES:
            yield "approval_card", f"{key}-{viewer}", r(key, viewer, previous=2, last_ended=T0)
        yield (
            "approval_card",
            "worst-break-glass-refused",
            w("break_glass_refused", "bob@example.com"),
        )
        yield "request_submitted", "worst-break_glass_refused", w("break_glass_refused")
        for key in ("break_glass", "break_glass_active"):
            yield "break_glass_owner_alert", key, r(key, "dora@example.com")
            yield "break_glass_owner_alert", f"worst-{key}", w(key, "dora@example.com")
        yield "approval_card", "worst-can-decide", w("pending_stage2", "bob@example.com")
        yield "approval_card", "worst-denied", w("denied", "dan@example.com")
        yield "approval_card", "worst-failed", w("failed", "dan@example.com")
        # Re-sent as a reminder while the stage still waits (and after it was decided).
        yield "approval_card", "nudge", r("pending_stage1", "bob@example.com", nudge=True)
        yield "approval_card", "nudge-decided", r("denied", "dan@example.com", nudge=True)
        yield "approval_card", "worst-nudge", w("pending_stage2", "bob@example.com", nudge=True)
        for key in ("pending_stage1", "pending_stage2"):
            view = r(key, None)["r"]
            waiting = {"waiting": view["stage"]["approvers"]}
            yield "admin_request_waiting", key, {"r": view, "context": waiting}
        worst_view = w("pending_stage2", None)["r"]
        yield (
            "admin_request_waiting",
            "worst",
            {"r": worst_view, "context": {"waiting": worst_view["stage"]["approvers"]}},
        )
        for key in ("pending_stage2", "pending_stage3", "signing_partial", "approved", "denied"):
            yield "decision_recorded", key, r(key)
        yield "decision_recorded", "worst", w("pending_stage2")
        yield "decision_recorded", "worst-approved", w("approved")
        for key in ("approved", "auto", "break_glass"):
            yield "request_approved", key, r(key)
            yield "request_approved", f"worst-{key}", w(key)
        for name, key in (
            ("request_denied", "denied"),
            ("request_failed", "failed"),
            ("request_timed_out", "timed_out"),
            ("access_granted", "active"),
            ("access_extended", "extended"),
            ("access_revoked", "revoked"),
            ("access_revoked", "revoked_pending"),
            ("access_ended", "ended"),
            ("access_ended", "returned"),
            ("access_ended", "revoked"),
            ("admin_access_granted", "active"),
            ("admin_access_granted", "break_glass_active"),
            ("admin_access_extended", "extended"),
            ("admin_request_denied", "denied"),
            ("admin_request_failed", "failed"),
            ("admin_break_glass_alert", "break_glass"),
            ("admin_break_glass_alert", "break_glass_active"),
        ):
            admin = name.startswith("admin_")
            extra: dict[str, Any] = {"context": {}} if admin else {}
            yield name, key, r(key, None if admin else "alice@example.com", **extra)
            yield name, f"worst-{key}", w(key, None, **extra)
        yield "expiry_reminder", "active", r("active", before="15m")
        yield "expiry_reminder", "worst", w("active", before=h.text)
        for name in ("admin_revoke_failing", "admin_job_failed"):
            yield name, "active", r("active", None, **failure_context("ldap: connection refused"))
            yield name, "worst", w("expired", None, **failure_context(h.long * 2))
            yield name, "no-context", r("ended", None, context={})
        yield "error", "plain", {"message": "This request was already denied by dora@example.com."}
        yield "error", "worst", {"message": h.long * 3}
        yield "request_form", "nothing-selected", request_form(None)
        yield (
            "request_form",
            "ticket",
            request_form("prod-db-admin", justification="Again", ticket="INC-1"),
        )
        yield "request_form", "no-ticket", request_form("staging-db-read", duration="1d")
        yield "request_form", "break-glass", request_form("prod-db-admin", break_glass=True)
        # Asked for as break-glass where there is none (a forged mode): the plain form.
        yield "request_form", "no-break-glass", request_form("ci-admin", break_glass=True)
        yield "request_form", "no-resources", form_data([], None)
        yield "deny_form", "pending", r("pending_stage2", None, private_metadata="R-1:1")
        yield "home", "empty", self.home(False, 0)
        yield "home", "typical", self.home(False, 3)
        yield "home", "full", self.home(False, 15)
        yield "home", "worst", self.home(True, 40)
        yield "admin_drift_report", "found", drift_report()
        yield "admin_drift_report", "dry-run", drift_report(dry_run=True)
        yield "admin_drift_report", "errors", drift_report(errors=True)
        yield "admin_drift_report", "worst", self.worst_drift_report(40, 60)
        yield "admin_drift_report", "worst-one-target", self.worst_drift_report(1, 8)
        help_lines = ["help: this list", "pending: requests waiting for approval"]
        yield "admin_reply", "help", admin_reply("Clearance admin commands", lines=help_lines)
        pending = [r(k, None)["r"] for k in ("pending_stage1", "pending_stage2", "approved")]
        yield (
            "admin_reply",
            "pending",
            admin_reply("Waiting for approval", requests=pending, footer="Showing the newest 15."),
        )
        yield "admin_reply", "show", admin_reply("Request R-1", requests=[r("denied", None)["r"]])
        yield (
            "admin_reply",
            "audit",
            admin_reply("Audit trail of R-1", events=self.events(12, False)),
        )
        policy_lines = [f"{p.id}: {p.name} ({p.risk})" for p in world().policy.resources]
        yield "admin_reply", "policy", admin_reply("Policy in force", lines=policy_lines)
        yield (
            "admin_reply",
            "worst",
            admin_reply(
                h.long,
                lines=[h.long] * 200,
                requests=[w("pending_stage2", None)["r"]] * 40,
                events=self.events(100, True),
                footer=h.long,
            ),
        )
        worst_show = [w("pending_stage2", None)["r"]]
        yield (
            "admin_reply",
            "worst-show",
            admin_reply("Request R-1", requests=worst_show, events=self.events(40, True)),
        )
