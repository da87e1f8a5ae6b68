"""Policy loading: the example loads, and every kind of bad policy is refused with its line."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.durations import DurationError, format_duration, parse_duration
from engine.policy import DirectoryConfig, Policy
from engine.policy_checks import Checks
from engine.policy_loading import PolicyError, load_policy, parse_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def problems_of(text: str, checks: Checks | None = None) -> list[tuple[int, str]]:
    """The (line, message) pairs a policy is refused with; fails if it loads."""
    with pytest.raises(PolicyError) as info:
        parse_policy(dedent(text), "policy.yaml", checks)
    return [(p.line, p.message) for p in info.value.problems]


def only_problem(text: str, checks: Checks | None = None) -> tuple[int, str]:
    found = problems_of(text, checks)
    assert len(found) == 1, found
    return found[0]


# A minimal valid policy; each test below writes its own variant in full so lines are visible.
VALID = """\
    admins:
      users: [sam@x.com]
    directory:
      people:
        - {email: sam@x.com, name: Sam}
    connectors:
      ldap: {type: ldap}
    resources:
      - id: db
        name: DB
        risk: low
        grant: {connector: ldap, group: g}
        duration: {default: 1h, max: 4h}
        approval: [admins]
"""


# --- loading what is right ---------------------------------------------------------------


def test_example_policy_loads_and_is_versioned_by_its_bytes() -> None:
    policy = load_policy(EXAMPLE, Checks(connector_types={"slack_usergroups"}))
    assert policy.version == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert policy.source == str(EXAMPLE)
    assert [r.id for r in policy.resources] == [
        "prod-db-admin",
        "staging-db-read",
        "release-signing-key",
        "ci-admin",
    ]
    assert policy.executor_identities == frozenset({"clearance-bot@example.com"})
    assert policy.is_admin("SAM@example.com")
    assert not policy.is_admin("alice@example.com")
    prod = policy.resource("prod-db-admin")
    assert prod is not None
    assert prod.duration.default == timedelta(hours=1)
    assert prod.duration.max == timedelta(hours=4)
    assert prod.break_glass is not None and prod.break_glass.max == timedelta(hours=1)
    assert prod.reminders == (timedelta(hours=1), timedelta(minutes=15))
    assert prod.pending_timeout == timedelta(hours=8)
    assert [s.label(i) for i, s in enumerate(prod.approval)] == [
        "stage 1",
        "stage 2",
        "Security sign-off",
    ]
    staging = policy.resource("staging-db-read")
    assert staging is not None and staging.auto_approve and staging.approval == ()
    assert policy.resource("nope") is None


def test_version_changes_with_any_byte_and_parse_of_str_equals_bytes() -> None:
    raw = EXAMPLE.read_bytes()
    a = parse_policy(raw)
    b = parse_policy(raw.decode())
    c = parse_policy(raw + b"\n# a comment changes the version\n")
    assert a.version == b.version == hashlib.sha256(raw).hexdigest()
    assert c.version != a.version
    assert c.document == a.document


def test_minimal_policy_loads() -> None:
    policy = parse_policy(dedent(VALID))
    assert isinstance(policy, Policy)
    assert tuple(str(r) for r in policy.resources[0].approval[0].approvers) == ("admins",)


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    [problem] = info.value.problems
    assert problem.line == 1
    assert "cannot read the file" in problem.message
    assert str(info.value).startswith(f"{missing}:1: ")


def test_problems_print_as_file_line_message() -> None:
    text = VALID.replace("connector: ldap, group", "connector: nope, group")
    with pytest.raises(PolicyError) as info:
        parse_policy(dedent(text), "policies/prod.yaml")
    assert str(info.value) == (
        "policies/prod.yaml:12: resource 'db' uses unknown connector 'nope'; defined: ldap"
    )


# --- every kind of bad policy, with its line ---------------------------------------------


def test_yaml_syntax_error_names_its_line() -> None:
    line, message = only_problem(
        """\
        admins:
          users: [sam@x.com]
        resources:
          - id: db
            name: DB: with a colon
        """
    )
    assert line == 5
    assert message == "YAML syntax: mapping values are not allowed here"


def test_yaml_unclosed_flow_sequence_names_the_line_where_it_fails() -> None:
    line, message = only_problem("admins:\n  users: [a@x.com\nresources: []\n")
    assert line == 3
    assert message.startswith("YAML syntax: expected ',' or ']'")


def test_not_utf8_is_refused() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(b"resources: []\n\xff\xfe")
    assert [(p.line, p.message) for p in info.value.problems] == [(1, "the file is not UTF-8 text")]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_policy_must_be_a_mapping(text: str) -> None:
    assert only_problem(text) == (1, "a policy is a mapping with at least a 'resources' list")


def test_unknown_connector() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
          scim: {type: scim}
        resources:
          - id: db
            name: DB
            risk: low
            grant:
              connector: ldpa
              group: g
            duration: {default: 1h, max: 4h}
            approval: [admins]
        """
    ) == (14, "resource 'db' uses unknown connector 'ldpa'; defined: ldap, scim")


