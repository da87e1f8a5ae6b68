"""Every Slack template, rendered from real request data, is valid Block Kit and inert.

Requests are made by the engine itself (``submit``, ``decide`` and the other transitions on
the example policy) and shown through ``bot.presentation.request_view``, as the notifier
does. Each template is rendered with representative data and with worst-case data: 2000
characters of mentions and links, 100-character tickets, names full of ``<>&``, 30
decisions, long approver lists. Every rendering must parse with slack_sdk, stay within
Slack's limits, and contain no live mention, broadcast or link made from user text.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.forms import form_data
from bot.presentation import request_view
from bot.reconcile import DriftRun
from engine.access_request import AccessRequest, Decision, StageState, Status
from engine.directory import DirectorySnapshot, Person, snapshot_from_policy
from engine.drift import Holding, Target, find_drift
from engine.lifecycle import (
    RequestDraft,
    cancel,
    decide,
    deprovision_confirmed,
    expire,
    extend,
    grant_confirmed,
    grant_failed,
    provisioning_started,
    revoke,
    submit,
    time_out,
)
from engine.policy import Policy, parse_policy
from engine.refusals import Refused
from message_templates import render_json, templates

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JUSTIFICATION = "Investigating INC-42: replication lag on the primary"

EVIL = "<!channel> <@U1> <https://evil|click> & *bold* "
EVIL_2000 = (EVIL * 50)[:2000]
EVIL_500 = EVIL_2000[:500]
EVIL_TICKET = EVIL_2000[:100]
EVIL_NAME = ("Eve <Evil> & " + EVIL * 3)[:120]
# The only "<...>" tokens a rendering may contain: mentions of directory people and dates.
ALLOWED_TOKEN = re.compile(r"^<@U0[A-Z]+>$|^<!date\^\d+\^[^|<>]+\|[^<>]+>$")
FORBIDDEN = ("<!channel>", "<@U1>", "<https://evil")

VIEWS = {"request_form", "deny_form", "home"}


# --- data: real requests in every state ------------------------------------------------


@dataclass(frozen=True)
class World:
    policy: Policy
    directory: DirectorySnapshot
    requests: dict[str, AccessRequest]


def _draft(resource: str, **kw: Any) -> RequestDraft:
    values: dict[str, Any] = {
        "requester": "alice@example.com",
        "resource_id": resource,
        "justification": JUSTIFICATION,
    }
    values.update(kw)
    return RequestDraft(**values)


def _build(policy: Policy) -> dict[str, AccessRequest]:
    d = snapshot_from_policy(policy)
    v = policy.version
    at = T0
    out: dict[str, AccessRequest] = {}

    def step(minutes: int) -> datetime:
        return at + timedelta(minutes=minutes)

    p1 = submit(_draft("prod-db-admin", ticket="INC-42"), policy, d, at, "R-1").request
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
        _draft("prod-db-admin", ticket="INC-99", break_glass=True), policy, d, at, "R-2"
    ).request
    out["break_glass"] = glass
    out["break_glass_active"] = grant_confirmed(glass, step(1), v, ()).request
    out["auto"] = submit(_draft("staging-db-read"), policy, d, at, "R-3").request
    auto_active = grant_confirmed(
        provisioning_started(out["auto"], step(1), v).request, step(2), v, ()
    ).request
    out["extended"] = extend(auto_active, policy, "alice@example.com", step(30)).request
    s1 = submit(_draft("release-signing-key", ticket="CHG-7"), policy, d, at, "R-4").request
    s2 = decide(s1, policy, d, "carol@example.com", "approve", step(5)).request
    out["signing_partial"] = decide(s2, policy, d, "sam@example.com", "approve", step(6)).request
    out["ci_pending"] = submit(
        _draft("ci-admin", requester="erin@example.com"), policy, d, at, "R-5"
    ).request
    return out


@cache
def world() -> World:
    policy = parse_policy(EXAMPLE_POLICY.read_bytes(), str(EXAMPLE_POLICY))
    return World(policy, snapshot_from_policy(policy), _build(policy))


@cache
def worst_world() -> World:
    """The example policy with hostile resource and stage names, and hostile people."""
    text = EXAMPLE_POLICY.read_text()
    evil_yaml = EVIL.replace("'", "")
    text = text.replace("name: Production database (admin)", f"name: '{EVIL_NAME} {evil_yaml}'")
    text = text.replace(
        "description: Superuser on the primary PostgreSQL cluster",
        f"description: '{EVIL_2000}'",
    )
    text = text.replace("name: Security sign-off", f"name: '{EVIL_NAME}'")
    policy = parse_policy(text.encode(), "worst.yaml")
    base = snapshot_from_policy(policy)
    people = dict(base.people)
    # Everyone but Bob gets a hostile name; half lose their Slack id (names are shown then).
    for i, (email, person) in enumerate(sorted(people.items())):
        if email == "bob@example.com":
            continue
        people[email] = Person(
            email=email,
            name=f"{EVIL_NAME} {i}",
            manager=person.manager,
            active=person.active,
            slack_id=person.slack_id if i % 2 else None,
        )
    for i in range(40):
        email = f"x{i}@example.com"
        people[email] = Person(email=email, name=f"{EVIL_NAME} x{i}")
    directory = DirectorySnapshot(people=people, groups=base.groups)
    return World(policy, directory, _build(policy))


def _thirty_decisions(current_stage: int) -> tuple[Decision, ...]:
    return tuple(
        Decision(
            stage=i % max(1, current_stage),
            approver=f"x{i}@example.com",
            outcome="approve" if i % 3 else "deny",
            at=T0 + timedelta(minutes=i),
            reason=EVIL_500,
        )
        for i in range(30)
    )


def worst(request: AccessRequest, *, stage_with_bob: bool = False) -> AccessRequest:
    """The request with hostile text everywhere a person can type, and 30 decisions."""
    changes: dict[str, Any] = {
        "justification": EVIL_2000,
        "ticket": EVIL_TICKET,
        "decisions": _thirty_decisions(2),
        "end_reason": EVIL_500 if request.end_reason else None,
        "failure": EVIL_2000 if request.status is Status.FAILED else None,
    }
    if request.status is Status.PENDING:
        approvers = tuple(f"x{i}@example.com" for i in range(40))
        if stage_with_bob:
            approvers = ("bob@example.com", *approvers)
        changes["stages"] = (
            *request.stages[:-1],
            StageState(index=2, label=EVIL_NAME, approvers=approvers, required=40, fallback=True),
        )
    return request.evolve(**changes)


def view(
    key: str, viewer: str | None = "alice@example.com", *, hostile: bool = False, **kw: Any
) -> dict[str, Any]:
    w = worst_world() if hostile else world()
    request = w.requests[key]
    if hostile:
        request = worst(request, stage_with_bob=viewer == "bob@example.com")
    return request_view(
        request, w.policy, w.directory.people, T0 + timedelta(minutes=40), viewer, **kw
    )


# --- data: every template, representative and worst case -------------------------------


def _r(
    key: str, viewer: str | None = "alice@example.com", previous: int = 0, **extra: Any
) -> dict[str, Any]:
    return {"r": view(key, viewer, previous_requests=previous), **extra}


def _w(key: str, viewer: str | None = "alice@example.com", **extra: Any) -> dict[str, Any]:
    return {"r": view(key, viewer, hostile=True, previous_requests=7), **extra}


def _resource_dict(i: int) -> dict[str, Any]:
    return {
        "id": f"res-{i}",
        "name": f"{EVIL_NAME} {i}",
        "risk": "critical",
        "description": EVIL_2000,
        "duration_options": [
            {"value": f"{h}h", "label": f"{h} hours {EVIL}"} for h in range(1, 150)
        ],
        "default_duration": "1h",
        "max_duration": "149h",
        "ticket_pattern": "^" + "(INC|CHG)-[0-9]+" * 20 + "$",
        "min_justification": 20,
    }


def _form(selected: str | None, **prefill: str) -> dict[str, Any]:
    policy = world().policy
    return form_data(list(policy.resources), selected, prefill, "meta")


def _form_worst() -> dict[str, Any]:
    resources = [_resource_dict(i) for i in range(250)]
    return {
        "resources": [
            {"risk": "critical", "label": EVIL_NAME, "resources": resources[:150]},
            *(
                {"risk": "x", "label": f"group {i}", "resources": resources[i : i + 1]}
                for i in range(120)
            ),
        ],
        "selected": resources[3],
        "prefill": {"justification": EVIL_2000 + EVIL, "ticket": EVIL_2000, "duration": "nope"},
        "private_metadata": "m" * 5000,
    }


def _home(hostile: bool, n: int) -> dict[str, Any]:
    v = (lambda k, who: view(k, who, hostile=True)) if hostile else view
    return {
        "me": {"name": EVIL_NAME if hostile else "Alice Archer", "email": "alice@example.com"},
        "open": [v("pending_stage2", "alice@example.com") for _ in range(n)],
        "awaiting": [v("pending_stage1" if not hostile else "pending_stage2", "bob@example.com")]
        * n,
        "active": [v("active", "alice@example.com") for _ in range(n)],
        "truncated": hostile,
    }


def _events(n: int, hostile: bool) -> list[dict[str, Any]]:
    return [
        {
            "seq": i,
            "ts": int(T0.timestamp()) + i,
            "action": EVIL_NAME if hostile else "approved",
            "actor": EVIL_NAME if hostile else "bob@example.com",
            "details_text": json.dumps({"reason": EVIL_2000 if hostile else "fine", "stage": 0}),
        }
        for i in range(n)
    ]


def _reply(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": title, "lines": [], "requests": [], "events": [], "footer": "", **kw}


def _context(error: str) -> dict[str, Any]:
    return {"context": {"error": error, "kind": "deprovision", "attempts": "5"}}


def _drift(dry_run: bool = False, errors: bool = False) -> dict[str, Any]:
    """A drift report made by the engine on the example policy, as the reconciler shows it."""
    policy = world().policy
    signing, staging = Target("slack-groups", "S0SIGNING"), Target("slack-groups", "S0STAGINGRO")
    grants = [Holding("R-7", "dora@example.com", "slack-groups", "S0SIGNING")]
    members = {
        signing: ["eve@example.com", "U0NOEMAIL"],
        staging: ["alice@example.com"],
        Target("slack-groups", "S0DBADMIN"): [],
        Target("slack-groups", "S0CIADMIN"): [],
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


def _drift_worst(targets: int, lines: int) -> dict[str, Any]:
    """Hostile names everywhere a connector or directory supplies text, and long lists."""
    return {
        "policy_version": EVIL,
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
                "connector": EVIL_NAME,
                "group": EVIL_2000,
                "resources": [{"id": f"res-{j}", "name": EVIL_2000} for j in range(6)],
                "mode": "mixed",
                "note": EVIL_2000,
                "error": EVIL_2000,
                "unexpected": [
                    {"member": EVIL_2000, "action": action, "reason": EVIL_2000}
                    for action in ("removed", "kept", "would_remove", "remove_failed")
                    for _ in range(lines // 4)
                ],
                "missing": [{"principal": EVIL_2000, "request_id": EVIL_2000}] * lines,
            }
            for _ in range(targets)
        ],
    }


def cases() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(template, label, data) for every case; each template has at least one."""
    everything = ("pending_stage1", "pending_stage2", "approved", "provisioning", "active")
    everything += ("expired", "ended", "returned", "revoked", "revoked_pending", "denied")
    everything += ("cancelled", "timed_out", "failed", "break_glass", "auto", "signing_partial")
    for key in everything:
        yield "request_submitted", key, _r(key)
        yield "approval_card", f"{key}-nobody", _r(key, None)
    for key in ("pending_stage1", "pending_stage2", "denied", "failed", "timed_out"):
        yield "request_submitted", f"worst-{key}", _w(key)
    approver_cases = [
        ("pending_stage1", "bob@example.com"),
        ("pending_stage2", "bob@example.com"),
        ("pending_stage2", "dan@example.com"),
        ("pending_stage3", "sam@example.com"),
        ("signing_partial", "sam@example.com"),
        ("signing_partial", "sara@example.com"),
        ("denied", "dan@example.com"),
        ("active", "bob@example.com"),
        ("cancelled", "bob@example.com"),
        ("timed_out", "bob@example.com"),
        ("revoked_pending", "dan@example.com"),
        ("ci_pending", "bob@example.com"),
        ("break_glass", "sam@example.com"),
    ]
    for key, viewer in approver_cases:
        yield "approval_card", f"{key}-{viewer}", _r(key, viewer, previous=2)
    yield "approval_card", "worst-can-decide", _w("pending_stage2", "bob@example.com")
    yield "approval_card", "worst-denied", _w("denied", "dan@example.com")
    yield "approval_card", "worst-failed", _w("failed", "dan@example.com")
    for key in ("pending_stage2", "pending_stage3", "signing_partial", "approved", "denied"):
        yield "decision_recorded", key, _r(key)
    yield "decision_recorded", "worst", _w("pending_stage2")
    yield "decision_recorded", "worst-approved", _w("approved")
    for key in ("approved", "auto", "break_glass"):
        yield "request_approved", key, _r(key)
        yield "request_approved", f"worst-{key}", _w(key)
    for name, key in (
        ("request_denied", "denied"),
        ("request_failed", "failed"),
        ("request_timed_out", "timed_out"),
        ("access_granted", "active"),
        ("access_revoked", "revoked"),
        ("access_revoked", "revoked_pending"),
        ("access_ended", "ended"),
        ("access_ended", "returned"),
        ("access_ended", "revoked"),
        ("admin_access_granted", "active"),
        ("access_extended", "extended"),
        ("admin_access_extended", "extended"),
        ("admin_access_granted", "break_glass_active"),
        ("admin_request_denied", "denied"),
        ("admin_request_failed", "failed"),
        ("admin_break_glass_alert", "break_glass"),
    ):
        extra = {"context": {}} if name.startswith("admin_") else {}
        yield (
            name,
            key,
            _r(key, None if name.startswith("admin_") else "alice@example.com", **extra),
        )
        yield name, f"worst-{key}", _w(key, None, **extra)
    yield "expiry_reminder", "active", _r("active", before="15m")
    yield "expiry_reminder", "worst", _w("active", before=EVIL)
    for name in ("admin_revoke_failing", "admin_job_failed"):
        yield name, "active", _r("active", None, **_context("ldap: connection refused"))
        yield name, "worst", _w("expired", None, **_context(EVIL_2000 * 2))
        yield name, "no-context", _r("ended", None, context={})
    yield "error", "plain", {"message": "This request was already denied by dora@example.com."}
    yield "error", "worst", {"message": EVIL_2000 * 3}
    yield "request_form", "nothing-selected", _form(None)
    yield "request_form", "ticket", _form("prod-db-admin", justification="Again", ticket="INC-1")
    yield "request_form", "no-ticket", _form("staging-db-read", duration="1d")
    yield "request_form", "no-resources", form_data([], None)
    yield "request_form", "worst", _form_worst()
    yield "deny_form", "pending", _r("pending_stage2", None, private_metadata="R-1:1")
    yield "deny_form", "worst", _w("pending_stage2", None, private_metadata="R-1:2")
    yield "home", "empty", _home(False, 0)
    yield "home", "typical", _home(False, 3)
    yield "home", "full", _home(False, 15)
    yield "home", "worst", _home(True, 40)
    yield "admin_drift_report", "found", _drift()
    yield "admin_drift_report", "dry-run", _drift(dry_run=True)
    yield "admin_drift_report", "errors", _drift(errors=True)
    yield "admin_drift_report", "worst", _drift_worst(40, 60)
    yield "admin_drift_report", "worst-one-target", _drift_worst(1, 8)
    w = world()
    help_lines = ["help: this list", "pending: requests waiting for approval"]
    yield "admin_reply", "help", _reply("Clearance admin commands", lines=help_lines)
    yield (
        "admin_reply",
        "pending",
        _reply(
            "Waiting for approval",
            requests=[_r(k, None)["r"] for k in ("pending_stage1", "pending_stage2", "approved")],
            footer="Showing the newest 15.",
        ),
    )
    yield "admin_reply", "show", _reply("Request R-1", requests=[_r("denied", None)["r"]])
    yield "admin_reply", "audit", _reply("Audit trail of R-1", events=_events(12, False))
    yield (
        "admin_reply",
        "policy",
        _reply(
            "Policy in force", lines=[f"{r.id}: {r.name} ({r.risk})" for r in w.policy.resources]
        ),
    )
    yield (
        "admin_reply",
        "worst",
        _reply(
            EVIL_2000,
            lines=[EVIL_2000] * 200,
            requests=[_w("pending_stage2", None)["r"]] * 40,
            events=_events(100, True),
            footer=EVIL_2000,
        ),
    )
    yield (
        "admin_reply",
        "worst-show",
        _reply("Request R-1", requests=[_w("pending_stage2", None)["r"]], events=_events(40, True)),
    )


