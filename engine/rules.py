"""Who a policy names, as typed values: parsed once when the policy loads.

A stage's approver rules (``manager``, ``manager:2``, ``resource_owner``, ``admins``,
``group:<name>``, ``user:<email>``), a resource's owners (emails and groups) and its
requesters (``everyone``, groups, people, workloads) are written as text in YAML; everything after
loading works with these values, so no rule is re-parsed by its prefix anywhere else.
Each value prints as it was written, for messages and ``policy explain``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+$")
_GROUP = re.compile(r"^group:(\S+)$")
_MANAGER = re.compile(r"^manager(?::([1-9]))?$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


@dataclass(frozen=True)
class Manager:
    """The requester's manager, ``levels`` steps up the chain."""

    levels: int = 1
    text: str = field(default="manager", compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ResourceOwner:
    """The resource's owners (people and groups)."""

    text: str = field(default="resource_owner", compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Admins:
    """The Clearance admins of the policy."""

    text: str = field(default="admins", compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Everyone:
    """Anyone in the directory (requesters only)."""

    text: str = field(default="everyone", compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Group:
    """The members of a directory group."""

    name: str
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or f"group:{self.name}"


@dataclass(frozen=True)
class User:
    """One person, by lower-case email."""

    email: str
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or self.email


@dataclass(frozen=True)
class WorkloadRef:
    """A workload of the policy's ``workloads:`` section, by id (requesters only)."""

    id: str
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or f"workload:{self.id}"


ApproverRule = Manager | ResourceOwner | Admins | Group | User
OwnerEntry = Group | User
RequesterEntry = Everyone | Group | User | WorkloadRef

APPROVER_RULE_HELP = "use manager, manager:2, resource_owner, admins, group:<name> or user:<email>"


def parse_approver_rule(text: str) -> ApproverRule:
    """One stage rule; ValueError with the accepted spellings otherwise."""
    if match := _MANAGER.match(text):
        return Manager(int(match.group(1) or 1), text)
    if text == "resource_owner":
        return ResourceOwner(text)
    if text == "admins":
        return Admins(text)
    if match := _GROUP.match(text):
        return Group(match.group(1), text)
    email = text.removeprefix("user:")
    if text.startswith("user:") and is_email(email):
        return User(email.lower(), text.lower())
    raise ValueError(f"unknown approver rule '{text}'; {APPROVER_RULE_HELP}")


def parse_owner(text: str) -> OwnerEntry:
    """An owner: ``group:<name>`` or an email (kept as written, emails lower-cased)."""
    if match := _GROUP.match(text):
        return Group(match.group(1), text)
    return User(text.lower(), text.lower())


def parse_requester(text: str) -> RequesterEntry:
    """Who may request: ``everyone``, ``group:<name>``, ``workload:<id>``, ``user:<email>``
    or an email."""
    if text == "everyone":
        return Everyone(text)
    if text.startswith("workload:"):
        return WorkloadRef(text.removeprefix("workload:"), text)
    if match := _GROUP.match(text):
        return Group(match.group(1), text)
    return User(text.removeprefix("user:").lower(), text)
