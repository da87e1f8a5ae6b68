"""Workloads in the policy and the engine: who they are, what they may ask for, who
approves for them, and the policy check that keeps asker, approver and executor apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.access_request import Status
from engine.directory import DirectorySnapshot, snapshot_from_policy, workload_person
from engine.drafts import RequestDraft
from engine.eligibility import IS_PRINCIPAL, may_decide, may_request
from engine.lifecycle import decide, submit
from engine.policy import Policy
from engine.policy_loading import parse_policy
from engine.refusals import Refused
from engine.rules import Everyone
from message_templates import refusal_text
from tests.engine.test_policy import only_problem, policy_yaml, problems_of

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# BASE of test_policy has 14 lines; a section added to it starts on line 15.
WORKLOAD = """\
workloads:
  - id: deploy
    issuer: https://token.actions.githubusercontent.com
    subject: "repo:acme/payments:ref:refs/heads/*"
    claims: {repository_owner: acme}
    owner: sam@x.com
    principal: svc@x.com
    resources: [db]
"""


def workload_policy(
    sections: str = WORKLOAD, resource: str = "requesters: [workload:deploy]"
) -> str:
    return policy_yaml(sections, resource)


def test_a_workload_loads_with_its_defaults() -> None:
    policy = parse_policy(workload_policy(), "policy.yaml")
    workload = policy.workload("deploy")
    assert workload is not None
    assert workload.audience == "clearance"
    assert str(workload.rate_limit) == "30/1m"
    assert workload.identity == "workload:deploy"
    assert (
        workload.mismatch("repo:acme/payments:ref:refs/heads/main", {"repository_owner": "acme"})
        is None
    )
    assert "does not match" in (
        workload.mismatch("repo:evil/payments:ref:refs/heads/main", {}) or ""
    )
    assert (
        workload.mismatch("repo:acme/payments:ref:refs/heads/main", {"repository_owner": "evil"})
        == "claim repository_owner is 'evil', not 'acme'"
    )
    assert "missing" in (workload.mismatch("repo:acme/payments:ref:refs/heads/x", {}) or "")


@pytest.mark.parametrize(
    ("key", "value", "line", "message"),
    [
        ("issuer", "http://issuer.example.com", 18, "must be an https URL"),
        ("owner", "not-an-email", 21, "is not an email address"),
        ("resources", "[]", 23, "at least 1"),
        ("rate_limit", "lots", 24, "is not a rate limit"),
        ("colour", "blue", 24, "colour"),
    ],
)
def test_a_bad_workload_key_is_refused_at_its_line(
    key: str, value: str, line: int, message: str
) -> None:
    lines = WORKLOAD.splitlines()
    at = next((i for i, text in enumerate(lines) if text.strip().startswith(key + ":")), None)
    if at is None:
        lines.append(f"    {key}: {value}")
    else:
        lines[at] = f"    {key}: {value}"
    at_line, text = only_problem(workload_policy("\n".join(lines) + "\n"))
    assert message in text
    assert at_line == line


def test_workload_cross_references_are_checked_at_their_lines() -> None:
    sections = WORKLOAD.replace("resources: [db]", "resources: [db, nope]") + (
        "    callback_url: https://ci.example.com/hook\n"
    )
    found = problems_of(workload_policy(sections, "requesters: [workload:deploy, workload:ghost]"))
    assert found == [
        (15, "unknown workload 'ghost' (not in workloads)"),
        (23, "workload 'deploy' names unknown resource 'nope'"),
        (
            24,
            "callback_url host 'ci.example.com' is not in api.callback_hosts; "
            "add it there to allow callbacks to it",
        ),
    ]


def test_a_resource_must_list_the_workload_that_names_it() -> None:
    line, message = only_problem(workload_policy(resource="requesters: [sam@x.com]\n"))
    assert line == 23
    assert "does not list workload:deploy among its requesters" in message


@pytest.mark.parametrize(
    ("sections", "resource", "line", "phrase"),
    [
        # The principal executes grants: the executor and the asker would coincide.
        (
            WORKLOAD.replace("principal: svc@x.com", "principal: bot@x.com"),
            "",
            24,
            "executes grants",
        ),
        # The owner is also the connector identity.
        (WORKLOAD.replace("owner: sam@x.com", "owner: bot@x.com"), "", 23, "executes grants"),
        # The principal is an admin, so it could approve what its workload asked for.
        (
            WORKLOAD.replace("principal: svc@x.com", "principal: sam@x.com").replace(
                "owner: sam@x.com", "owner: ann@x.com"
            ),
            "",
            24,
            "is an admin",
        ),
        # The principal is named to approve the resource.
        (WORKLOAD, "approval: [user:svc@x.com]", 25, "may not approve it"),
        # Principal and owner are one account.
        (
            WORKLOAD.replace("principal: svc@x.com", "principal: sam@x.com"),
            "",
            24,
            "both principal and owner",
        ),
    ],
)
def test_asker_approver_and_executor_must_be_three_identities(
    sections: str, resource: str, line: int, phrase: str
) -> None:
    people = (
        "directory:\n  people:\n    - {email: sam@x.com, name: Sam}\n"
        "    - {email: ann@x.com, name: Ann}\n    - {email: bot@x.com, name: Bot}\n"
    )
    text = policy_yaml(
        people + "connectors:\n  ldap: {type: ldap, identity: bot@x.com}\n" + sections,
        "requesters: [workload:deploy]\n" + resource,
    )
    found = problems_of(text)
    assert any(at == line and phrase in m for at, m in found), found


def test_an_on_behalf_account_that_executes_grants_is_refused() -> None:
    text = policy_yaml(
        "connectors:\n  ldap: {type: ldap, identity: bot@x.com}\n",
        "on_behalf: [bot@x.com]",
    )
    line, message = only_problem(text)
    assert line == 15 and "on_behalf account bot@x.com executes grants" in message


# --- the engine -------------------------------------------------------------------------

FLOW = policy_yaml(
    """\