CASES = list(cases())


# --- checks ----------------------------------------------------------------------------


class _Ignored(logging.Handler):
    """Collects slack_sdk's notes about constructor arguments it did not understand."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "were ignored" in message or "Unknown block" in message:
            self.messages.append(message)


@pytest.fixture
def ignored() -> Iterator[_Ignored]:
    handler = _Ignored()
    logger = logging.getLogger("slack_sdk.models")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def check_limits(data: dict[str, Any]) -> None:
    """Slack's documented limits, checked on the raw JSON (slack_sdk misses some)."""
    for node in _nodes(data):
        kind = node.get("type")
        if kind in ("mrkdwn", "plain_text"):
            assert isinstance(node["text"], str) and node["text"], node
            assert len(node["text"]) <= 3000, (kind, len(node["text"]))
        elif kind == "section":
            fields = node.get("fields") or []
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
            assert "text" in node or fields
        elif kind == "header":
            assert len(node["text"]["text"]) <= 150
        elif kind == "context":
            assert 1 <= len(node["elements"]) <= 10
        elif kind == "actions":
            assert 1 <= len(node["elements"]) <= 25
        elif kind == "button":
            assert len(node["text"]["text"]) <= 75
            assert len(node.get("value", "")) <= 2000
        elif kind == "static_select":
            groups = node.get("option_groups") or []
            assert len(groups) <= 100 and len(node.get("options") or []) <= 100
            assert all(len(g["options"]) <= 100 for g in groups)
            assert all(len(g["label"]["text"]) <= 75 for g in groups)
        if "value" in node and "text" in node and kind is None:  # an option
            assert len(node["text"]["text"]) <= 75 and len(node["value"]) <= 150
            if "description" in node:
                assert len(node["description"]["text"]) <= 75


