"""Every Slack template, rendered from real request data, is valid Block Kit and inert.

Requests are made by the engine itself and shown through ``bot.presentation.request_view``,
as the notifier does (``tests.templates.requests``). Each template is rendered with
representative data and with worst-case data: 2000 characters of mentions and links,
100-character tickets, names full of ``<>&``, 30 decisions, long approver lists. Every
rendering must parse with slack_sdk, stay within Slack's limits, and contain no live
mention, broadcast or link made from user text.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.presentation import request_view
from engine.lifecycle import submit
from engine.refusals import Refused
from message_templates import render_json, templates
from tests.templates.requests import (
    JUSTIFICATION,
    REQUEST_AGAIN,
    T0,
    Case,
    Hostile,
    TemplateData,
    draft,
    request_form,
    world,
)
from tests.templates.reviews import review_cases

EVIL = "<!channel> <@U1> <https://evil|click> & *bold* "
EVIL_NAME = ("Eve <Evil> & " + EVIL * 3)[:120]
HOSTILE = Hostile(text=EVIL, name=EVIL_NAME, resource=f"{EVIL_NAME} {EVIL}")
EVIL_2000 = HOSTILE.long
# The only "<...>" tokens a rendering may contain: mentions of directory people and dates.
ALLOWED_TOKEN = re.compile(r"^<@U0[A-Z]+>$|^<!date\^\d+\^[^|<>]+\|[^<>]+>$")
FORBIDDEN = ("<!channel>", "<@U1>", "<https://evil")

VIEWS = {"request_form", "deny_form", "home", "review_reason_form"}


# --- data: every template, representative and worst case -------------------------------

DATA = TemplateData("slack", HOSTILE)
_r, _w, _home = DATA.r, DATA.w, DATA.home


def cases() -> Iterator[Case]:
    """(template, label, data) for every case; each template has at least one."""
    yield from DATA.cases()
    yield "request_form", "worst", DATA.worst_request_form(selected=3)
    yield "deny_form", "worst", _w("pending_stage2", None, private_metadata="R-1:2")
    yield from review_cases(DATA)


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
    for name in (
        "approval_card",
        "request_submitted",
        "admin_break_glass_alert",
        "break_glass_owner_alert",
    ):
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
        "has not asked for this in the last 90 days.",
    ):
        assert expected in text, expected
    assert "the last one ended" not in text  # nothing ended before: nothing to show
    ended = T0 - timedelta(days=120)
    again = _r("pending_stage2", "dan@example.com", previous=3, last_ended=ended)
    when = f"<!date^{int(ended.timestamp())}^"
    expected = f"asked for this 3 times in the last 90 days; the last one ended {when}"
    assert expected in text_of(render("approval_card", again))
    once = text_of(render("approval_card", _r("pending_stage2", "dan@example.com", previous=1)))
    assert "asked for this 1 time in the last 90 days." in once
    glass = text_of(render("approval_card", _r("break_glass", "sam@example.com")))
    assert "Break-glass" in glass


def test_approval_card_says_a_break_glass_ask_reached_its_limit() -> None:
    card = text_of(render("approval_card", _r("break_glass_refused", "bob@example.com")))
    assert (
        "*Asked as break-glass*: Break-glass limit reached (2 in 30d), so it needs approval" in card
    )
    assert {"approve", "deny"} <= set(
        actions(render("approval_card", _r("break_glass_refused", "bob@example.com")))
    )


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


@pytest.mark.parametrize(("name", "key"), REQUEST_AGAIN)
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


def _date(ts: int | None) -> str:
    assert ts is not None
    return f"<!date^{ts}^"


def test_break_glass_alert_is_loud() -> None:
    data = _r("break_glass", None, context={})
    alert = render("admin_break_glass_alert", data)
    assert alert["blocks"][0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":rotating_light: Break-glass access",
            "emoji": True,
        },
    }
    text = text_of(alert)
    # Who, what, why and until when: before the grant landed, the end is "about".
    assert "<@U0ALICE>" in text and "Review required" in text and JUSTIFICATION in text
    assert "Production database (admin)" in text and "for 1h" in text and "INC-99" in text
    assert "until about " + _date(data["r"]["ends_ts"]) in text
    active = _r("break_glass_active", None, context={})
    assert active["r"]["ends_ts"] == active["r"]["expires_ts"]
    granted = text_of(render("admin_break_glass_alert", active))
    assert "until " + _date(active["r"]["expires_ts"]) in granted and "about" not in granted


def test_break_glass_owner_alert_says_who_what_why_until_when() -> None:
    data = _r("break_glass", "dora@example.com")
    alert = render("break_glass_owner_alert", data)
    assert alert["blocks"][0]["type"] == "header"
    text = text_of(alert)
    for expected in (
        "<@U0ALICE> took *break-glass* access to",
        "Production database (admin)",
        "for 1h, until about " + _date(data["r"]["ends_ts"]),
        "without approval",
        "INC-99",
        JUSTIFICATION,
    ):
        assert expected in text, expected


def test_request_submitted_tells_the_requester_the_limit_was_reached() -> None:
    message = render("request_submitted", _r("break_glass_refused"))
    limit = "Break-glass limit reached (2 in 30d): your request goes to the approvers"
    assert limit in message["text"]
    assert f"*{limit.replace(':', '*:', 1)}." in text_of(message)
    assert "cancel" in actions(message) and "Now asking:" in text_of(message)
    assert "limit reached" not in text_of(render("request_submitted", _r("pending_stage1")))


def test_error_is_one_section() -> None:
    message = render("error", {"message": "Nope <!channel>"})
    assert message["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": ":warning: Nope &lt;!channel&gt;"}}
    ]


def _inputs(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in form["blocks"] if b["type"] == "input"}


def test_request_form_fields_follow_the_resource() -> None:
    empty = render("request_form", request_form(None))
    assert set(_inputs(empty)) == {"resource"}
    assert "Pick a resource first" in text_of(empty)
    assert empty["callback_id"] == "request_form" and empty["submit"]["text"] == "Request"

    ticket = render(
        "request_form", request_form("prod-db-admin", justification="Again", ticket="INC-1")
    )
    inputs = _inputs(ticket)
    assert list(inputs) == ["resource", "break_glass", "duration", "justification", "ticket"]
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

    plain = render("request_form", request_form("staging-db-read", duration="1d"))
    assert list(_inputs(plain)) == ["resource", "duration", "justification"]
    assert _inputs(plain)["duration"]["element"]["initial_option"]["value"] == "1d"


def test_request_form_block_ids_are_engine_fields() -> None:
    """The engine's refusals name fields; each must be a block of the form to land on."""
    w = world()
    form = render("request_form", request_form("prod-db-admin"))
    blocks = set(_inputs(form))
    assert blocks == {"resource", "break_glass", "duration", "justification", "ticket"}
    bad = draft("prod-db-admin", duration="forever", justification="x", ticket="nope")
    with pytest.raises(Refused) as refused:
        submit(bad, w.policy, w.directory, T0, "R-9")
    fields = {refusal.field for refusal in refused.value.refusals}
    assert fields == {"duration", "justification", "ticket"}
    with pytest.raises(Refused) as unknown:
        submit(draft("no-such-thing"), w.policy, w.directory, T0, "R-9")
    fields |= {refusal.field for refusal in unknown.value.refusals}
    # Break-glass where there is none is refused on the resource it is about.
    with pytest.raises(Refused) as no_glass:
        submit(draft("ci-admin", break_glass=True), w.policy, w.directory, T0, "R-9")
    assert {refusal.field for refusal in no_glass.value.refusals} == {"resource"}
    assert fields == blocks - {"break_glass"}