def test_unknown_connector_type_when_types_are_given() -> None:
    line, message = only_problem(VALID, checks=Checks(connector_types={"scim", "slack_usergroups"}))
    assert line == 7
    assert message == (
        "connector 'ldap' has unknown type 'ldap'; known types: scim, slack_usergroups"
    )


def test_directory_settings_check_is_reported_at_the_directory_line() -> None:
    seen: list[DirectoryConfig] = []

    def check(directory: DirectoryConfig) -> str | None:
        seen.append(directory)
        return "ldap directory needs 'url'" if "url" not in directory.options else None

    text = """\
        admins:
          users: [sam@x.com]
        directory:
          type: ldap
          base_dn: dc=x,dc=com
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
        """
    assert only_problem(text, Checks(directory=check)) == (3, "ldap directory needs 'url'")
    assert seen[0].type == "ldap" and seen[0].options == {"base_dn": "dc=x,dc=com"}
    fixed = text.replace("base_dn: dc=x,dc=com", "url: ldaps://ldap.x.com")
    assert parse_policy(dedent(fixed), "policy.yaml", Checks(directory=check)).version


def test_unknown_directory_type() -> None:
    text = VALID.replace("directory:\n", "directory:\n      type: ldpa\n")
    found = problems_of(text)
    # (The dropped section also makes sam look unknown: see the xfail on follow-on problems.)
    assert (4, "directory.type: Input should be 'static', 'ldap' or 'scim'") in found


def test_unknown_group_in_owners_requesters_and_stage_rules() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
          groups:
            dba: [sam@x.com]
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            owners:
              - group:dab
            requesters:
              - group:engineering
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - approvers:
                  - admins
                  - group:secrity
        """
    )
    assert found == [
        (15, "unknown group 'dab' (not in directory.groups)"),
        (17, "unknown group 'engineering' (not in directory.groups)"),
        (23, "unknown group 'secrity' (not in directory.groups)"),
    ]


def test_duration_default_above_max() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration:
              max: 4h
              default: 1d
            approval: [admins]
        """
    ) == (15, "duration default 1d is above max 4h")


def test_break_glass_max_above_duration_max() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: high
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
            break_glass:
              max: 8h
        """
    ) == (16, "break_glass max 8h is above the resource's duration max 4h")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("forever", "'forever' is not a duration; write a number and a unit"),
        ("0m", "'0m' is zero; a duration must be longer than that"),
        ("4 hours", "'4 hours' is not a duration"),
        ("4", "a duration is written as text such as 30m, 4h or 2d"),
    ],
)
def test_malformed_duration(value: str, expected: str) -> None:
    line, message = only_problem(
        f"""\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {{email: sam@x.com, name: Sam}}
        connectors:
          ldap: {{type: ldap}}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {{connector: ldap, group: g}}
            duration:
              default: 1h
              max: {value}
            approval: [admins]
        """
    )
    assert line == 15
    assert message.startswith("resources[0].duration.max: ")
    assert expected in message


def test_malformed_pending_timeout_and_reminder() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
            pending_timeout: a while
            reminders:
              - 1h
              - soon
        """
    )
    assert [line for line, _ in found] == [15, 16]
    assert "pending_timeout: 'a while' is not a duration" in found[0][1]
    assert "reminders: 'soon' is not a duration" in found[1][1]


