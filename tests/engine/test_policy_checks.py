"""A resource that fails its schema still gets every check its other keys allow: one run
of ``policy check`` reports every independent problem."""

from __future__ import annotations

from textwrap import dedent

import pytest

from engine.policy_loading import PolicyError, parse_policy

BROKEN = dedent(
    """\
    admins:
      users: [sam@x.com]
    directory:
      people:
        - {email: sam@x.com, name: Sam}
      groups:
        dbas: [sam@x.com]
    connectors:
      ldap: {type: ldap}
    resources:
      - id: db
        name: DB
        risk: low
        grant: {connector: ldap, group: g}
        duration: {default: 1h, max: 4h}
        approval: [admins]
      - id: db
        name: DB again
        risk: spicy
        grant: {connector: ldap, group: g}
        duration: {default: 1h, max: 4h}
        justification: {ticket: '([A-Z]+'}
        approval: [group:nobody]
    """
)


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    return [(p.line, p.message) for p in info.value.problems]


def test_a_resource_with_a_bad_risk_still_gets_its_other_checks() -> None:
    found = problems(BROKEN)
    messages = [m for _, m in found]
    assert (17, "duplicate resource id 'db'") in found
    assert any(line == 19 and "risk" in m for line, m in found), found
    assert (
        22,
        "ticket pattern is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
    ) in found
    assert (23, "unknown group 'nobody' (not in directory.groups)") in found
    assert (
        23,
        "stage 1 of resource 'db' has no possible approver (nobody is named by group:nobody)",
    ) in found
    assert len(messages) == 5, found


def test_checks_that_read_the_failed_key_are_skipped() -> None:
    # auto-approval above medium risk is a check of risk: with risk broken it is not judged,
    # and the broken risk is reported once, at its line.
    text = BROKEN.replace("approval: [group:nobody]", "approval: auto")
    found = problems(text)
    assert not any("auto-approval" in m for _, m in found), found
    assert sum("risk" in m for _, m in found) == 1, found


def test_a_stage_rule_that_fails_does_not_hide_the_ticket_problem() -> None:
    text = BROKEN.replace("risk: spicy", "risk: high").replace("group:nobody", "boss")
    found = problems(text)
    assert any(line == 23 and "unknown approver rule 'boss'" in m for line, m in found), found
    assert any("ticket pattern" in m for _, m in found), found
    assert (17, "duplicate resource id 'db'") in found
