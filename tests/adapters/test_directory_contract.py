"""One contract for every Directory: static (policy file), LDAP (slapd), SCIM (scim2-server)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from adapters.ldap.connection import LdapClient, LdapSettings
from adapters.ldap.directory import LdapDirectory
from adapters.scim.client import ScimClient, ScimSettings
from adapters.scim.directory import ScimDirectory
from adapters.static.directory import StaticDirectory
from engine.policy_loading import parse_policy
from engine.ports import Directory
from tests.adapters.conftest import PEOPLE
from tests.fakes.scim_server import ENTERPRISE, ScimServer
from tests.fakes.scim_server import TOKEN as SCIM_TOKEN
from tests.fakes.slapd import ADMIN_DN, ADMIN_PASSWORD, GROUPS, PLACEHOLDER, Slapd
from tests.fakes.slapd import PEOPLE as PEOPLE_BASE


@dataclass
class Case:
    directory: Directory
    set_manager: Callable[[str, str], None]  # change someone's manager in the source itself


def static_case() -> Case:
    lines = ["directory:", "  people:"]
    for p in PEOPLE:
        manager = f", manager: {p['manager']}" if p.get("manager") else ""
        active = ", active: false" if p.get("inactive") else ""
        lines.append(f"    - {{email: {p['mail']}, name: {p['name']}{manager}{active}}}")
    lines += ["  groups:", "    dba: [dora@example.com]", "resources: []"]
    state = {"text": "\n".join(lines) + "\n"}
    policy = {"p": parse_policy(state["text"])}

    def set_manager(email: str, manager: str) -> None:
        text = state["text"]
        start = text.index(f"{{email: {email},")
        end = text.index("}", start)
        entry = text[start:end]
        head = entry.split(", manager:")[0]
        state["text"] = text[:start] + f"{head}, manager: {manager}" + text[end:]
        policy["p"] = parse_policy(state["text"])

    return Case(StaticDirectory(lambda: policy["p"]), set_manager)


def ldap_case(slapd: Slapd) -> Case:
    settings = LdapSettings(
        url=slapd.url,
        bind_dn=ADMIN_DN,
        password_env="PW",
        users_base=PEOPLE_BASE,
        groups_base=GROUPS,
        placeholder_member=PLACEHOLDER,
        inactive_filter="(employeeType=inactive)",
    )

    def set_manager(email: str, manager: str) -> None:
        conn = slapd.admin()
        dn = f"uid={email.split('@')[0]},{PEOPLE_BASE}"
        manager_dn = f"uid={manager.split('@')[0]},{PEOPLE_BASE}"
        assert conn.modify(dn, {"manager": [("MODIFY_REPLACE", [manager_dn])]}), conn.result
        conn.unbind()

    return Case(LdapDirectory(LdapClient(settings, {"PW": ADMIN_PASSWORD})), set_manager)


def scim_case(scim: ScimServer) -> Case:
    settings = ScimSettings(url=scim.base, token_env="T")

    def set_manager(email: str, manager: str) -> None:
        scim.call(
            "PATCH",
            f"/Users/{scim.ids[email]}",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {
                        "op": "replace",
                        "path": f"{ENTERPRISE}:manager",
                        "value": {"value": scim.ids[manager]},
                    }
                ],
            },
        )

    return Case(ScimDirectory(ScimClient(settings, {"T": SCIM_TOKEN})), set_manager)


@pytest.fixture(params=["static", "ldap", "scim"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "ldap":
        return ldap_case(request.getfixturevalue("slapd"))
    if request.param == "scim":
        return scim_case(request.getfixturevalue("scim"))
    return static_case()


async def test_people_and_managers(case: Case) -> None:
    alice = await case.directory.person("alice@example.com")
    assert alice is not None
    assert (alice.email, alice.name, alice.manager, alice.active) == (
        "alice@example.com",
        "Alice Archer",
        "bob@example.com",
        True,
    )
    bob = await case.directory.person("BOB@example.com")
    assert bob is not None and bob.manager == "carol@example.com"
    carol = await case.directory.person("carol@example.com")
    assert carol is not None and carol.manager is None


async def test_inactive_and_unknown_people(case: Case) -> None:
    frank = await case.directory.person("frank@example.com")
    assert frank is not None and frank.active is False
    assert await case.directory.person("nobody@example.com") is None
    assert await case.directory.person('x")(|(mail=*') is None  # filter injection finds nobody


async def test_group_members(case: Case) -> None:
    assert list(await case.directory.group_members("dba") or []) == ["dora@example.com"]
    assert await case.directory.group_members("no-such-group") is None


async def test_a_manager_change_is_seen_at_once(case: Case) -> None:
    case.set_manager("dora@example.com", "bob@example.com")
    try:
        dora = await case.directory.person("dora@example.com")
        assert dora is not None and dora.manager == "bob@example.com"
    finally:
        case.set_manager("dora@example.com", "carol@example.com")