def test_stage_of_admins_with_no_admins() -> None:
    assert only_problem(
        """\
        admins:
          users: []
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - admins
        """
    ) == (15, "stage 1 of resource 'db' has no possible approver (nobody is named by admins)")


def test_stage_of_an_empty_group() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
          groups:
            dba: []
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - admins
              - {approvers: [group:dba], name: DBA review}
        """
    ) == (18, "DBA review of resource 'db' has no possible approver (nobody is named by group:dba)")


def test_stage_of_resource_owner_without_owners() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - resource_owner
        """
    ) == (
        15,
        "stage 1 of resource 'db' has no possible approver (nobody is named by resource_owner)",
    )


def test_stage_whose_only_approver_executes_grants() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
            - {email: bot@x.com, name: Bot}
        connectors:
          ldap: {type: ldap, identity: bot@x.com}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - user:bot@x.com
        """
    ) == (
        16,
        "stage 1 of resource 'db' has no possible approver (nobody is named by user:bot@x.com)",
    )


def test_quorum_larger_than_possible_approvers() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
            - {email: dora@x.com, name: Dora}
          groups:
            dba: [dora@x.com, sam@x.com]
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - approvers: [group:dba, admins]
                quorum: 3
        """
    ) == (18, "stage 1 of resource 'db' needs 3 approvals but only 2 people can approve it")


def test_quorum_with_a_manager_rule_is_not_bounded_at_load_time() -> None:
    text = VALID.replace("approval: [admins]", "approval: [{approvers: [manager], quorum: 2}]")
    assert parse_policy(dedent(text)).resources[0].approval[0].quorum == 2


@pytest.mark.parametrize("quorum", ["0", "-1", "most"])
def test_quorum_must_be_positive_or_all(quorum: str) -> None:
    text = VALID.replace(
        "approval: [admins]", f"approval: [{{approvers: [admins], quorum: {quorum}}}]"
    )
    found = problems_of(text)
    assert found and all(line == 14 for line, _ in found)
    assert all(m.startswith("resources[0].approval[0].quorum") for _, m in found)


def test_duplicate_resource_id() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
          - name: DB again
            id: db
            risk: low
            grant: {connector: ldap, group: g2}
            duration: {default: 1h, max: 4h}
            approval: [admins]
        """
    ) == (16, "duplicate resource id 'db'")


def test_bad_ticket_regex() -> None:
    line, message = only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            justification:
              min_length: 5
              ticket: '^(INC-[0-9]+$'
            approval: [admins]
        """
    )
    assert line == 16
    assert message.startswith("ticket pattern is not a valid regular expression: missing )")


def test_justification_min_above_max() -> None:
    text = VALID.replace(
        "approval: [admins]",
        "justification: {min_length: 50, max_length: 20}\n        approval: [admins]",
    )
    assert only_problem(text) == (14, "justification min_length 50 is above max_length 20")


@pytest.mark.parametrize("rule", ["managr", "manager:0", "group:", "user:sam", "owners", "Admins"])
def test_unknown_stage_rule(rule: str) -> None:
    line, message = only_problem(
        f"""\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {{email: sam@x.com, name: Sam}}
        connectors:
          ldap: {{type: ldap}}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {{connector: ldap, group: g}}
            duration: {{default: 1h, max: 4h}}
            approval:
              - admins
              - "{rule}"
        """
    )
    assert line == 16
    assert message == (
        f"resources[0].approval[1].approvers: unknown approver rule '{rule}'; use manager, "
        "manager:2, resource_owner, admins, group:<name> or user:<email>"
    )