directory:
  people:
    - {email: sam@x.com, name: Sam}
    - {email: bob@x.com, name: Bob, manager: carol@x.com}
    - {email: carol@x.com, name: Carol}
    - {email: dora@x.com, name: Dora}
    - {email: svc@x.com, name: Deploy account}
  groups:
    dba: [dora@x.com, svc@x.com]
"""
    + WORKLOAD.replace("owner: sam@x.com", "owner: bob@x.com"),
    """\
requesters: [workload:deploy, bob@x.com]
owners: [group:dba]
approval: [manager, resource_owner]
on_behalf: [other-svc@x.com]
""",
)


@pytest.fixture
def policy() -> Policy:
    return parse_policy(FLOW, "policy.yaml")


def directory_for(policy: Policy) -> DirectorySnapshot:
    static = snapshot_from_policy(policy)
    workload = policy.workload("deploy")
    assert workload is not None
    return DirectorySnapshot(
        {**static.people, workload.identity: workload_person(workload)}, static.groups
    )


def workload_draft(**kw: object) -> RequestDraft:
    values: dict[str, object] = {
        "requester": "workload:deploy",
        "resource_id": "db",
        "justification": "deploying release 42 to production",
        "principal": "svc@x.com",
        "principal_kind": "service",
    } | kw
    return RequestDraft(**values)  # type: ignore[arg-type]


def test_a_workload_request_asks_its_owner_first_and_never_its_principal(policy: Policy) -> None:
    directory = directory_for(policy)
    request = submit(workload_draft(), policy, directory, NOW, "R-1").request
    assert request.requester == "workload:deploy"
    assert request.principal == "svc@x.com" and request.principal_kind == "service"
    assert request.stage is not None and request.stage.approvers == ("bob@x.com",)
    approved = decide(request, policy, directory, "bob@x.com", "approve", NOW).request
    stage = approved.stage
    assert stage is not None
    # The principal is in the owners' group, but it gets the access: it is not asked.
    assert stage.approvers == ("dora@x.com",)
    assert [(e.email, e.reason) for e in stage.excluded] == [("svc@x.com", IS_PRINCIPAL)]
    refusal = may_decide(approved, "svc@x.com", policy, directory)
    assert refusal is not None and refusal.code == "self_approval"
    done = decide(approved, policy, directory, "dora@x.com", "approve", NOW).request
    assert done.status is Status.APPROVED


@pytest.mark.parametrize(
    ("draft", "code", "phrase"),
    [
        (workload_draft(principal="other@x.com"), "principal_not_allowed", "other@x.com"),
        (workload_draft(requester="workload:ghost"), "workload_unknown", "no workload 'ghost'"),
    ],
)
def test_a_workload_asks_only_for_its_principal(
    policy: Policy, draft: RequestDraft, code: str, phrase: str
) -> None:
    with pytest.raises(Refused) as info:
        submit(draft, policy, directory_for(policy), NOW, "R-1")
    assert code in [r.code for r in info.value.refusals]
    assert phrase in refusal_text(info.value)


def test_a_workload_must_be_listed_by_name_everyone_does_not_include_machines(
    policy: Policy,
) -> None:
    # A policy whose resource does not list the workload does not load (checked above);
    # the engine refuses too, whatever the requesters list says about people.
    resource = policy.resource("db")
    assert resource is not None
    for requesters in (None, (Everyone(),)):
        open_to_all = resource.model_copy(update={"requesters": requesters})
        refusal = may_request("workload:deploy", open_to_all, directory_for(policy))
        assert refusal is not None and refusal.code == "requester_not_listed"


def test_people_ask_on_behalf_only_where_the_policy_says(policy: Policy) -> None:
    directory = directory_for(policy)
    human = {"requester": "bob@x.com", "principal_kind": "service"}
    # Bob owns the workload whose account svc@x.com may ask for db: he may ask for it.
    own = submit(workload_draft(**human), policy, directory, NOW, "R-2").request
    assert own.principal == "svc@x.com" and own.requester == "bob@x.com"
    # The resource lists other-svc@x.com under on_behalf.
    listed = submit(
        workload_draft(**human, principal="other-svc@x.com"), policy, directory, NOW, "R-3"
    )
    assert listed.request.principal == "other-svc@x.com"
    # Anyone else is refused.
    with pytest.raises(Refused) as info:
        submit(workload_draft(**human, principal="carol@x.com"), policy, directory, NOW, "R-4")
    assert [r.code for r in info.value.refusals] == ["principal_not_allowed"]