def _mrkdwn_texts(data: dict[str, Any]) -> Iterator[str]:
    """Every text Slack parses for mentions and links: mrkdwn objects and the fallback."""
    if "text" in data and isinstance(data["text"], str):
        yield data["text"]  # a message's notification text is mrkdwn too
    for node in _nodes(data):
        if node.get("type") == "mrkdwn":
            yield node["text"]


def check_inert(data: dict[str, Any]) -> None:
    """No broadcast, mention or link from user text; only our own tokens remain.

    plain_text objects (headers, buttons, options, inputs) are never parsed by Slack, so
    user text there is shown as typed; every mrkdwn text must be escaped.
    """
    for node in _nodes(data):
        if node.get("type") in ("mrkdwn", "plain_text"):
            assert set(node) <= {"type", "text", "emoji", "verbatim"}, node
    for text in _mrkdwn_texts(data):
        for bad in FORBIDDEN:
            assert bad not in text, f"{bad!r} rendered live in {text[:200]!r}"
        for token in re.findall(r"<[^<>]*>", text):
            assert ALLOWED_TOKEN.match(token), f"unexpected token {token!r} in {text[:200]!r}"


def check_message(data: dict[str, Any]) -> None:
    assert set(data) == {"text", "blocks"}, set(data)
    assert isinstance(data["text"], str) and data["text"].strip()
    assert len(data["text"]) <= 4000
    blocks = data["blocks"]
    assert 1 <= len(blocks) <= 50, len(blocks)
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()
        assert block.to_dict() == raw  # validates nested objects; nothing was dropped