def test_unknown_key_is_a_typo_not_ignored() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            descripton: typo
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - approvers: [admins]
                qourum: 1
            pending_timout: 2h
        """
    )
    assert found == [
        (12, "resources[0].descripton: unknown key 'descripton'"),
        (17, "resources[0].approval[0].qourum: unknown key 'qourum'"),
        (18, "resources[0].pending_timout: unknown key 'pending_timout'"),
    ]


def test_typo_of_approval_is_reported_at_its_line_with_the_other_problems() -> None:
    found = problems_of(
        """\
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: extreme
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            aproval: auto
        """
    )
    assert [line for line, _ in found] == [4, 6, 9]
    assert "missing required key 'approval'" in found[0][1]
    assert "unknown key 'aproval'" in found[2][1]


def test_unknown_top_level_key() -> None:
    text = "resource:\n  - id: db\n"
    found = problems_of(text)
    assert found == [
        (1, "resource: unknown key 'resource'"),
        (1, "missing required key 'resources' (a list of resources)"),
    ]


def test_missing_approval_is_refused() -> None:
    text = VALID.replace("    approval: [admins]\n", "")
    line, message = only_problem(text)
    assert line == 9
    assert "missing required key 'approval'" in message


@pytest.mark.parametrize("risk", ["high", "critical"])
def test_auto_approval_on_a_high_risk_resource(risk: str) -> None:
    assert only_problem(
        f"""\
        connectors:
          ldap: {{type: ldap}}
        resources:
          - id: db
            name: DB
            risk: {risk}
            grant: {{connector: ldap, group: g}}
            duration: {{default: 1h, max: 4h}}
            approval: auto
        """
    ) == (
        9,
        f"resource 'db' is {risk} risk; auto-approval is allowed up to medium risk only, "
        "list approval stages instead",
    )


@pytest.mark.parametrize("risk", ["low", "medium"])
def test_auto_approval_is_fine_up_to_medium(risk: str) -> None:
    policy = parse_policy(
        dedent(
            f"""\
            connectors:
              ldap: {{type: ldap}}
            resources:
              - id: db
                name: DB
                risk: {risk}
                grant: {{connector: ldap, group: g}}
                duration: {{default: 1h, max: 4h}}
                approval: auto
            """
        )
    )
    assert policy.resources[0].auto_approve


def test_people_not_in_the_directory() -> None:
    found = problems_of(
        """\
        admins:
          users:
            - sam@x.com
            - zed@x.com
        directory:
          people:
            - {email: sam@x.com, name: Sam}
            - email: al@x.com
              name: Al
              manager: boss@x.com
          groups:
            dba: [sam@x.com, ghost@x.com]
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            owners: [owner@x.com]
            requesters: [user:req@x.com, everyone]
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - admins
              - user:approver@x.com
        """
    )
    assert found == [
        (4, "admin zed@x.com is not in directory.people"),
        (10, "manager boss@x.com of al@x.com is not in directory.people"),
        (12, "member ghost@x.com of group 'dba' is not in directory.people"),
        (19, "owner owner@x.com is not in directory.people"),
        (20, "requester req@x.com is not in directory.people"),
        (25, "approver approver@x.com is not in directory.people"),
    ]


def test_people_are_not_checked_against_a_non_static_directory() -> None:
    policy = parse_policy(
        dedent(
            """\
            admins:
              users: [sam@x.com]
            directory:
              type: ldap
              url: ldaps://ldap.x.com
            connectors:
              ldap: {type: ldap}
            resources:
              - id: db
                name: DB
                risk: low
                owners: [group:dba]
                grant: {connector: ldap, group: g}
                duration: {default: 1h, max: 4h}
                approval: [manager, resource_owner, user:zed@x.com]
            """
        )
    )
    assert policy.document.directory.options == {"url": "ldaps://ldap.x.com"}


def test_own_manager_and_duplicate_person() -> None:
    found = problems_of(
        """\
        directory:
          people:
            - {email: sam@x.com, name: Sam, manager: SAM@x.com}
            - {email: Sam@X.com, name: Sam again}
        resources: []
        """
    )
    assert found == [
        (3, "sam@x.com cannot be their own manager"),
        (4, "person sam@x.com is listed twice in directory.people"),
    ]


def test_duplicate_yaml_key() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
            risk: critical
        """
    ) == (15, "duplicate key 'risk' (the earlier value would be silently lost)")


