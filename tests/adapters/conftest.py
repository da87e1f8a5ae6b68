"""Real identity servers for adapter tests: slapd and scim2-server, one of each per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.scim_server import ScimServer
from tests.fakes.slapd import Slapd

PEOPLE = [
    {"mail": "carol@example.com", "name": "Carol Chen"},
    {"mail": "bob@example.com", "name": "Bob Baker", "manager": "carol@example.com"},
    {"mail": "alice@example.com", "name": "Alice Archer", "manager": "bob@example.com"},
    {"mail": "dora@example.com", "name": "Dora Diaz", "manager": "carol@example.com"},
    {
        "mail": "frank@example.com",
        "name": "Frank Fox",
        "manager": "bob@example.com",
        "inactive": "1",
    },
] + [{"mail": f"user{i}@example.com", "name": f"User {i}"} for i in range(12)]


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(Path(tmp_path_factory.mktemp("slapd")))
    server.start()
    server.seed(PEOPLE, {"dba": ["dora@example.com"], "empty": []})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scim() -> Iterator[ScimServer]:
    server = ScimServer()
    server.start()
    for person in PEOPLE:
        server.add_user(
            person["mail"], person["name"], person.get("manager"), active=not person.get("inactive")
        )
    server.add_group("dba", ["dora@example.com"])
    yield server
    server.stop()
