"""Drift: who holds a managed group without a grant, and which grants lost their membership.

Pure: the caller reads the grants and the groups' members and passes them in. A managed
target is a (connector, group) some resource grants; several resources may share one, and
any grant in force on the target makes its principal a legitimate member. Memberships being
provisioned right now count as legitimate too, so a reconciliation racing a grant never
takes it back. Unexpected members are removed only where every resource of the target says
``drift: revoke``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from engine.policy import Policy, Resource

DriftMode = Literal["report", "revoke", "mixed"]

# Removal goes through the connector by email; a member the connector could only name by
# its DN or platform id cannot be removed that way, so it is reported for a human.
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+$")


# Most members one run removes from one group before a human must confirm (--max-removals).
REMOVAL_LIMIT = 10


@dataclass(frozen=True, order=True)
class Target:
    """A group in one connector that the policy grants."""

    connector: str
    group: str

    def __str__(self) -> str:
        return f"{self.connector}/{self.group}"


@dataclass(frozen=True)
class Holding:
    """A membership Clearance accounts for: a grant in force, or one being provisioned."""

    request_id: str
    principal: str
    connector: str
    group: str

    @property
    def target(self) -> Target:
        return Target(self.connector, self.group)


@dataclass(frozen=True)
class Unexpected:
    """A member of a managed group that no grant in force covers."""

    member: str
    remove: bool
    reason: str  # why it is kept ("" when it is to be removed)


@dataclass(frozen=True)
class Missing:
    """A grant in force whose principal is not in the group."""

    principal: str
    request_id: str


@dataclass(frozen=True)
class TargetDrift:
    """What was found on one managed target."""

    target: Target
    resources: tuple[str, ...]  # ids of the resources that grant this target
    mode: DriftMode
    note: str  # why drift here is only reported although a resource says revoke
    unexpected: tuple[Unexpected, ...] = ()
    missing: tuple[Missing, ...] = ()
    error: str | None = None  # the members could not be listed: nothing was judged

    @property
    def has_drift(self) -> bool:
        return bool(self.unexpected or self.missing)


@dataclass(frozen=True)
class DriftReport:
    """Every managed target, with what was found on it."""

    policy_version: str
    targets: tuple[TargetDrift, ...]

    @property
    def has_drift(self) -> bool:
        return any(t.has_drift for t in self.targets)

    @property
    def errors(self) -> tuple[TargetDrift, ...]:
        return tuple(t for t in self.targets if t.error is not None)

    @property
    def findings(self) -> int:
        return sum(len(t.unexpected) + len(t.missing) for t in self.targets)

    @property
    def removals(self) -> tuple[tuple[Target, str], ...]:
        """The (target, member) pairs to remove, in report order."""
        return tuple((t.target, u.member) for t in self.targets for u in t.unexpected if u.remove)


def managed_targets(policy: Policy) -> dict[Target, tuple[Resource, ...]]:
    """Each target the policy grants, with the resources that grant it, in policy order."""
    out: dict[Target, tuple[Resource, ...]] = {}
    for resource in policy.resources:
        target = Target(resource.grant.connector, resource.grant.group)
        out[target] = (*out.get(target, ()), resource)
    return out


def target_mode(resources: Sequence[Resource]) -> tuple[DriftMode, str]:
    """Whether drift on a shared target is removed, and why not when resources disagree."""
    modes = {r.drift for r in resources}
    if modes == {"revoke"}:
        return "revoke", ""
    if modes == {"report"}:
        return "report", ""
    revoking = ", ".join(r.id for r in resources if r.drift == "revoke")
    reporting = ", ".join(r.id for r in resources if r.drift == "report")
    return "mixed", (
        f"resources share this group but disagree: {revoking} say drift: revoke, "
        f"{reporting} say drift: report; unexpected members are only reported until they agree"
    )


def find_drift(
    policy: Policy,
    grants: Iterable[Holding],
    members: Mapping[Target, Sequence[str]],
    failures: Mapping[Target, str] | None = None,
    in_flight: Iterable[Holding] = (),
    removal_limit: int = REMOVAL_LIMIT,
) -> DriftReport:
    """Compare the grants in force with the members each managed group actually has.

    ``grants`` must be in the group; ``in_flight`` (grants being provisioned or confirmed
    while the members were read) may be. ``failures`` names targets whose members could
    not be listed; a target in neither mapping is reported as not checked. A group where
    more than ``removal_limit`` members would be removed keeps them all and says why.
    """
    failures = failures or {}
    required: dict[Target, list[Holding]] = {}
    allowed: dict[Target, set[str]] = {}
    for holding in grants:
        required.setdefault(holding.target, []).append(holding)
        allowed.setdefault(holding.target, set()).add(holding.principal.strip().lower())
    for holding in in_flight:
        allowed.setdefault(holding.target, set()).add(holding.principal.strip().lower())

    found: list[TargetDrift] = []
    for target, resources in sorted(managed_targets(policy).items()):
        mode, note = target_mode(resources)
        ids = tuple(r.id for r in resources)
        listed = members.get(target)
        if listed is None:
            error = failures.get(target) or "its members were not listed"
            found.append(TargetDrift(target, ids, mode, note, error=error))
            continue
        # Compared without case; shown as the connector spelled it (ids and DNs keep theirs).
        present = {m.strip().lower(): m.strip() for m in reversed(listed) if m.strip()}
        baseline = {m for r in resources for m in r.baseline_members}
        legitimate = allowed.get(target, set()) | baseline
        unexpected = _held_if_mass(
            tuple(
                _unexpected(present[key], mode) for key in sorted(present) if key not in legitimate
            ),
            removal_limit,
        )
        in_group = set(present)
        missing = tuple(
            Missing(h.principal.lower(), h.request_id)
            for h in sorted(required.get(target, []), key=lambda h: (h.principal, h.request_id))
            if h.principal.strip().lower() not in in_group
        )
        found.append(TargetDrift(target, ids, mode, note, unexpected, missing))
    return DriftReport(policy.version, tuple(found))


def _held_if_mass(unexpected: tuple[Unexpected, ...], limit: int) -> tuple[Unexpected, ...]:
    """Keep everyone when one group would lose more than ``limit`` members in one run.

    So many strangers in one group more often means a wrong group id in the policy, or a
    directory change, than a real intrusion: a human confirms before mass removal.
    """
    count = sum(1 for u in unexpected if u.remove)
    if count <= limit:
        return unexpected
    reason = (
        f"held: {count} removals from one group is more than the limit of {limit}; check "
        f"the group, then run `clearance reconcile --max-removals {count}`"
    )
    return tuple(
        Unexpected(u.member, remove=False, reason=reason) if u.remove else u for u in unexpected
    )


def _unexpected(member: str, mode: DriftMode) -> Unexpected:
    if mode == "report":
        return Unexpected(member, remove=False, reason="drift: report")
    if mode == "mixed":
        return Unexpected(member, remove=False, reason="resources sharing the group disagree")
    if not _EMAIL.match(member):
        return Unexpected(
            member,
            remove=False,
            reason="the connector names this member by no email address; remove it by hand",
        )
    return Unexpected(member, remove=True, reason="")