def test_duplicate_top_level_key_is_reported_with_schema_problems() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
        admins:
          users: []
        resources:
          - id: Bad Id
        """
    )
    assert found[0] == (3, "duplicate key 'admins' (the earlier value would be silently lost)")
    assert all(line == 6 for line, _ in found[1:]) and len(found) > 1


def test_duplicate_slack_id() -> None:
    assert only_problem(
        """\
        directory:
          people:
            - {email: sam@x.com, name: Sam, slack_id: U0SAM}
            - {email: bo@x.com, name: Bo, teams_id: U0SAM}
            - email: al@x.com
              name: Al
              slack_id: U0SAM
        resources: []
        """
    ) == (5, "slack_id U0SAM is used by both sam@x.com and al@x.com")


def test_connector_identity_cannot_be_an_admin() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com, bot@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
            - {email: bot@x.com, name: Bot}
        connectors:
          ldap: {type: ldap, identity: Bot@x.com}
        resources: []
        """
    ) == (2, "bot@x.com executes grants for a connector and so cannot be an admin who approves")


def test_bad_email_and_bad_resource_id() -> None:
    found = problems_of(
        """\
        directory:
          people:
            - {email: not-an-email, name: Nobody}
        resources:
          - id: Prod DB
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: auto
        """
    )
    assert [line for line, _ in found] == [3, 5]
    assert "'not-an-email' is not an email address" in found[0][1]
    assert found[1][1].startswith("resources[0].id: String should match pattern")


# --- all problems at once, never half-loaded ---------------------------------------------


def test_every_semantic_problem_is_reported_at_once() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com, zed@x.com]
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: high
            owners: [group:dba]
            grant: {connector: ldpa, group: g}
            duration: {default: 8h, max: 4h}
            justification: {ticket: '[unclosed'}
            approval: auto
          - id: db
            name: DB copy
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval:
              - group:nope
              - {approvers: [admins], quorum: 5}
        """
    )
    assert [line for line, _ in found] == [2, 12, 13, 14, 15, 16, 17, 23, 23, 24]
    messages = "\n".join(m for _, m in found)
    for fragment in (
        "admin zed@x.com is not in directory.people",
        "unknown group 'dba'",
        "unknown connector 'ldpa'",
        "duration default 8h is above max 4h",
        "ticket pattern is not a valid regular expression",
        "is high risk; auto-approval",
        "duplicate resource id 'db'",
        "unknown group 'nope'",
        "stage 1 of resource 'db' has no possible approver",
        "stage 2 of resource 'db' needs 5 approvals but only 2 people can approve it",
    ):
        assert fragment in messages


def test_every_schema_problem_is_reported_at_once() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
        resources:
          - id: db
            name: DB
            risk: extreme
            grant: {connector: ldap}
            duration: {default: 1h, max: forever}
            approval: [admins, boss]
            colour: red
        """
    )
    assert [line for line, _ in found] == [2, 6, 7, 8, 9, 10]
    assert found[0][1] == "admin sam@x.com is not in directory.people"
    assert found[1][1] == (
        "resources[0].risk: Input should be 'low', 'medium', 'high' or 'critical'"
    )
    assert found[2][1] == "resources[0].grant.group: missing required key 'group'"
    assert "duration.max: 'forever' is not a duration" in found[3][1]
    assert "unknown approver rule 'boss'" in found[4][1]
    assert found[5][1] == "resources[0].colour: unknown key 'colour'"


def test_a_typo_in_a_section_does_not_cause_follow_on_problems() -> None:
    assert only_problem(
        """\
        admins:
          users: [sam@x.com]
          chanel: C0ADMINS
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: db
            name: DB
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
        """
    ) == (3, "admins.chanel: unknown key 'chanel'")


