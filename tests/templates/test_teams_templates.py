"""Every Teams template, rendered from real request data, is a valid Adaptive Card and inert.

Requests are made by the engine itself (``tests.templates.requests``) and shown through
``bot.presentation.request_view`` with Teams ids in the directory, as the notifier does.
Each template is rendered with representative data and with worst-case data: 2000
characters of markdown, ``<at>`` mentions, links, DATE() functions, HTML and JSON-breaking
characters; names, stage labels and resource names full of them; 30 decisions; 40
approvers; 270 resources in the form; errors on every field. Every card must validate
against the official Adaptive Card 1.5 JSON schema (vendored in ``tests/fakes``), pass a
structural check of what Teams needs beyond the schema (unique input ids, known verbs that
carry only ids, wrapping text), stay under Teams' message size limit, and show user text
only escaped, so that unescaping it gives back exactly what was typed.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.forms import form_data
from engine.directory import DirectorySnapshot
from message_templates import (
    byte_size,
    markdown,
    one_line,
    render_json,
    teams_date,
    templates,
)
from tests.templates.requests import (
    APPROVER_CASES,
    JUSTIFICATION,
    REQUEST_AGAIN,
    T0,
    Case,
    Hostile,
    TemplateData,
    request_form,
    teams_world,
    world,
)
from tests.templates.reviews import review_cases

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "fakes" / "adaptive-card-1.5.schema.json"
# Teams refuses messages over ~28 KB; the adapter's activity envelope needs the rest.
MAX_BYTES = 26 * 1024

EVIL = (
    '**bold** _it_ [link](https://evil.example/x) <at>Bob</at> <b>b</b></script> "q" \\ \\* '
    "{{DATE(2017-02-14T06:08:39Z, SHORT)}} {% if x %}{{ x }} ${x} &amp; &#42; ~~s~~ `c` | "
    "\n# head\n1. one\n2) two\n- item\n+ more\n> quote\n===\nünïcödé 🚀 \u202e "
)
EVIL_NAME = ("Eve <at>Evil</at> **x** " + EVIL)[:120]
HOSTILE = Hostile(text=EVIL, name=EVIL_NAME, resource=EVIL_NAME)
EVIL_2000, EVIL_500, EVIL_TICKET = HOSTILE.long, HOSTILE.reason, HOSTILE.ticket
# What hostile text would look like had it been rendered live.
FORBIDDEN_RAW = ("[link](", "<at>", "</script>", "<b>", "**bold**", "_it_", "{{DATE(2017")

VERB_DATA = {
    "approve": {"request_id", "stage"},
    "deny": {"request_id", "stage"},
    "cancel": {"request_id"},
    "done": {"request_id"},
    "extend": {"request_id"},
    "refresh": {"request_id"},
    "rerequest": {"resource_id"},
    "open_form": set(),
    "submit_request": {"form_resource"},
    "review_keep": {"campaign_id", "index"},
    "review_revoke": {"campaign_id", "index"},
    "review_keep_all": {"campaign_id"},
    "review_open": {"campaign_id"},
}
# Data values that are positions (a stage, a review item), never text.
NUMBERS = {"stage", "index"}
# Data a verb carries only at times: a form drawn for break-glass says so.
VERB_DATA_OPTIONAL = {"submit_request": {"form_break_glass"}}
ELEMENTS = {
    "TextBlock",
    "RichTextBlock",
    "Image",
    "ImageSet",
    "Media",
    "FactSet",
    "Container",
    "ColumnSet",
    "ActionSet",
    "Table",
    "Input.Text",
    "Input.Number",
    "Input.Date",
    "Input.Time",
    "Input.Toggle",
    "Input.ChoiceSet",
}
# Action.Submit and ToggleVisibility are valid 1.5 but not what Clearance sends: every
# button goes to the bot as an Universal Action (Action.Execute) with a verb.
ACTIONS = {"Action.Execute", "Action.ShowCard", "Action.OpenUrl"}
# DATE()/TIME() functions Clearance writes: our timestamps are around T0 (2026); the hostile
# text carries one from 2017 that must stay escaped.
_OUR_TS = r"2026-\d\d-\d\dT\d\d:\d\d:\d\dZ"
OUR_DATE = re.compile(rf"\{{\{{DATE\({_OUR_TS}, SHORT\)\}}\}}|\{{\{{TIME\({_OUR_TS}\)\}}\}}")
# Characters our own markdown never uses: in a rendering they can only be escaped text.
NEVER_OURS = set("[]<>{}`&#|~=+")
# A line starting a markdown block: list item, heading, quote, setext underline.
BLOCK_START = re.compile(r"^ {0,3}(?:[-+*](?:[ \t]|$)|[0-9]{1,9}[.)](?:[ \t]|$)|#|>|=+\s*$|-+\s*$)")
LINE_END = re.compile(r"\r\n|\r|\n")  # CommonMark's line endings
_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape(text: str) -> str:
    """What a CommonMark renderer shows for backslash escapes."""
    return _UNESCAPE.sub(r"\1", text)


# --- data: real requests with Teams ids, representative and worst case ---------------------

DATA = TemplateData("teams", HOSTILE)
view, _r, _w, _home = DATA.view, DATA.r, DATA.w, DATA.home

ALL_FIELD_ERRORS = {
    "resource": "Unknown resource " + EVIL_500,
    "duration": "Not a duration: " + EVIL_500,
    "justification": "Too short: " + EVIL_500,
    "ticket": "Does not match: " + EVIL_500,
    "principal": "Not allowed: " + EVIL_500,  # a field the form lacks: shown on top
}


def _form_worst() -> dict[str, Any]:
    # The selected resource is past the listed ones: it must still be a choice.
    return {**DATA.worst_request_form(selected=200), "errors": ALL_FIELD_ERRORS}


def cases() -> Iterator[Case]:
    """(template, label, data) for every case; each template has at least one."""
    yield from DATA.cases()
    yield "request_form", "errors", {**request_form("prod-db-admin"), "errors": ALL_FIELD_ERRORS}
    yield "request_form", "worst", _form_worst()
    reason_missing = {"reason": "A denial needs a reason."}
    yield "deny_form", "reason-missing", _r("pending_stage2", None, errors=reason_missing)
    yield "deny_form", "decided", _r("denied", None)
    worst_errors = {"reason": EVIL_2000}
    yield (
        "deny_form",
        "worst",
        _w("pending_stage2", None, private_metadata="R-1:2", errors=worst_errors),
    )
    yield from review_cases(DATA)


CASES = list(cases())
_CASE = {(name, label): data for name, label, data in CASES}


# --- checks ---------------------------------------------------------------------------------


@cache
def schema_validator() -> jsonschema.Draft6Validator:
    """The official 1.5 schema, plus the ChoiceSet style "filtered" (static typeahead).

    Microsoft documents "filtered" as an Adaptive Cards 1.5 feature that Teams supports,
    but the published 1.5 schema file predates it; nothing else is relaxed.
    """
    schema = copy.deepcopy(json.loads(SCHEMA_FILE.read_text()))
    styles = schema["definitions"]["ChoiceInputStyle"]["anyOf"][0]["enum"]
    assert styles == ["compact", "expanded"], "the vendored schema changed; revisit this"
    styles.append("filtered")
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def schema_errors(card: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in schema_validator().iter_errors(card)
    ]


def _elements(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every element of a body, containers' items included (not ShowCard cards)."""
    for item in items:
        yield item
        if item.get("type") == "Container":
            yield from _elements(item.get("items", []))
        elif item.get("type") == "ColumnSet":
            for column in item.get("columns", []):
                yield from _elements(column.get("items", []))


