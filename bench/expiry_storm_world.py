"""The expiry storm's world: N people in slapd, the group they leave, the policy granting it."""

from __future__ import annotations

import ldap3

from tests.fakes.slapd import ADMIN_DN, GROUPS, PEOPLE, PLACEHOLDER, Slapd

GROUP = "storm"
GROUP_DN = f"cn={GROUP},{GROUPS}"
PASSWORD_ENV = "STORM_LDAP_PASSWORD"


def email(i: int) -> str:
    return f"storm{i}@example.com"


def user_dn(i: int) -> str:
    return f"uid=storm{i},{PEOPLE}"


def policy_text(slapd: Slapd) -> str:
    # The static directory only has to hold the admin: requesters are checked at submit
    # time, which the benchmark does itself with a snapshot of all N people.
    return f"""
admins: {{channel: C0ADMINS, users: [storm0@example.com]}}
directory:
  people:
    - {{email: storm0@example.com, name: Storm 0}}
connectors:
  corp-ldap:
    type: ldap
    url: {slapd.url}
    bind_dn: "{ADMIN_DN}"
    password_env: {PASSWORD_ENV}
    users_base: "{PEOPLE}"
    groups_base: "{GROUPS}"
    placeholder_member: "{PLACEHOLDER}"
resources:
  - id: storm
    name: Storm target
    risk: low
    grant: {{connector: corp-ldap, group: {GROUP}}}
    duration: {{default: 1h, max: 4h}}
    reminders: []
    approval: auto
"""


def seed_slapd(slapd: Slapd, n: int) -> None:
    """N people and one groupOfNames holding the placeholder (filled per run)."""
    conn = slapd.admin()
    try:
        for dn, classes, attrs in (
            ("dc=example,dc=com", ["dcObject", "organization"], {"o": "Example", "dc": "example"}),
            (PEOPLE, ["organizationalUnit"], {"ou": "people"}),
            (GROUPS, ["organizationalUnit"], {"ou": "groups"}),
            (PLACEHOLDER, ["organizationalRole"], {"cn": "placeholder"}),
            (GROUP_DN, ["groupOfNames"], {"cn": GROUP, "member": [PLACEHOLDER]}),
        ):
            if not conn.add(dn, classes, attrs):
                raise RuntimeError(f"adding {dn}: {conn.result}")
        for i in range(n):
            attrs = {
                "cn": f"Storm {i}",
                "sn": str(i),
                "mail": email(i),
                "displayName": f"Storm {i}",
                "uid": f"storm{i}",
            }
            if not conn.add(user_dn(i), ["inetOrgPerson"], attrs):
                raise RuntimeError(f"adding {user_dn(i)}: {conn.result}")
    finally:
        conn.unbind()


def fill_group(slapd: Slapd, n: int) -> None:
    conn = slapd.admin()
    try:
        members = [PLACEHOLDER] + [user_dn(i) for i in range(n)]
        if not conn.modify(GROUP_DN, {"member": [(ldap3.MODIFY_REPLACE, members)]}):
            raise RuntimeError(f"filling {GROUP_DN}: {conn.result}")
    finally:
        conn.unbind()