def test_schema_problems_of_one_resource_do_not_hide_problems_elsewhere() -> None:
    found = problems_of(
        """\
        admins:
          users: [sam@x.com]
          chanel: C0ADMINS
        directory:
          people:
            - {email: sam@x.com, name: Sam}
        connectors:
          ldap: {type: ldap}
        resources:
          - id: broken
            name: Broken
            risk: low
            grant: {connector: ldap, group: g}
            duration: {default: 1h, max: 4h}
            approval: [admins]
            colour: red
          - id: fine-but-wrong
            name: Fine schema, wrong references
            risk: low
            grant: {connector: ldpa, group: g}
            duration: {default: 1h, max: 4h}
            approval: [group:nope]
        """
    )
    assert found == [
        (3, "admins.chanel: unknown key 'chanel'"),
        (16, "resources[0].colour: unknown key 'colour'"),
        (20, "resource 'fine-but-wrong' uses unknown connector 'ldpa'; defined: ldap"),
        (22, "unknown group 'nope' (not in directory.groups)"),
    ]


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 4H ", timedelta(hours=4)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=2), "2d"),
        (timedelta(days=8, seconds=1), "1w1d1s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(0), "0m"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["30m", "4h", "2d", "1h30m", "1w2d3h4m5s"])
def test_canonical_text_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_any_positive_whole_seconds_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is not a duration"),
        ("   ", "is not a duration"),
        ("0m", "is zero"),
        ("0h0m", "is zero"),
        ("forever", "is not a duration"),
        ("4 hours", "is not a duration"),
        ("4", "is not a duration"),
        ("h4", "is not a duration"),
        ("-1h", "is not a duration"),
        ("1.5h", "is not a duration"),
    ],
)
def test_bad_durations(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert fragment in str(info.value)
    assert f"'{text}'" in str(info.value)


@pytest.mark.parametrize(
    ("approval", "message"),
    [
        ("[]", "resources[0]: approval needs at least one stage (or 'auto')"),
        ("admins", "resources[0].approval: approval must be 'auto' or a list of stages"),
        ("{stage: admins}", "resources[0].approval: approval must be 'auto' or a list of stages"),
    ],
)
def test_approval_is_auto_or_a_list_of_stages(approval: str, message: str) -> None:
    line, found = only_problem(VALID.replace("approval: [admins]", f"approval: {approval}"))
    assert found == message
    assert line == (9 if approval == "[]" else 14)


# --- self-service extension ------------------------------------------------------------------


def _extend_policy(risk: str, extend: str) -> str:
    return f"""\
        admins:
          users: [sam@x.com]
        directory:
          people:
            - {{email: sam@x.com, name: Sam}}
        connectors:
          ldap: {{type: ldap}}
        resources:
          - id: db
            name: DB
            risk: {risk}
            grant: {{connector: ldap, group: g}}
            duration: {{default: 1h, max: 4h}}
            approval: [admins]
            extend: {extend}
        """


def test_self_service_extension_loads_with_its_step() -> None:
    policy = parse_policy(
        dedent(_extend_policy("medium", "{self_service: 2h, step: 30m}")), "p.yaml"
    )
    rule = policy.resources[0].extend
    assert rule is not None
    assert (rule.self_service, rule.step) == (timedelta(hours=2), timedelta(minutes=30))


@pytest.mark.parametrize("risk", ["high", "critical"])
def test_self_service_extension_is_refused_above_medium_risk(risk: str) -> None:
    assert only_problem(_extend_policy(risk, "{self_service: 1h}")) == (
        15,
        f"resource 'db' is {risk} risk; self-service extension is allowed up to medium risk "
        "only (it adds time without an approver)",
    )


@pytest.mark.parametrize(
    ("extend", "message"),
    [
        ("{self_service: 5h}", "extend self_service 5h is above the resource's duration max 4h"),
        ("{self_service: 1h, step: 2h}", "extend step 2h is above its self_service cap 1h"),
        ("{self_service: 0m}", "extend.self_service: '0m' is zero"),
        ("{self_service: soon}", "extend.self_service"),
        ("{self_servce: 1h}", "extend.self_servce: unknown key"),
    ],
)
def test_bad_extension_rules_are_reported_at_their_line(extend: str, message: str) -> None:
    found = problems_of(_extend_policy("low", extend))
    assert any(line == 15 and message in text for line, text in found), found
