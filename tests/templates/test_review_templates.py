"""What the review templates say and offer, on Slack and on Teams, from campaigns the engine
made (``tests.templates.reviews``). That every rendering is valid, inert and within the
platforms' limits is checked with every other template (test_slack_templates.py,
test_teams_templates.py); here: the buttons, the paging of a 300-item reviewer, the
wording of outcomes and the admins' figures.
"""

from __future__ import annotations

import json
from typing import Any

from message_templates import render_json
from tests.templates import test_slack_templates as slack_t
from tests.templates import test_teams_templates as teams_t
from tests.templates.reviews import (
    CAMPAIGN,
    DAN,
    DORA,
    at_due,
    break_glass,
    card,
    many_held,
    reason_form,
    started,
    typical_held,
)
from tests.templates.reviews import admin as admin_data

SLACK, TEAMS = slack_t.DATA, teams_t.DATA


def slack(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return render_json("slack", name, data)


def teams(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return render_json("teams", name, data)["card"]  # type: ignore[no-any-return]


def text(rendered: dict[str, Any]) -> str:
    return json.dumps(rendered, ensure_ascii=False)


def teams_text(card_: dict[str, Any]) -> str:
    return teams_t.unescape("\n".join(teams_t.text_blocks(card_)))


# --- a reviewer's card ----------------------------------------------------------------------


def test_a_card_offers_keep_and_revoke_per_item_carrying_only_ids() -> None:
    message = slack("review_card", card(started(SLACK.world(), typical_held()), DORA))
    keeps = slack_t.all_actions(message, "review_keep")
    revokes = slack_t.all_actions(message, "review_revoke")
    assert [b["value"] for b in keeps] == [f"{CAMPAIGN}:{i}" for i in range(4)]
    assert [b["value"] for b in revokes] == [b["value"] for b in keeps]
    # Keeping high risk asks for a reason ("Keep…"); low risk keeps at once.
    assert [b["text"]["text"] for b in keeps] == ["Keep…", "Keep", "Keep", "Keep"]
    assert all(b["text"]["text"] == "Revoke…" for b in revokes)
    shown = text(message)
    for expected in (
        "*0 of 4* of your items decided",
        "<@U0CAROL> (carol@example.com)",
        "Member of S0DBADMIN without a Clearance grant",
        "Clearance grant R-3, approved by <@U0BOB>, <@U0DORA> · since <!date^",
        "3 requests in the last 90 days",
        ">Checking yesterday's import",
        "Baseline member of S0STAGINGRO",
        "then undecided items are revoked",
    ):
        assert expected in shown, expected


def test_keep_all_only_while_low_or_medium_risk_items_wait() -> None:
    r = started(SLACK.world(), typical_held())
    (keep_all,) = slack_t.all_actions(slack("review_card", card(r, DORA)), "review_keep_all")
    assert keep_all["value"] == CAMPAIGN and keep_all["confirm"]
    assert "(3)" in keep_all["text"]["text"]
    only_high = r.decide(1, DORA, "keep").decide(2, DORA, "keep").decide(3, DORA, "keep")
    assert not slack_t.all_actions(slack("review_card", card(only_high, DORA)), "review_keep_all")
    assert not teams_t.executes(teams("review_card", card(only_high, DORA)), "review_keep_all")
    bob = teams("review_card", card(started(TEAMS.world(), typical_held()), "bob@example.com"))
    assert teams_t.executes(bob, "review_keep_all")[0]["data"] == {"campaign_id": CAMPAIGN}


def test_a_300_item_reviewer_sees_ten_and_the_count_of_the_rest() -> None:
    big = started(*many_held(SLACK, 300, hostile=False))
    message = slack("review_card", card(big, DORA))
    assert len(message["blocks"]) <= 50
    assert len(slack_t.all_actions(message, "review_keep")) == 10
    shown = text(message)
    assert "…and 290 more of your items" in shown and "*0 of 300* of your items" in shown
    assert "(150)" in slack_t.all_actions(message, "review_keep_all")[0]["text"]["text"]
    # Deciding the first ten brings the next ten up.
    for i in range(10):
        big = big.decide(i, DORA, "keep", "still needed")
    later = slack("review_card", card(big, DORA))
    values = [b["value"] for b in slack_t.all_actions(later, "review_keep")]
    assert values == [f"{CAMPAIGN}:{i}" for i in range(10, 20)]
    assert "*10 of 300* of your items decided" in text(later)


def test_a_300_item_reviewer_on_teams_types_each_reason_in_place() -> None:
    big = started(*many_held(TEAMS, 300, hostile=True))
    rendered = render_json("teams", "review_card", card(big, DORA))
    assert teams_t.size_of(rendered) <= teams_t.MAX_BYTES
    body = rendered["card"]
    keeps = teams_t.executes(body, "review_keep")
    shown = len({a["data"]["index"] for a in keeps})
    assert 1 <= shown <= 10
    assert f"…and {300 - shown} more of your items" in teams_text(body)
    ids = [i["id"] for i in teams_t._inputs(body)]
    assert ids == [f"reason_{i}" for i in range(shown)]
    # Low risk: Keep sends nothing; high risk: Keep and Revoke send the item's reason.
    for action in keeps:
        index = action["data"]["index"]
        expected = "auto" if index % 2 else "none"  # odd items are prod-db-admin (high)
        assert action["associatedInputs"] == expected, action
    assert all(a["associatedInputs"] == "auto" for a in teams_t.executes(body, "review_revoke"))


def test_a_card_with_nothing_left_says_so_and_a_closed_one_says_it_closed() -> None:
    r = started(SLACK.world(), typical_held())
    done = r.decide(0, DORA, "keep", "on call").decide(1, DORA, "keep")
    done = done.decide(2, DORA, "revoke", "left").decide(3, DORA, "keep")
    assert "Nothing waits for your decision" in text(slack("review_card", card(done, DORA)))
    assert "*4 of 4* of your items decided" in text(slack("review_card", card(done, DORA)))
    closed = done.decide(4, "bob@example.com", "keep")
    for rendered in (
        slack("review_card", card(closed, DORA)),
        teams("review_card", card(closed, DORA)),
    ):
        assert "This review is closed" in text(rendered)
        assert "review_keep" not in text(rendered)
    held = at_due(started(SLACK.world(), typical_held(), max_revocations=0))
    assert "wait for an admin's confirmation" in text(slack("review_card", card(held, DORA)))


def test_a_reminder_says_how_many_still_wait() -> None:
    r = started(SLACK.world(), typical_held())
    assert "*Reminder*: 4 of your items still wait" in text(
        slack("review_card", card(r, DORA, nudge=True))
    )
    assert "**Reminder**: 4 of your items still wait" in teams_text(
        teams("review_card", card(started(TEAMS.world(), typical_held()), DORA, nudge=True))
    )


# --- break-glass ------------------------------------------------------------------------------


def test_a_break_glass_card_asks_whether_it_was_justified() -> None:
    glass, request = break_glass(SLACK, hostile=False)
    message = slack("break_glass_review", card(glass, DORA, r=request))
    assert message["blocks"][0]["text"]["text"].endswith("Was this emergency access justified?")
    shown = text(message)
    for expected in (
        "<@U0ALICE> took *break-glass* access",
        "Production database (admin)",
        "for 1h on <!date^",
        "INC-99",
        "Investigating INC-42",
    ):
        assert expected in shown, expected
    (justified,) = slack_t.all_actions(message, "review_keep")
    (not_justified,) = slack_t.all_actions(message, "review_revoke")
    assert justified["text"]["text"] == "Justified…" and justified["value"] == "C-BREAKGLS:0"
    assert not_justified["text"]["text"] == "Not justified…"
    glass_t, request_t = break_glass(TEAMS, hostile=False)
    body = teams("break_glass_review", card(glass_t, DORA, r=request_t))
    assert [a["title"] for a in body["actions"]] == ["Justified", "Not justified"]
    assert [i["id"] for i in teams_t._inputs(body)] == ["reason_0"]


def test_a_judged_break_glass_card_says_how_and_by_whom() -> None:
    glass, request = break_glass(SLACK, hostile=False)
    judged = glass.decide(0, DORA, "revoke", "A read replica would have done")
    message = slack("break_glass_review", card(judged, DAN, r=request))
    assert not slack_t.all_actions(message, "review_keep")
    assert "*Not justified* by <@U0DORA>" in text(message)
    assert "A read replica would have done" in text(message)
    alert = text(slack("admin_break_glass_not_justified", admin_data(judged, 0, r=request)))
    assert "<@U0DORA> judged the *break-glass* access of <@U0ALICE>" in alert
    assert "A read replica would have done" in alert and "R-2" in alert


# --- the reason form ------------------------------------------------------------------------


def test_the_reason_form_carries_the_item_and_verdict_back() -> None:
    r = started(SLACK.world(), typical_held())
    modal = slack("review_reason_form", reason_form(r, 1, "revoke"))
    assert modal["callback_id"] == "review_reason"
    assert modal["private_metadata"] == f"{CAMPAIGN}:1:revoke"
    assert modal["title"]["text"] == "Revoke access" and modal["submit"]["text"] == "Revoke"
    reason = next(b for b in modal["blocks"] if b.get("block_id") == "reason")
    assert reason["element"]["max_length"] == 500
    assert "told this reason" in reason["hint"]["text"]
    keep = slack("review_reason_form", reason_form(r, 0, "keep"))
    assert keep["private_metadata"] == f"{CAMPAIGN}:0:keep" and keep["submit"]["text"] == "Keep"
    glass, request = break_glass(SLACK, hostile=False)
    judged = slack("review_reason_form", reason_form(glass, 0, "revoke", r=request))
    assert judged["submit"]["text"] == "Not justified"


def test_the_teams_reason_form_shows_the_error_under_the_input() -> None:
    r = started(TEAMS.world(), typical_held())
    missing = {"reason": "Please give a reason for revoking this access."}
    body = teams("review_reason_form", reason_form(r, 4, "revoke", missing, reason="  "))
    (action,) = body["actions"]
    assert action["verb"] == "review_revoke" and action["data"] == {
        "campaign_id": CAMPAIGN,
        "index": 4,
    }
    elements = body["body"]
    at = next(i for i, e in enumerate(elements) if e.get("id") == "reason")
    assert elements[at + 1]["color"] == "attention"
    assert "Please give a reason" in elements[at + 1]["text"]


# --- the admins -----------------------------------------------------------------------------


def test_the_summary_gives_figures_per_reviewer_and_names_who_did_not_decide() -> None:
    r = started(SLACK.world(), typical_held())
    r = r.decide(0, DORA, "keep", "on call").decide(2, DORA, "revoke", "left")
    closed = at_due(r)  # the other three are revoked by default
    post = text(slack("admin_review_summary", admin_data(closed)))
    assert "5 items: 2 decided by a reviewer, 1 kept, 4 revoked, 3 defaulted" in post
    assert "<@U0DORA> — decided 2 (kept 1, revoked 1), 2 defaulted" in post
    assert "<@U0DAN> — decided 0 (kept 0, revoked 0), 2 defaulted" in post
    assert "*Did not decide* (their items were left to the due time): <@U0BOB>, <@U0DAN>" in post
    card_ = teams(
        "admin_review_summary",
        admin_data(at_due(started(TEAMS.world(), typical_held()).decide(0, DORA, "keep", "x"))),
    )
    assert "Did not decide** (their items were left to the due time): Bob Baker, Dan Doyle" in (
        teams_text(card_)
    )


def test_held_revocations_name_their_groups_and_the_confirm_command() -> None:
    held = at_due(started(SLACK.world(), typical_held(), max_revocations=0))
    post = text(slack("admin_review_held", admin_data(held)))
    assert f"`review confirm {CAMPAIGN}`" in post
    assert "*S0STAGINGRO* (slack-groups) · Staging database (read-only): *3* held" in post
    assert post.index("S0STAGINGRO") < post.index("S0DBADMIN")  # most held first
    teams_post = teams_text(
        teams(
            "admin_review_held",
            admin_data(at_due(started(TEAMS.world(), typical_held(), max_revocations=0))),
        )
    )
    assert f"review confirm {CAMPAIGN}" in teams_post


def test_an_escalation_says_to_whom_and_until_when() -> None:
    escalated = at_due(started(SLACK.world(), typical_held(), on_no_decision="escalate"))
    post = text(slack("admin_review_escalated", admin_data(escalated)))
    assert "with 5 items undecided. They now go to <@U0SAM>, <@U0SARA>, due <!date^" in post


# --- the home -------------------------------------------------------------------------------


def test_the_home_lists_what_waits_for_review() -> None:
    home = slack("home", SLACK.home(False, 3))
    shown = text(home)
    assert "To review" in shown and "*300* items wait for you" in shown
    assert "No access review waits for you" in text(slack("home", SLACK.home(False, 0)))
    assert "More reviews wait for you" in text(slack("home", SLACK.home(True, 40)))
    card_ = teams("home", TEAMS.home(False, 3))
    opens = teams_t.executes(card_, "review_open")
    assert [a["data"] for a in opens] == [{"campaign_id": f"C-{i:08d}"} for i in range(3)]
