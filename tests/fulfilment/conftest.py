"""A slapd for fulfilment tests, seeded with the users the test policies name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.slapd import ADMIN_DN, GROUPS, PEOPLE, PLACEHOLDER, Slapd

USERS = [f"user{i}@example.com" for i in range(20)]
# Holds the drift groups outside Clearance (a service account): never drift.
BASELINE_MEMBER = "user19@example.com"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(Path(tmp_path_factory.mktemp("crash-slapd")))
    server.start()
    server.seed(
        [{"mail": u, "name": f"User {i}"} for i, u in enumerate(USERS)],
        {
            "crash-db": [],
            "crash-short": [],
            "outage": [],
            "drift-revoke": [],
            "drift-report": [],
            "review-db": [],
        },
    )
    yield server
    server.stop()


def policy_text(slapd: Slapd, password_env: str = "CRASH_LDAP_PASSWORD") -> str:
    people = "\n".join(f"    - {{email: {u}, name: User {i}}}" for i, u in enumerate(USERS))
    return f"""
admins: {{channel: C0ADMINS, users: [user0@example.com]}}
directory:
  people:
{people}
# Here: tests add connectors just before resources and resources at the end.
reviews:
  - id: review-db-quarterly
    resources: [review-db]
    reviewer: resource_owner
    due: 7d
    max_revocations: 100
connectors:
  corp-ldap:
    type: ldap
    url: {slapd.url}
    bind_dn: "{ADMIN_DN}"
    password_env: {password_env}
    users_base: "{PEOPLE}"
    groups_base: "{GROUPS}"
    placeholder_member: "{PLACEHOLDER}"
resources:
  - id: db
    name: Database
    risk: low
    grant: {{connector: corp-ldap, group: crash-db}}
    duration: {{default: 1h, max: 4h}}
    approval: auto
  - id: short
    name: Short-lived access
    risk: low
    grant: {{connector: corp-ldap, group: crash-short}}
    duration: {{default: 8s, max: 1m}}
    reminders: []
    approval: auto
  - id: outage
    name: Outage drill
    risk: low
    grant: {{connector: corp-ldap, group: outage}}
    duration: {{default: 1h, max: 4h}}
    approval: auto
  - id: drift-revoke
    name: Drift, removed
    risk: low
    grant: {{connector: corp-ldap, group: drift-revoke}}
    duration: {{default: 1h, max: 4h}}
    approval: auto
    drift: revoke
    baseline_members: [{BASELINE_MEMBER}]
  - id: drift-report
    name: Drift, reported
    risk: low
    grant: {{connector: corp-ldap, group: drift-report}}
    duration: {{default: 1h, max: 4h}}
    approval: auto
    baseline_members: [{BASELINE_MEMBER}]
  - id: review-db
    name: Reviewed database
    risk: low
    owners: [user1@example.com]
    grant: {{connector: corp-ldap, group: review-db}}
    duration: {{default: 4h, max: 4h}}
    approval: auto
"""