def _card_actions(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The actions of one card (its action bar and its ActionSets), not of nested cards."""
    yield from card.get("actions", [])
    for element in _elements(card.get("body", [])):
        if element.get("type") == "ActionSet":
            yield from element["actions"]


def cards(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A card and every card nested in its ShowCard actions."""
    yield card
    for action in _card_actions(card):
        if action.get("type") == "Action.ShowCard":
            yield from cards(action["card"])


def all_elements(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for c in cards(card):
        yield from _elements(c.get("body", []))


def all_actions(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for c in cards(card):
        yield from _card_actions(c)


def executes(card: dict[str, Any], verb: str) -> list[dict[str, Any]]:
    return [a for a in all_actions(card) if a["type"] == "Action.Execute" and a.get("verb") == verb]


def markdown_texts(card: dict[str, Any]) -> Iterator[str]:
    """Every text Teams renders as markdown: TextBlocks and facts."""
    for element in all_elements(card):
        if element["type"] == "TextBlock":
            yield element["text"]
        elif element["type"] == "FactSet":
            for fact in element["facts"]:
                yield fact["title"]
                yield fact["value"]


def check_action(action: dict[str, Any]) -> None:
    kind = action.get("type")
    assert kind in ACTIONS, action
    assert isinstance(action.get("title"), str) and action["title"].strip(), action
    if kind == "Action.Execute":
        verb = action.get("verb")
        assert verb in VERB_DATA, f"unknown verb {verb!r}"
        data = action.get("data")
        # Only ids travel in a button; who may act is the verified user, checked by the bot.
        assert isinstance(data, dict), (verb, data)
        optional = VERB_DATA_OPTIONAL.get(verb, set())
        assert VERB_DATA[verb] <= set(data) <= VERB_DATA[verb] | optional, (verb, data)
        for key, value in data.items():
            if key in NUMBERS:
                assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
            else:
                assert isinstance(value, str) and value, (key, value)
        assert action.get("associatedInputs") in ("auto", "none"), action
    elif kind == "Action.OpenUrl":
        assert action["url"].startswith("https://"), action
    elif kind == "Action.ShowCard":
        check_card(action["card"], nested=True)


def check_card(card: dict[str, Any], nested: bool = False) -> None:
    """What Teams needs beyond the schema, for a card and the cards in its ShowCards."""
    assert card.get("type") == "AdaptiveCard", card
    if not nested:
        assert card.get("version") == "1.5"
        assert card.get("$schema") == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card.get("body"), "a card without a body"
    for element in _elements(card["body"]):
        kind = element.get("type")
        assert kind in ELEMENTS, element
        if kind == "TextBlock":
            assert isinstance(element.get("text"), str) and element["text"].strip(), element
            assert element.get("wrap") is True, f"Teams cuts unwrapped text: {element}"
        elif kind == "FactSet":
            assert element.get("facts"), element
            for fact in element["facts"]:
                assert isinstance(fact["title"], str) and fact["title"].strip(), fact
                assert isinstance(fact["value"], str) and fact["value"].strip(), fact
        elif kind == "ActionSet":
            assert element.get("actions"), element
        elif kind.startswith("Input."):
            assert isinstance(element.get("id"), str) and element["id"], element
            assert element.get("label"), f"an input without a label: {element}"
            if element.get("isRequired"):
                assert element.get("errorMessage"), f"required without a message: {element}"
            if kind == "Input.Text" and "value" in element and "maxLength" in element:
                assert len(element["value"]) <= element["maxLength"], element["id"]
            if kind == "Input.ChoiceSet":
                choices = element.get("choices")
                assert choices, element
                values = [c["value"] for c in choices]
                assert all(isinstance(c["title"], str) and c["title"].strip() for c in choices)
                assert all(isinstance(v, str) and v for v in values)
                assert len(values) == len(set(values)), "duplicate choice values"
                if "value" in element:
                    assert element["value"] in values, "the chosen value is not a choice"
    for action in _card_actions(card):
        check_action(action)
    if not nested:
        ids = [e["id"] for e in all_elements(card) if e["type"].startswith("Input.")]
        assert len(ids) == len(set(ids)), f"input ids must be unique on a card: {ids}"


def check_refresh(card: dict[str, Any]) -> None:
    if "refresh" not in card:
        return
    refresh = card["refresh"]
    action = refresh["action"]
    assert action["type"] == "Action.Execute" and action["verb"] == "refresh", refresh
    assert set(action["data"]) == {"request_id"}
    ids = refresh["userIds"]
    assert ids and len(ids) <= 60 and len(ids) == len(set(ids)), ids
    assert all(isinstance(i, str) and i for i in ids)


def check_markdown(text: str) -> None:
    """User text in markdown is escaped: only our own markup and date functions are live."""
    for bad in FORBIDDEN_RAW:
        assert bad not in text, f"{bad!r} rendered live in {text[:200]!r}"
    rest = OUR_DATE.sub("", text)
    residual: list[str] = []
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch == "\\":
            # Our escapes always stand before ASCII punctuation; anything else is stray.
            assert i + 1 < len(rest) and rest[i + 1] in string.punctuation, rest[i : i + 20]
            residual.append(" ")
            i += 2
            continue
        assert ch not in NEVER_OURS, f"unescaped {ch!r} in {rest[max(0, i - 40) : i + 40]!r}"
        residual.append(ch)
        i += 1
    live = "".join(residual)
    assert live.count("**") % 2 == 0, f"unbalanced bold in {text[:200]!r}"
    assert "*" not in live.replace("**", ""), f"a lone * in {text[:200]!r}"
    assert live.count("_") % 2 == 0, f"unbalanced italics in {text[:200]!r}"
    for line in LINE_END.split(rest):
        assert not BLOCK_START.match(line), f"a line starts markdown: {line[:80]!r}"


def check_summary(summary: Any) -> None:
    assert isinstance(summary, str) and summary.strip(), summary
    assert "\n" not in summary and "\r" not in summary, summary
    assert len(summary) <= 300


def size_of(rendered: dict[str, Any]) -> int:
    return len(json.dumps(rendered, ensure_ascii=False).encode("utf-8"))


def render(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return render_json("teams", name, data)


# --- every template, every case -------------------------------------------------------------


def test_every_slack_template_has_a_teams_twin() -> None:
    assert templates("teams") == templates("slack")


def test_every_template_has_a_case() -> None:
    names = templates("teams")
    covered = {name for name, _, _ in CASES}
    assert set(names) - covered == set(), "templates without a test case"
    assert covered - set(names) == set(), "cases for templates that do not exist"


@pytest.mark.parametrize(
    ("name", "data"), [(n, d) for n, _, d in CASES], ids=[f"{n}-{label}" for n, label, _ in CASES]
)
def test_renders_valid_and_inert(name: str, data: dict[str, Any]) -> None:
    rendered = render(name, data)
    assert set(rendered) == {"summary", "card"}
    check_summary(rendered["summary"])
    card = rendered["card"]
    assert schema_errors(card) == []
    check_card(card)
    check_refresh(card)
    for text in markdown_texts(card):
        check_markdown(text)
    assert size_of(rendered) <= MAX_BYTES, size_of(rendered)


def test_the_checks_catch_broken_cards() -> None:
    """The validators above fail on what a broken template would produce."""
    good = render("approval_card", _r("pending_stage1", "bob@example.com"))["card"]
    assert schema_errors(good) == []

    def broken(change: Any) -> dict[str, Any]:
        card = copy.deepcopy(good)
        change(card)
        return card

    no_text = broken(lambda c: c["body"][0].pop("text"))
    assert schema_errors(no_text)
    unknown_property = broken(lambda c: c["body"][0].update(colour="red"))
    assert schema_errors(unknown_property)
    bad_type = broken(lambda c: c["body"].append({"type": "Button", "text": "x"}))
    assert schema_errors(bad_type)
    with pytest.raises(AssertionError):
        check_card(broken(lambda c: c["actions"][0].update(verb="approve_all")))
    with pytest.raises(AssertionError):
        check_card(broken(lambda c: c["actions"][0]["data"].update(approver="bob@example.com")))
    with pytest.raises(AssertionError):
        duplicate = {"type": "Input.Text", "id": "reason", "label": "x"}
        check_card(broken(lambda c: c["body"].append(duplicate)))
    for live in ("[a](https://x)", "<at>Bob</at>", "**x", "1. one", "{{DATE(2017-", "a_b"):
        with pytest.raises(AssertionError):
            check_markdown(live)


# --- escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("**x**", r"\*\*x\*\*"),
        ("_x_", r"\_x\_"),
        ("[a](https://b)", r"\[a\]\(https://b\)"),
        ("<at>Bob</at>", r"\<at\>Bob\</at\>"),
        ("# head", r"\# head"),
        ("1. one\n2) two", "1\\. one\n2\\) two"),
        ("- item\n+ more\n> quote", "\\- item\n\\+ more\n\\> quote"),
        ("&lt; &#42;", r"\&lt; \&\#42;"),
        ("{{DATE(2017-02-14T06:08:39Z, SHORT)}}", r"\{\{DATE\(2017\-02\-14T06:08:39Z, SHORT\)\}\}"),
        ("back\\slash `code` ~~s~~ a|b ===", r"back\\slash \`code\` \~\~s\~\~ a\|b \=\=\="),
        ("alice@example.com, v1.5", r"alice@example.com, v1\.5"),
    ],
)
def test_markdown_escapes_every_markup(text: str, escaped: str) -> None:
    assert markdown(text) == escaped
    assert unescape(markdown(text)) == text


@given(st.text())
def test_markdown_round_trips_and_leaves_nothing_live(text: str) -> None:
    escaped = markdown(text)
    assert unescape(escaped) == text
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in NEVER_OURS | {"*", "_", "(", ")", "-", "!", "\\"}
        i += 1
    for line in LINE_END.split(escaped):
        assert not BLOCK_START.match(line), line


def test_teams_date_is_the_documented_function_format() -> None:
    ts = int(T0.timestamp())
    assert teams_date(ts) == (
        "{{DATE(2026-03-02T09:00:00Z, SHORT)}} {{TIME(2026-03-02T09:00:00Z)}}"
    )
    assert teams_date(None) == "-"


def test_one_line_and_byte_size() -> None:
    assert one_line(" a\n\tb\r\n c\u2028d  ") == "a b c d"
    assert byte_size("é🚀") == 6  # UTF-8 bytes, what Teams' size limit counts


def text_blocks(card: dict[str, Any]) -> list[str]:
    return [e["text"] for e in all_elements(card) if e["type"] == "TextBlock"]


def facts(card: dict[str, Any]) -> dict[str, str]:
    return {
        f["title"]: f["value"]
        for e in all_elements(card)
        if e["type"] == "FactSet"
        for f in e["facts"]
    }


def test_hostile_text_round_trips_as_data() -> None:
    card = render("approval_card", _w("pending_stage2", "bob@example.com"))["card"]
    blocks = text_blocks(card)
    # The whole justification, newlines and all, comes back exactly as typed.
    assert EVIL_2000 in [unescape(t) for t in blocks]
    assert unescape(facts(card)["Ticket"]) == one_line(EVIL_TICKET)
    reasons = [unescape(t) for t in blocks if t.startswith("“")]
    assert reasons and all(r == "“" + one_line(EVIL_500)[:199] + "…”" for r in reasons)
    heading = unescape(blocks[0])
    assert one_line(EVIL_NAME) in heading  # the resource and requester names, shown whole
    raw = json.dumps(card, ensure_ascii=False)
    assert "<at>Bob</at>" not in raw and "[link](https" not in raw


def test_user_text_in_inputs_is_kept_as_typed() -> None:
    """Input values are plain text (never markdown): the typed value comes back unchanged."""
    data = _form_worst()
    card = render("request_form", data)["card"]
    inputs = {e["id"]: e for e in all_elements(card) if e["type"].startswith("Input.")}
    assert inputs["justification"]["value"] == (EVIL_2000 + EVIL)[:1999] + "…"
    assert inputs["ticket"]["value"] == EVIL_2000[:99] + "…"
    assert inputs["duration"]["value"] == "nope"


def test_summaries_are_plain_text() -> None:
    for name, label, data in CASES:
        if "worst" in label:
            continue  # hostile text is shown as typed there, markup characters and all
        summary = render(name, data)["summary"]
        assert not re.search(r"\*\*|\\[!-/:-@\[-`{-~]|\{\{|<at>", summary), (name, summary)


# --- behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "viewer"), APPROVER_CASES)
def test_approve_and_deny_exactly_for_a_current_stage_approver(key: str, viewer: str) -> None:
    r = view(key, viewer)
    card = render("approval_card", {"r": r})["card"]
    approve, deny = executes(card, "approve"), executes(card, "deny")
    if not r["can_decide"]:
        assert approve == [] and deny == []
        assert not [a for a in all_actions(card) if a["title"] == "Deny"]
        return
    stage = r["stage"]["index"]
    assert [a["data"] for a in approve] == [{"request_id": r["id"], "stage": stage}]
    assert [a["data"] for a in deny] == [{"request_id": r["id"], "stage": stage}]
    assert approve[0]["associatedInputs"] == "none" and approve[0]["style"] == "positive"
    # Deny opens its reason in place: a ShowCard whose card holds the input and the Execute.
    show = [a for a in card["actions"] if a["type"] == "Action.ShowCard"]
    assert len(show) == 1 and show[0]["title"] == "Deny"
    inner = show[0]["card"]
    reason = [e for e in inner["body"] if e.get("id") == "reason"]
    assert len(reason) == 1
    assert reason[0]["type"] == "Input.Text" and reason[0]["isMultiline"] is True
    assert reason[0]["isRequired"] is True and reason[0]["errorMessage"]
    assert reason[0]["maxLength"] == 500
    assert inner["actions"] == deny and deny[0]["associatedInputs"] == "auto"


@pytest.mark.parametrize(
    ("key", "viewer"),
    [
        ("pending_stage2", "bob@example.com"),  # approved stage 1, stage 2 is someone else's
        ("signing_partial", "sam@example.com"),  # approved this stage already
        ("denied", "dora@example.com"),
        ("approved", "sam@example.com"),
        ("pending_stage1", "alice@example.com"),  # the requester
    ],
)
def test_no_buttons_after_deciding_and_the_outcome_instead(key: str, viewer: str) -> None:
    r = view(key, viewer)
    card = render("approval_card", {"r": r})["card"]
    assert "actions" not in card
    assert not executes(card, "approve") and not executes(card, "deny")
    outcome = unescape(text_blocks(card)[-1])
    expected = {
        "pending_stage2": "Stage 1 complete — now with stage 2 of 3",
        "signing_partial": "You approved this",
        "denied": "Denied by Dora Diaz",
        "approved": "Approved by Sam Singh",
        "pending_stage1": "Waiting for stage 1 of 3",
    }[key]
    assert expected in outcome


@pytest.mark.parametrize(
    ("key", "viewer", "hostile"),
    [
        ("pending_stage1", "bob@example.com", False),
        ("pending_stage2", "dora@example.com", False),
        ("pending_stage3", None, False),
        ("signing_partial", "sam@example.com", False),
        ("ci_pending", "erin@example.com", False),
        ("pending_stage2", "bob@example.com", True),
    ],
)
def test_refresh_names_the_current_approvers_teams_ids(
    key: str, viewer: str | None, hostile: bool
) -> None:
    r = view(key, viewer, hostile=hostile)
    card = render("approval_card", {"r": r})["card"]
    expected = [p["teams_id"] for p in r["stage"]["approvers"] if p["teams_id"]]
    assert expected, "the case should have approvers on Teams"
    assert card["refresh"]["userIds"] == expected[:60]
    assert card["refresh"]["action"]["data"] == {"request_id": r["id"]}
    if key == "pending_stage2" and not hostile:
        assert expected == ["29:1dora"]  # Dan has no Teams account


def test_refresh_names_people_known_by_entra_object_id_by_their_mri() -> None:
    r = view("pending_stage1", "bob@example.com")
    oid = "6a1d0f5e-2b7c-4e8f-9a0b-1c2d3e4f5a6b"
    approvers = [{**r["stage"]["approvers"][0], "teams_id": oid}]
    card = render("approval_card", {"r": {**r, "stage": {**r["stage"], "approvers": approvers}}})
    assert card["card"]["refresh"]["userIds"] == [f"8:orgid:{oid}"]


def test_refresh_takes_at_most_sixty_ids_and_none_when_nobody_is_on_teams() -> None:
    r = view("pending_stage1", "bob@example.com")
    many = [{**r["stage"]["approvers"][0], "teams_id": f"29:{i}"} for i in range(80)]
    crowded = {**r, "stage": {**r["stage"], "approvers": many}}
    ids = render("approval_card", {"r": crowded})["card"]["refresh"]["userIds"]
    assert ids == [f"29:{i}" for i in range(60)]
    w = teams_world()
    nobody = {e: replace(p, teams_id=None) for e, p in w.directory.people.items()}
    offline = view(
        "pending_stage1", "bob@example.com", directory=DirectorySnapshot(nobody, w.directory.groups)
    )
    assert "refresh" not in render("approval_card", {"r": offline})["card"]


@pytest.mark.parametrize(
    "key", ["approved", "active", "denied", "cancelled", "timed_out", "failed", "revoked"]
)
def test_no_refresh_once_decided(key: str) -> None:
    card = render("approval_card", {"r": view(key, "bob@example.com")})["card"]
    assert "refresh" not in card and "actions" not in card


def test_approval_card_gives_context_to_decide() -> None:
    card = render("approval_card", _r("pending_stage2", "dan@example.com"))["card"]
    found = facts(card)
    assert found["Requester"] == "Alice Archer (alice@example.com)"
    assert found["Their manager"] == "Bob Baker"
    assert found["Duration"] == "1h, from the grant"
    assert unescape(found["Request"]) == "R-1" and unescape(found["Ticket"]) == "INC-42"
    text = unescape("\n".join(text_blocks(card)))
    for expected in (
        "Production database (admin)",
        "🟠",
        JUSTIFICATION,
        "Stage 1: **approved** by Bob Baker",
        "Looks fine",
        "has not asked for this in the last 90 days. Asked {{DATE(",
    ):
        assert expected in text, expected
    assert "the last one ended" not in text  # nothing ended before: nothing to show
    ended = T0 - timedelta(days=120)
    again = render(
        "approval_card", _r("pending_stage2", "dan@example.com", previous=3, last_ended=ended)
    )
    assert "asked for this 3 times in the last 90 days; the last one ended " + teams_date(
        int(ended.timestamp())
    ) in "\n".join(text_blocks(again["card"]))
    glass = render("approval_card", _r("break_glass", "sam@example.com"))["card"]
    assert any("Break-glass" in t for t in text_blocks(glass))


def test_approval_card_says_a_break_glass_ask_reached_its_limit() -> None:
    card = render("approval_card", _r("break_glass_refused", "bob@example.com"))["card"]
    text = unescape("\n".join(text_blocks(card)))
    assert "**Asked as break-glass**: Break-glass limit reached (2 in 30d), so it needs" in text
    assert executes(card, "approve")


def test_break_glass_alerts_say_who_what_why_until_when() -> None:
    for name, viewer in (("admin_break_glass_alert", None), ("break_glass_owner_alert", "dora")):
        data = _r("break_glass", f"{viewer}@example.com" if viewer else None, context={})
        card = render(name, data)["card"]
        text = unescape("\n".join(text_blocks(card)))
        ends = teams_date(data["r"]["ends_ts"])
        for expected in (
            "Alice Archer took **break-glass** access to",
            "Production database (admin)",
            f"for 1h, until about {ends}, without approval",
            "INC-99",
            JUSTIFICATION,
        ):
            assert expected in text, (name, expected)
        active = _r("break_glass_active", None, context={})
        granted = unescape("\n".join(text_blocks(render(name, active)["card"])))
        assert f"until {teams_date(active['r']['expires_ts'])}" in granted
        assert "until about" not in granted


def test_request_submitted_tells_the_requester_the_limit_was_reached() -> None:
    message = render("request_submitted", _r("break_glass_refused"))
    limit = "Break-glass limit reached (2 in 30d): your request goes to the approvers"
    assert limit in message["summary"]  # the form's answer on Teams
    text = unescape("\n".join(text_blocks(message["card"])))
    assert (
        "🚨 **Break-glass limit reached (2 in 30d)**: your request goes to the approvers." in text
    )
    assert executes(message["card"], "cancel")
    assert "limit reached" not in render("request_submitted", _r("pending_stage1"))["summary"]


def test_thirty_decisions_show_ten_and_say_how_many_more() -> None:
    card = render("approval_card", _w("pending_stage2", "bob@example.com"))["card"]
    lines = [t for t in text_blocks(card) if re.match(r"^(✅|⛔) Stage \d", t)]
    assert len(lines) == 10
    assert any("and 20 more" in t for t in text_blocks(card))


def test_request_submitted_can_cancel_while_pending_only() -> None:
    pending = render("request_submitted", _r("pending_stage2"))["card"]
    confirm = [a for a in pending["actions"] if a["type"] == "Action.ShowCard"]
    assert len(confirm) == 1 and confirm[0]["title"] == "Cancel request"
    assert executes(pending, "cancel")[0]["data"] == {"request_id": "R-1"}
    assert any(t.startswith("**Now asking:** Dora Diaz, Dan Doyle") for t in text_blocks(pending))
    for key in ("approved", "denied", "cancelled", "failed"):
        done = render("request_submitted", _r(key))["card"]
        assert "actions" not in done and not executes(done, "cancel")


@pytest.mark.parametrize(("name", "key"), REQUEST_AGAIN)
def test_request_again_carries_the_resource(name: str, key: str) -> None:
    card = render(name, _r(key))["card"]
    assert [a["data"] for a in executes(card, "rerequest")] == [{"resource_id": "prod-db-admin"}]


def test_done_extend_and_reminder_buttons() -> None:
    granted = render("access_granted", _r("active"))["card"]
    assert [a["title"] for a in granted["actions"]] == ["I'm done"]
    assert executes(granted, "done")[0]["data"] == {"request_id": "R-1"}
    reminder = render("expiry_reminder", _r("active", before="15m"))["card"]
    assert [a["title"] for a in reminder["actions"]] == ["Extend", "I'm done"]
    assert executes(reminder, "extend")[0]["data"] == {"request_id": "R-1"}
    assert executes(reminder, "done")[0]["data"] == {"request_id": "R-1"}
    assert "ends in **15m**" in text_blocks(reminder)[0]


def test_denial_names_the_denier_and_the_reason() -> None:
    text = "\n".join(text_blocks(render("request_denied", _r("denied"))["card"]))
    assert "denied by Dora Diaz at stage 2" in text and "Use the read replica" in text
    revoked = "\n".join(text_blocks(render("access_revoked", _r("revoked"))["card"]))
    assert "revoked by Sam Singh" in revoked and "Left the team" in revoked


def _inputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in all_elements(card) if e["type"].startswith("Input.")]


def test_request_form_fields_follow_the_resource() -> None:
    empty = render("request_form", request_form(None))["card"]
    assert [i["id"] for i in _inputs(empty)] == ["resource"]
    assert [a["verb"] for a in empty["actions"]] == ["open_form"]  # "Next": the form again
    assert empty["actions"][0]["associatedInputs"] == "auto"

    card = render(
        "request_form", request_form("prod-db-admin", justification="Again", ticket="INC-1")
    )
    inputs = {i["id"]: i for i in _inputs(card["card"])}
    assert list(inputs) == ["resource", "break_glass", "duration", "justification", "ticket"]
    assert inputs["resource"]["type"] == "Input.ChoiceSet"
    assert (
        inputs["resource"]["style"] == "filtered" and inputs["resource"]["value"] == "prod-db-admin"
    )
    assert inputs["duration"]["value"] == "1h" and inputs["duration"]["type"] == "Input.Text"
    justification = inputs["justification"]
    assert justification["isMultiline"] is True and justification["isRequired"] is True
    assert justification["maxLength"] == 2000 and justification["value"] == "Again"
    assert re.fullmatch(justification["regex"], "x" * 15)
    assert not re.fullmatch(justification["regex"], "x" * 14)
    assert inputs["ticket"]["isRequired"] is True and inputs["ticket"]["value"] == "INC-1"
    assert "(INC|CHG)" in inputs["ticket"]["placeholder"]
    submit = executes(card["card"], "submit_request")
    assert [a["data"] for a in submit] == [{"form_resource": "prod-db-admin"}]
    assert submit[0]["associatedInputs"] == "auto"
    assert "at most 4h" in "\n".join(text_blocks(card["card"]))

    plain = render("request_form", request_form("staging-db-read", duration="1d"))["card"]
    assert [i["id"] for i in _inputs(plain)] == ["resource", "duration", "justification"]
    assert _inputs(plain)[1]["value"] == "1d"

    nothing = render("request_form", form_data([], None))["card"]
    assert _inputs(nothing) == [] and "actions" not in nothing


def test_request_form_offers_break_glass_only_where_the_resource_has_it() -> None:
    card = render("request_form", request_form("prod-db-admin"))["card"]
    toggle = {i["id"]: i for i in _inputs(card)}["break_glass"]
    assert toggle["type"] == "Input.Toggle" and toggle["title"] == "Emergency (break-glass)"
    assert (toggle["valueOn"], toggle["valueOff"], toggle["value"]) == ("true", "false", "false")
    text = unescape("\n".join(text_blocks(card)))
    assert "at once, without approval, for at most 1 hour" in text
    assert "At most 2 in 30d per person; beyond that the request goes to the approvers." in text
    assert [a["data"] for a in executes(card, "submit_request")] == [
        {"form_resource": "prod-db-admin"}
    ]

    glass = render("request_form", request_form("prod-db-admin", break_glass=True))["card"]
    inputs = {i["id"]: i for i in _inputs(glass)}
    assert inputs["break_glass"]["value"] == "true"
    # Break-glass's cap is the duration's default and its limit.
    assert inputs["duration"]["value"] == "1h" and "at most 1h" in inputs["duration"]["label"]
    [submit] = executes(glass, "submit_request")
    assert submit["data"] == {"form_resource": "prod-db-admin", "form_break_glass": "true"}
    assert submit["title"] == "Request break-glass access"
    assert any("**Break-glass**: check the duration" in t for t in text_blocks(glass))

    for resource in ("ci-admin", "staging-db-read"):
        for on in (False, True):
            plain = render("request_form", request_form(resource, break_glass=on))["card"]
            assert "break_glass" not in {i["id"] for i in _inputs(plain)}
            assert [a["data"] for a in executes(plain, "submit_request")] == [
                {"form_resource": resource}
            ]


def test_request_form_choices_are_labelled_by_risk() -> None:
    card = render("request_form", request_form(None))["card"]
    choices = _inputs(card)[0]["choices"]
    labels = [c["title"].split(" · ")[0] for c in choices]
    # Grouped by risk, lowest first (two resources are high risk).
    assert list(dict.fromkeys(labels)) == ["Low risk", "Medium risk", "High risk", "Critical"]
    assert labels == sorted(labels, key=["Low risk", "Medium risk", "High risk", "Critical"].index)
    values = [c["value"] for c in choices]
    assert sorted(values) == sorted(r.id for r in world().policy.resources)


def test_request_form_input_ids_are_engine_fields() -> None:
    """The engine's refusals name fields; each must be an input of the form to land on."""
    slack_form = render_json("slack", "request_form", request_form("prod-db-admin"))
    slack_fields = {b["block_id"] for b in slack_form["blocks"] if b["type"] == "input"}
    card = render("request_form", request_form("prod-db-admin"))["card"]
    assert {i["id"] for i in _inputs(card)} == slack_fields


@pytest.mark.parametrize("label", ["errors", "worst"])
def test_request_form_shows_each_error_under_its_field(label: str) -> None:
    data = _CASE["request_form", label]
    card = render("request_form", data)["card"]
    body = card["body"]
    for field in ("resource", "duration", "justification", "ticket"):
        at = next(i for i, e in enumerate(body) if e.get("id") == field)
        below = body[at + 1]
        assert below["type"] == "TextBlock" and below["color"] == "attention", below
        assert unescape(below["text"]) == "⚠️ " + ALL_FIELD_ERRORS[field][:299] + "…"
    top = [e for e in body[:3] if e.get("color") == "attention"]
    assert [unescape(e["text"]) for e in top] == ["⚠️ " + ALL_FIELD_ERRORS["principal"][:299] + "…"]
    kept = {i["id"]: i.get("value") for i in _inputs(card)}
    assert kept["resource"] == data["selected"]["id"]
    if label == "worst":
        choices = _inputs(card)[0]["choices"]
        assert len(choices) < 270 and data["selected"]["id"] in [c["value"] for c in choices]
        assert any("of the 270 resources" in t for t in text_blocks(card))


def test_deny_form_asks_for_the_reason_of_the_stage_shown() -> None:
    card = render("deny_form", _CASE["deny_form", "pending"])["card"]
    (reason,) = _inputs(card)
    assert reason["id"] == "reason" and reason["isRequired"] and reason["isMultiline"]
    assert [a["data"] for a in executes(card, "deny")] == [{"request_id": "R-1", "stage": 1}]
    assert executes(card, "deny")[0]["associatedInputs"] == "auto"
    missing = render("deny_form", _CASE["deny_form", "reason-missing"])["card"]
    body = missing["body"]
    at = next(i for i, e in enumerate(body) if e.get("id") == "reason")
    assert body[at + 1]["color"] == "attention"
    assert "A denial needs a reason" in body[at + 1]["text"]
    assert executes(missing, "deny")[0]["data"] == {"request_id": "R-1", "stage": 1}
    decided = render("deny_form", _CASE["deny_form", "decided"])["card"]
    assert _inputs(decided) == [] and "actions" not in decided


def test_home_shows_each_list_and_its_empty_state() -> None:
    empty = render("home", _home(False, 0))["card"]
    text = "\n".join(text_blocks(empty))
    assert [a["verb"] for a in empty["actions"]] == ["open_form"]
    assert "Nothing waits for your decision" in text
    assert "no open requests" in text and "no access" in text
    home = render("home", _home(False, 3))["card"]
    approve = executes(home, "approve")
    assert [a["data"] for a in approve] == [{"request_id": "R-1", "stage": 0}] * 3
    # No reason input per entry (ids would repeat): Deny asks with deny_form.
    deny = executes(home, "deny")
    assert len(deny) == 3 and all(a["associatedInputs"] == "none" for a in deny)
    assert [i["id"] for i in _inputs(home)] == []
    assert len(executes(home, "done")) == 3
    worst_home = render("home", _home(True, 40))["card"]
    worst_text = "\n".join(text_blocks(worst_home))
    assert "More requests wait for you" in worst_text
    assert len(re.findall(r"…and \d+ more", worst_text)) == 3


def test_admin_reply_stays_small_and_says_what_it_left_out() -> None:
    worst_reply = render("admin_reply", _CASE["admin_reply", "worst"])
    text = "\n".join(text_blocks(worst_reply["card"]))
    assert re.search(r"…and \d+ more lines", text) and "(200 lines in all)" in text
    assert re.search(r"…and \d+ more requests", text)
    assert re.search(r"…\d+ earlier events not shown", text)
    show = "\n".join(text_blocks(render("admin_reply", _CASE["admin_reply", "show"])["card"]))
    assert "Use the read replica" in show and "Denied by Dora Diaz" in show
    policy = render("admin_reply", _CASE["admin_reply", "policy"])["card"]
    assert len(text_blocks(policy)) == 1 + len(world().policy.resources)  # nothing cut


def test_drift_report_says_what_was_removed_kept_and_missing() -> None:
    card = render("admin_drift_report", _CASE["admin_drift_report", "found"])["card"]
    text = unescape("\n".join(text_blocks(card)))
    for expected in (
        "🔍 Access drift found",
        "**S0SIGNING** in slack-groups · Release signing key · drift: revoke",
        "eve@example.com — **removal failed**: rejected: not allowed",
        "alice@example.com — kept (drift: report)",
        "**Grant in force, not a member (1)**",
        "• dora@example.com — request R-7",
        "They are not re-granted",
        "Checked 5 managed group(s)",
    ):
        assert expected in text, expected
    assert "S0DBADMIN" not in text  # groups without drift are counted, not listed
    worst_report = render("admin_drift_report", _CASE["admin_drift_report", "worst"])
    assert re.search(r"…and \d+ more groups with drift", str(text_blocks(worst_report["card"])))


def test_a_nudge_reminds_only_who_can_still_decide() -> None:
    card = render("approval_card", _r("pending_stage1", "bob@example.com", nudge=True))["card"]
    nudged = json.dumps(card)
    assert "**Reminder**: this has waited for your decision since {{DATE(" in nudged
    assert "The admins have been told." in nudged
    for key, viewer in (("denied", "dan@example.com"), ("pending_stage1", "sam@example.com")):
        card = render("approval_card", _r(key, viewer, nudge=True))["card"]
        assert "Reminder" not in json.dumps(card)