def test_request_form_offers_break_glass_only_where_the_resource_has_it() -> None:
    plain = render("request_form", request_form("prod-db-admin"))
    box = _inputs(plain)["break_glass"]
    assert box["optional"] is True and box["dispatch_action"] is True
    assert box["element"]["type"] == "checkboxes" and "initial_options" not in box["element"]
    assert box["element"]["options"] == [
        {"text": {"type": "plain_text", "text": "Emergency (break-glass)"}, "value": "true"}
    ]
    hint = box["hint"]["text"]
    assert "at once, without approval, for at most 1 hour" in hint
    assert "At most 2 in 30d per person; beyond that the request goes to the approvers." in hint
    assert _inputs(plain)["duration"]["element"]["initial_option"]["value"] == "1h"

    ticked = render("request_form", request_form("prod-db-admin", break_glass=True))
    inputs = _inputs(ticked)
    assert inputs["break_glass"]["element"]["initial_options"] == box["element"]["options"]
    # Break-glass's cap is the duration's default and its longest choice.
    duration = inputs["duration"]["element"]
    assert duration["initial_option"]["value"] == "1h"
    assert [o["value"] for o in duration["options"]] == ["15m", "30m", "1h"]
    assert "at most 1h" in text_of(ticked) and "ticket" in inputs

    for resource in ("ci-admin", "staging-db-read"):
        for glass in (False, True):
            form = render("request_form", request_form(resource, break_glass=glass))
            assert "break_glass" not in _inputs(form), resource


def test_request_form_groups_resources_by_risk() -> None:
    form = render("request_form", request_form(None))
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
    assert "Checked 5 managed group(s)" in text
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


def test_a_nudge_reminds_only_who_can_still_decide() -> None:
    nudged = json.dumps(
        render("approval_card", _r("pending_stage1", "bob@example.com", nudge=True))
    )
    assert "*Reminder*: this has waited for your decision since <!date^" in nudged
    assert "The admins have been told." in nudged
    for key, viewer in (("denied", "dan@example.com"), ("pending_stage1", "sam@example.com")):
        assert "Reminder" not in json.dumps(render("approval_card", _r(key, viewer, nudge=True)))
