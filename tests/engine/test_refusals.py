"""Refusals shown on a form: each message under the input it is about, worded by templates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.refusals import Refusal, Refused
from message_templates import field_errors, refusal_text

SHORT = Refusal("justification_too_short", "justification", min=10, length=3)
OVER = Refusal("bad_duration", "duration", error="cannot read '4x'")
LONG = Refusal("justification_too_long", "justification", max=20, length=30)
PRINCIPAL = Refusal("principal_not_allowed", "principal")
WHO = Refusal("unknown_person")
REFUSED = Refused(SHORT, OVER, LONG, PRINCIPAL, WHO)
ROOT = Path(__file__).resolve().parents[2]


def test_by_field_keeps_the_first_message_of_each_field() -> None:
    assert field_errors(REFUSED) == {
        "justification": refusal_text(SHORT),
        "duration": refusal_text(OVER),
        "principal": refusal_text(PRINCIPAL),
    }
    assert refusal_text(OVER) == "Cannot read '4x'."


def test_a_form_without_the_input_shows_the_message_elsewhere() -> None:
    form = {"resource", "duration", "justification"}
    # Slack can only show errors under inputs the modal has: a fallback input takes them.
    assert field_errors(REFUSED, form, "justification") == {
        "justification": refusal_text(SHORT),
        "duration": refusal_text(OVER),
    }
    # A Teams card lists them on top, under their own field or code.
    assert field_errors(REFUSED, form) == {
        "justification": refusal_text(SHORT),
        "duration": refusal_text(OVER),
        "principal": refusal_text(PRINCIPAL),
        "unknown_person": refusal_text(WHO),
    }


def test_every_refusal_the_code_raises_has_its_wording() -> None:
    codes = set()
    for folder in ("engine", "bot", "adapters"):
        for path in (ROOT / folder).rglob("*.py"):
            codes |= set(re.findall(r'Refusal\(\s*"(\w+)"', path.read_text()))
    assert len(codes) > 30
    wording = (ROOT / "message_templates" / "shared" / "refusals.txt.j2").read_text()
    missing = {c for c in codes if not re.search(rf"macro {c}\(", wording)}
    assert not missing


def test_a_code_without_wording_fails_loudly() -> None:
    with pytest.raises(LookupError, match="no wording for refusals 'no_such_code'"):
        refusal_text(Refusal("no_such_code"))
