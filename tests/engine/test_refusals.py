"""Refusals shown on a form: each message under the input it is about."""

from __future__ import annotations

from engine.refusals import Refusal, Refused
from message_templates import field_errors

REFUSED = Refused(
    Refusal("too_short", "Say more.", "justification"),
    Refusal("bad_duration", "At most 4h.", "duration"),
    Refusal("too_long", "Say less.", "justification"),
    Refusal("not_allowed", "Not for you.", "principal"),
    Refusal("unknown_person", "Who are you?"),
)


def test_by_field_keeps_the_first_message_of_each_field() -> None:
    assert field_errors(REFUSED) == {
        "justification": "Say more.",
        "duration": "At most 4h.",
        "principal": "Not for you.",
    }


def test_a_form_without_the_input_shows_the_message_elsewhere() -> None:
    form = {"resource", "duration", "justification"}
    # Slack can only show errors under inputs the modal has: a fallback input takes them.
    assert field_errors(REFUSED, form, "justification") == {
        "justification": "Say more.",
        "duration": "At most 4h.",
    }
    # A Teams card lists them on top, under their own field or code.
    assert field_errors(REFUSED, form) == {
        "justification": "Say more.",
        "duration": "At most 4h.",
        "principal": "Not for you.",
        "unknown_person": "Who are you?",
    }