def check_view(data: dict[str, Any]) -> None:
    assert data["type"] in ("modal", "home")
    view = View(**data)
    view.validate_json()
    assert view.to_dict() == data
    assert 1 <= len(data["blocks"]) <= 100, len(data["blocks"])
    if data["type"] == "modal":
        assert 1 <= len(data["title"]["text"]) <= 24
        assert len(data.get("private_metadata", "")) <= 3000
        for key in ("submit", "close"):
            assert key not in data or len(data[key]["text"]) <= 24
    ids = [b["block_id"] for b in data["blocks"] if "block_id" in b]
    assert len(ids) == len(set(ids)), ids


def render(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return render_json("slack", name, data)


# --- every template, every case ----------------------------------------------------------


def test_every_template_has_a_case() -> None:
    names = templates("slack")
    assert names, "no Slack templates found"
    covered = {name for name, _, _ in CASES}
    assert set(names) - covered == set(), "templates without a test case"
    assert covered - set(names) == set(), "cases for templates that do not exist"


@pytest.mark.parametrize(
    ("name", "data"), [(n, d) for n, _, d in CASES], ids=[f"{n}-{label}" for n, label, _ in CASES]
)
def test_renders_valid_and_inert(name: str, data: dict[str, Any], ignored: _Ignored) -> None:
    rendered = render(name, data)
    if name in VIEWS:
        check_view(rendered)
    else:
        check_message(rendered)
    assert ignored.messages == []
    check_limits(rendered)
    check_inert(rendered)


# --- behaviour -----------------------------------------------------------------------------


def actions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every interactive element by action id (a later one with the same id wins)."""
    return {n["action_id"]: n for n in _nodes(data["blocks"]) if "action_id" in n}


def all_actions(data: dict[str, Any], action_id: str) -> list[dict[str, Any]]:
    return [n for n in _nodes(data["blocks"]) if n.get("action_id") == action_id]


def text_of(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


def test_hostile_text_is_shown_escaped_and_mentions_of_people_stay() -> None:
    card = render("approval_card", _w("pending_stage2", "bob@example.com"))
    text = text_of(card)
    assert "&lt;!channel&gt; &lt;@U1&gt; &lt;https://evil|click&gt; &amp; *bold*" in text
    assert "&lt;Evil&gt; &amp;" in text  # a directory name with <>& and no Slack id
    plain = render("approval_card", _r("pending_stage1", "bob@example.com"))
    assert "<@U0ALICE>" in text_of(plain) and "<@U0BOB>" in text_of(plain)


def test_a_2000_character_justification_is_shown_whole() -> None:
    w = world()
    long_text = ("x" * 99 + " ") * 20
    request = w.requests["pending_stage1"].evolve(justification=long_text)
    r = request_view(request, w.policy, w.directory.people, T0, "bob@example.com")
    for name in ("approval_card", "request_submitted", "admin_break_glass_alert"):
        assert long_text in text_of(render(name, {"r": r, "context": {}})), name


@pytest.mark.parametrize(
    ("key", "viewer", "stage"),
    [
        ("pending_stage1", "bob@example.com", 0),
        ("pending_stage2", "dora@example.com", 1),
        ("pending_stage3", "sara@example.com", 2),
        ("signing_partial", "sara@example.com", 1),
    ],
)
def test_approval_card_has_buttons_for_who_can_decide(key: str, viewer: str, stage: int) -> None:
    data = _r(key, viewer)
    assert data["r"]["can_decide"]
    found = actions(render("approval_card", data))
    rid = data["r"]["id"]
    assert found["approve"]["value"] == f"{rid}:{stage}" and found["approve"]["style"] == "primary"
    assert found["deny"]["value"] == f"{rid}:{stage}" and found["deny"]["style"] == "danger"


@pytest.mark.parametrize(
    ("key", "viewer", "expected"),
    [
        ("pending_stage2", "bob@example.com", "Stage 1 complete — now with stage 2 of 3"),
        ("pending_stage3", "dan@example.com", "Stage 2 complete — now with stage 3 of 3"),
        ("signing_partial", "sam@example.com", "You approved this"),
        ("approved", "sam@example.com", "Approved by <@U0SAM>"),
        ("denied", "dan@example.com", "Denied by <@U0DORA>"),
        ("denied", "dan@example.com", "Use the read replica"),
        ("cancelled", "bob@example.com", "Cancelled by <@U0ALICE>"),
        ("timed_out", "bob@example.com", "Timed out"),
        ("failed", "bob@example.com", "Failed: slack usergroups.update: ratelimited"),
        ("pending_stage1", "alice@example.com", "Waiting for stage 1 of 3"),
    ],
)
def test_approval_card_without_buttons_says_what_happened(
    key: str, viewer: str, expected: str
) -> None:
    data = _r(key, viewer)
    assert not data["r"]["can_decide"]
    card = render("approval_card", data)
    assert not all_actions(card, "approve") and not all_actions(card, "deny")
    context = [b for b in card["blocks"] if b["type"] == "context"][-1]
    assert expected in context["elements"][0]["text"]


def test_approval_card_gives_context_to_decide() -> None:
    text = text_of(render("approval_card", _r("pending_stage2", "dan@example.com")))
    for expected in (
        "<@U0ALICE>",  # requester
        "*Their manager*\\n<@U0BOB>",
        "Production database (admin)",
        ":large_orange_circle:",
        "1h",
        "INC-42",
        JUSTIFICATION,
        "Stage 1: *approved* by <@U0BOB>",
        "Looks fine",
        "has not asked for this before",
    ):
        assert expected in text, expected
    again = text_of(render("approval_card", _r("pending_stage2", "dan@example.com", previous=3)))
    assert "asked for this 3 times before" in again
    glass = text_of(render("approval_card", _r("break_glass", "sam@example.com")))
    assert "Break-glass" in glass


def test_thirty_decisions_show_ten_and_say_how_many_more() -> None:
    card = render("approval_card", _w("pending_stage2", "bob@example.com"))
    text = text_of(card)
    assert text.count(":white_check_mark: Stage") + text.count(":no_entry: Stage") == 10
    assert "and 20 more" in text


@pytest.mark.parametrize(
    "key", ["pending_stage1", "pending_stage2", "signing_partial", "ci_pending"]
)
def test_request_submitted_can_cancel_while_pending(key: str) -> None:
    data = _r(key, "erin@example.com" if key == "ci_pending" else "alice@example.com")
    message = render("request_submitted", data)
    cancel_button = actions(message)["cancel"]
    assert cancel_button["value"] == data["r"]["id"] and cancel_button["style"] == "danger"
    assert cancel_button["confirm"]["confirm"]["text"]
    assert "Now asking:" in text_of(message)


def test_request_submitted_names_who_decides_now() -> None:
    text = text_of(render("request_submitted", _r("pending_stage2")))
    assert "Now asking:* <@U0DORA>, <@U0DAN> (stage 2 of 3, needs 1)" in text


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("approved", "Approved by <@U0SAM>"),
        ("active", "access active until"),
        ("denied", "Use the read replica"),
        ("cancelled", "Cancelled by <@U0ALICE>"),
        ("timed_out", "nobody decided in time"),
        ("failed", "ratelimited"),
        ("revoked", "Left the team"),
        ("expired", "access ended"),
    ],
)
def test_request_submitted_shows_the_outcome_once_decided(key: str, expected: str) -> None:
    message = render("request_submitted", _r(key))
    assert "cancel" not in actions(message)
    assert "Now asking" not in text_of(message)
    assert expected in text_of(message)


def test_decision_recorded_says_what_happens_next() -> None:
    nxt = text_of(render("decision_recorded", _r("pending_stage2")))
    assert "approved* by <@U0BOB>" in nxt and "Looks fine" in nxt
    assert "stage 2 of 3, asking <@U0DORA>, <@U0DAN> (needs 1)" in nxt
    partial = text_of(render("decision_recorded", _r("signing_partial")))
    assert "needs 1 more approval; asking" in partial and "<@U0SARA>" in partial


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("request_denied", "denied"),
        ("request_timed_out", "timed_out"),
        ("access_ended", "ended"),
        ("request_failed", "failed"),
    ],
)
def test_request_again_button(name: str, key: str) -> None:
    button = actions(render(name, _r(key)))["rerequest"]
    assert button["value"] == "prod-db-admin"


def test_denial_names_the_denier_and_the_reason() -> None:
    text = text_of(render("request_denied", _r("denied")))
    assert "denied by <@U0DORA> at stage 2" in text and "Use the read replica" in text
    revoked = text_of(render("access_revoked", _r("revoked")))
    assert "revoked by <@U0SAM>" in revoked and "Left the team" in revoked


def test_access_granted_and_reminder_buttons() -> None:
    granted = render("access_granted", _r("active"))
    assert actions(granted)["done"]["value"] == "R-1"
    assert "Time left" in text_of(granted)
    reminder = render("expiry_reminder", _r("active", before="15m"))
    found = actions(reminder)
    assert found["extend"]["value"] == "R-1" and found["extend"]["style"] == "primary"
    assert found["done"]["value"] == "R-1" and found["done"]["style"] == "danger"
    assert found["done"]["confirm"]
    assert "ends in *15m*" in text_of(reminder)


def test_break_glass_alert_is_loud() -> None:
    alert = render("admin_break_glass_alert", _r("break_glass", None, context={}))
    assert alert["blocks"][0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":rotating_light: Break-glass access",
            "emoji": True,
        },
    }
    text = text_of(alert)
    assert "<@U0ALICE>" in text and "Review required" in text and JUSTIFICATION in text


def test_error_is_one_section() -> None:
    message = render("error", {"message": "Nope <!channel>"})
    assert message["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": ":warning: Nope &lt;!channel&gt;"}}
    ]


def _inputs(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in form["blocks"] if b["type"] == "input"}


def test_request_form_fields_follow_the_resource() -> None:
    empty = render("request_form", _form(None))
    assert set(_inputs(empty)) == {"resource"}
    assert "Pick a resource first" in text_of(empty)
    assert empty["callback_id"] == "request_form" and empty["submit"]["text"] == "Request"

    ticket = render("request_form", _form("prod-db-admin", justification="Again", ticket="INC-1"))
    inputs = _inputs(ticket)
    assert list(inputs) == ["resource", "duration", "justification", "ticket"]
    assert all(b["element"]["action_id"] == "value" for b in inputs.values())
    assert inputs["resource"]["dispatch_action"] is True
    assert inputs["resource"]["element"]["initial_option"]["value"] == "prod-db-admin"
    assert inputs["duration"]["element"]["initial_option"]["value"] == "1h"
    justification = inputs["justification"]["element"]
    assert justification["min_length"] == 15 and justification["max_length"] == 2000
    assert justification["initial_value"] == "Again" and justification["multiline"] is True
    assert "(INC|CHG)" in inputs["ticket"]["element"]["placeholder"]["text"]
    assert inputs["ticket"]["element"]["initial_value"] == "INC-1"
    assert "at most 4h" in text_of(ticket)

    plain = render("request_form", _form("staging-db-read", duration="1d"))
    assert list(_inputs(plain)) == ["resource", "duration", "justification"]
    assert _inputs(plain)["duration"]["element"]["initial_option"]["value"] == "1d"


def test_request_form_block_ids_are_engine_fields() -> None:
    """The engine's refusals name fields; each must be a block of the form to land on."""
    w = world()
    form = render("request_form", _form("prod-db-admin"))
    blocks = set(_inputs(form))
    assert blocks == {"resource", "duration", "justification", "ticket"}
    bad = _draft("prod-db-admin", duration="forever", justification="x", ticket="nope")
    with pytest.raises(Refused) as refused:
        submit(bad, w.policy, w.directory, T0, "R-9")
    fields = {refusal.field for refusal in refused.value.refusals}
    assert fields == {"duration", "justification", "ticket"}
    with pytest.raises(Refused) as unknown:
        submit(_draft("no-such-thing"), w.policy, w.directory, T0, "R-9")
    fields |= {refusal.field for refusal in unknown.value.refusals}
    assert fields == blocks


def test_request_form_groups_resources_by_risk() -> None:
    form = render("request_form", _form(None))
    select = _inputs(form)["resource"]["element"]
    labels = [g["label"]["text"] for g in select["option_groups"]]
    assert labels == ["Low risk", "Medium risk", "High risk", "Critical"]
    values = [o["value"] for g in select["option_groups"] for o in g["options"]]
    assert sorted(values) == sorted(r.id for r in world().policy.resources)


def test_deny_form() -> None:
    form = render("deny_form", _r("pending_stage2", None, private_metadata="R-1:1"))
    assert form["callback_id"] == "deny_form" and form["private_metadata"] == "R-1:1"
    assert form["title"]["text"] == "Deny request" and form["submit"]["text"] == "Deny"
    reason = _inputs(form)["reason"]["element"]
    assert reason["action_id"] == "value" and reason["max_length"] == 500 and reason["multiline"]


def test_home_shows_each_list_and_its_empty_state() -> None:
    empty = render("home", _home(False, 0))
    text = text_of(empty)
    assert "open_form" in actions(empty)
    assert "Nothing waits for your decision" in text
    assert "no open requests" in text and "no access" in text
    home = render("home", _home(False, 3))
    approve = all_actions(home, "approve")
    assert len(approve) == 3 and approve[0]["value"] == "R-1:0"
    assert len(all_actions(home, "deny")) == 3 and len(all_actions(home, "done")) == 3
    worst_home = render("home", _home(True, 40))
    assert len(worst_home["blocks"]) <= 100
    assert len(all_actions(worst_home, "done")) == 15
    assert "More requests wait for you" in text_of(worst_home)


def test_admin_reply_stays_small() -> None:
    reply = render("admin_reply", _CASE["admin_reply", "worst"])
    assert len(reply["blocks"]) <= 50
    text = text_of(reply)
    assert "and 120 more lines" in text and "and 25 more requests" in text
    assert "58 earlier events not shown" in text
    show = text_of(render("admin_reply", _CASE["admin_reply", "show"]))
    assert "Use the read replica" in show and "Denied by <@U0DORA>" in show


_CASE = {(name, label): data for name, label, data in CASES}


def test_drift_report_says_what_was_removed_kept_and_missing() -> None:
    text = text_of(render("admin_drift_report", _CASE["admin_drift_report", "found"]))
    for expected in (
        ":mag: Access drift found",
        "*S0SIGNING* in slack-groups · Release signing key · drift: revoke",
        "eve@example.com — *removal failed*: rejected: not allowed",
        "U0NOEMAIL — kept (the connector names this member by no email address",
        "*S0STAGINGRO* in slack-groups · Staging database (read-only) · drift: report",
        "alice@example.com — kept (drift: report)",
        "*Grant in force, not a member (1)*\\n• dora@example.com — request R-7",
        "They are not re-granted",
    ):
        assert expected in text, expected
    assert "S0DBADMIN" not in text  # groups without drift are counted, not listed
    assert "Checked 4 managed group(s)" in text
    dry = text_of(render("admin_drift_report", _CASE["admin_drift_report", "dry-run"]))
    assert "eve@example.com — would be removed" in dry and "dry run" in dry
    errors = render("admin_drift_report", _CASE["admin_drift_report", "errors"])
    assert "*Could not list the members:* unreachable" in text_of(errors)
    assert "1 group(s) not checked" in errors["text"]


def test_drift_report_stays_within_slack_limits_with_many_groups() -> None:
    report = render("admin_drift_report", _CASE["admin_drift_report", "worst"])
    assert len(report["blocks"]) <= 50
    text = text_of(report)
    assert "…and 28 more groups with drift" in text and "…and 52 more" in text
