"""Checks of the ``workloads:`` section a schema cannot make, each at its line.

The rule they guard: the identity that asks (a workload, for its principal), the ones that
approve and the ones that execute grants are three different identities. A policy where a
workload's principal or owner could also execute a grant, or where its principal could be
asked to approve its own request, is refused here rather than caught at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from engine.policy import PolicyDocument, Resource
from engine.rules import User, WorkloadRef

Found = Iterator[tuple[int, str]]


class Lines(Protocol):
    def line_of(self, path: Iterable[str | int]) -> int: ...


class Checked(Protocol):
    """A resource at ``index`` of the file, with the keys that passed its schema."""

    @property
    def index(self) -> int: ...

    @property
    def resource(self) -> Resource: ...

    def valid(self, *keys: str) -> bool: ...


def workload_problems(
    doc: PolicyDocument,
    checked: Sequence[Checked],
    lines: Lines,
    static_people: set[str] | None,
) -> Found:
    """Every problem of the workloads and of the resources' ``workload:`` requesters and
    ``on_behalf`` accounts. ``static_people`` is the static directory's people (None when
    the directory is live, so people cannot be checked here). Keys of a resource that
    failed its schema are not read."""
    resources = {c.resource.id: c for c in checked if c.valid("id")}
    workloads = {w.id for w in doc.workloads}
    seen: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], str] = {}
    executors = doc.executor_identities
    for i, w in enumerate(doc.workloads):
        base = ("workloads", i)

        def at(*key: str | int, _base: tuple[str | int, ...] = base) -> int:
            return lines.line_of((*_base, *key))

        if w.id in {x.id for x in doc.workloads[:i]}:
            yield at("id"), f"duplicate workload id '{w.id}'"
        match = (w.issuer, w.audience, w.subject, tuple(sorted(w.claims.items())))
        if match in seen:
            yield (
                at("subject"),
                (
                    f"workload '{w.id}' matches the same tokens as '{seen[match]}'; "
                    "give one of them a narrower subject or claims"
                ),
            )
        seen.setdefault(match, w.id)
        if static_people is not None and w.owner not in static_people:
            yield at("owner"), f"owner {w.owner} of workload '{w.id}' is not in directory.people"
        if w.principal == w.owner:
            yield (
                at("principal"),
                (
                    f"workload '{w.id}' has {w.principal} as both principal and owner; the owner "
                    "approves for the workload, so it must be a person, not the account it uses"
                ),
            )
        for role, who in (("principal", w.principal), ("owner", w.owner)):
            if who in executors:
                yield (
                    at(role),
                    (
                        f"{role} {who} of workload '{w.id}' executes grants for a connector; "
                        "the identity that executes a grant may not ask for or approve one"
                    ),
                )
        if w.principal in doc.admins.users:
            yield (
                at("principal"),
                (
                    f"principal {w.principal} of workload '{w.id}' is an admin, so it could "
                    "approve its own requests; use an account that is not an admin"
                ),
            )
        if w.callback_url is not None:
            host = (urlsplit(w.callback_url).hostname or "").lower()
            if host not in doc.api.callback_hosts:
                yield (
                    at("callback_url"),
                    (
                        f"callback_url host '{host}' is not in api.callback_hosts; add it there "
                        "to allow callbacks to it"
                    ),
                )
        for j, rid in enumerate(w.resources):
            found = resources.get(rid)
            if found is None:
                yield at("resources", j), f"workload '{w.id}' names unknown resource '{rid}'"
                continue
            res = found.resource
            if found.valid("requesters") and not any(
                isinstance(e, WorkloadRef) and e.id == w.id for e in res.requesters or ()
            ):
                yield (
                    at("resources", j),
                    (
                        f"resource '{rid}' does not list workload:{w.id} among its requesters; "
                        "add it there, or remove the resource from the workload"
                    ),
                )
            if found.valid("approval", "owners"):
                yield from _approves_itself(
                    w.principal, res, at("resources", j), f"workload '{w.id}' gets access"
                )
    for c in checked:
        res, k = c.resource, c.index
        for j, entry in enumerate(res.requesters or () if c.valid("requesters") else ()):
            if isinstance(entry, WorkloadRef) and entry.id not in workloads:
                yield (
                    lines.line_of(("resources", k, "requesters", j)),
                    (f"unknown workload '{entry.id}' (not in workloads)"),
                )
        if not c.valid("on_behalf", "approval", "owners"):
            continue
        for j, account in enumerate(res.on_behalf):
            line = lines.line_of(("resources", k, "on_behalf", j))
            if account in executors:
                yield (
                    line,
                    (
                        f"on_behalf account {account} executes grants for a connector; the "
                        "identity that executes a grant may not be granted through a request"
                    ),
                )
            yield from _approves_itself(account, res, line, "a request on behalf gets access")


def _approves_itself(account: str, res: Resource, line: int, who: str) -> Found:
    """An account access is granted to must not be named to approve that access."""
    named = [
        str(rule)
        for stage in res.approval
        for rule in stage.approvers
        if isinstance(rule, User) and rule.email == account
    ] + [str(o) for o in res.owners if isinstance(o, User) and o.email == account]
    if named:
        yield (
            line,
            (
                f"{who} to '{res.id}' as {account}, which the resource names to approve it "
                f"({', '.join(named)}); the account that gets access may not approve it"
            ),
        )
