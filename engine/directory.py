"""People and groups as the engine sees them: a snapshot taken from the live directory.

Approver resolution is pure, so the application layer first fetches what a request needs
(requester, manager chain, the groups its rules name) into a ``DirectorySnapshot``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from engine.policy import Policy, Resource
from engine.rules import Group, Manager, User
from engine.workload_policy import WorkloadPolicy


@dataclass(frozen=True)
class Person:
    """Someone the directory knows, keyed by lower-case email."""

    email: str
    name: str
    manager: str | None = None
    active: bool = True
    slack_id: str | None = None
    teams_id: str | None = None


class DirectoryView(Protocol):
    """Synchronous read access to people and groups, as pure rules need it."""

    def person(self, email: str) -> Person | None: ...

    def members(self, group: str) -> tuple[str, ...] | None: ...


@dataclass(frozen=True)
class DirectorySnapshot:
    """People and group members captured at one moment (implements DirectoryView)."""

    people: Mapping[str, Person] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def person(self, email: str) -> Person | None:
        return self.people.get(email.lower())

    def members(self, group: str) -> tuple[str, ...] | None:
        return self.groups.get(group)


def workload_person(workload: WorkloadPolicy) -> Person:
    """A workload's place in a directory view: its "manager" is its owner, so a ``manager``
    stage asks the owner (and ``manager:2`` the owner's manager). It has no chat identity,
    so it can never be asked to approve anything."""
    return Person(email=workload.identity, name=f"workload {workload.id}", manager=workload.owner)


def snapshot_from_policy(policy: Policy) -> DirectorySnapshot:
    """The static directory written in the policy file."""
    doc = policy.document.directory
    people = {
        p.email: Person(
            email=p.email,
            name=p.name,
            manager=p.manager,
            active=p.active,
            slack_id=p.slack_id,
            teams_id=p.teams_id,
        )
        for p in doc.people
    }
    return DirectorySnapshot(people=people, groups=dict(doc.groups))


@dataclass(frozen=True)
class Lookups:
    """What must be fetched from the directory to decide about one resource."""

    groups: frozenset[str]
    manager_depth: int
    people: frozenset[str]


def lookups_for(resource: Resource, policy: Policy) -> Lookups:
    """The groups, manager chain depth and named people a resource's rules refer to."""
    groups: set[str] = set()
    people: set[str] = set(policy.admins.users)
    depth = 0
    rules = [rule for stage in resource.approval for rule in stage.approvers]
    for entry in (*resource.owners, *(resource.requesters or ()), *rules):
        if isinstance(entry, Group):
            groups.add(entry.name)
        elif isinstance(entry, User):
            people.add(entry.email)
        elif isinstance(entry, Manager):
            depth = max(depth, entry.levels)
    return Lookups(groups=frozenset(groups), manager_depth=depth, people=frozenset(people))
