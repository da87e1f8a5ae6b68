"""The API's use cases: what a verified caller (workload or person) may do with requests.

File a request (its origin, the verified token's issuer and subject, is kept with it and
shown on the approvers' cards), read one, cancel one, wait for one to settle. Every call
that gets this far is audited with who called and how they proved it (never the token).
Approval stays in chat: nothing here approves anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from bot.api_auth import ApiAuth, ApiProblem, Caller
from bot.request_watch import RequestWatch
from bot.usecases import Clearance
from engine.access_request import AccessRequest, PrincipalKind, Status
from engine.drafts import RequestDraft
from engine.refusals import Refusal, Refused
from engine.transitions import AuditRecord

# Longest a single wait call holds the connection; a client waits longer by calling again.
WAIT_MAX = timedelta(seconds=60)


@dataclass(frozen=True)
class Submission:
    """What an API caller asks for (the JSON body, shape-checked by the adapter)."""

    resource: str
    justification: str
    duration: str | None = None
    ticket: str | None = None
    principal: str | None = None


def settled(request: AccessRequest) -> bool:
    """Whether a waiting client has its answer: access in force, or a request that ended."""
    return request.status is Status.ACTIVE or request.status.is_final


class Api:
    """The use cases behind ``/api/v1``; each one the single call a handler makes."""

    def __init__(self, clearance: Clearance, auth: ApiAuth, watch: RequestWatch) -> None:
        self.clearance = clearance
        self.auth = auth
        self.watch = watch

    async def submit(self, caller: Caller, submission: Submission) -> AccessRequest:
        await self.auth.consume(caller)
        kind: PrincipalKind = "service"
        if caller.workload is not None:
            # Its own account unless it names another, which the engine refuses (a named
            # principal is never silently replaced by another one).
            principal = (submission.principal or caller.workload.principal).lower()
        else:
            principal = (submission.principal or caller.identity).lower()
            kind = "human" if principal == caller.identity else "service"
        draft = RequestDraft(
            requester=caller.identity,
            resource_id=submission.resource,
            justification=submission.justification,
            duration=submission.duration,
            ticket=submission.ticket,
            principal=principal,
            principal_kind=kind,
            origin=dict(caller.evidence),
        )
        try:
            request = await self.clearance.submit(draft)
        except Refused:
            # Nothing was filed: the token may file the corrected request, and a refusal
            # leaves no trace but the log (the engine's refusal says what to fix).
            await self.auth.release(caller)
            raise
        await self._audit(caller, "POST /api/v1/requests", request.id, "created")
        return request

    async def get(self, caller: Caller, request_id: str) -> AccessRequest:
        request = await self._visible(caller, request_id)
        await self._audit(caller, "GET /api/v1/requests/{id}", request.id, "read")
        return request

    async def cancel(self, caller: Caller, request_id: str) -> AccessRequest:
        await self._visible(caller, request_id)
        await self.auth.consume(caller)
        try:
            request = await self.clearance.cancel(request_id, caller.identity)
        except Refused:
            await self.auth.release(caller)
            raise
        await self._audit(caller, "POST /api/v1/requests/{id}/cancel", request.id, "cancelled")
        return request

    async def wait(self, caller: Caller, request_id: str, longest: timedelta) -> AccessRequest:
        """The request once it settles, or as it is after ``longest`` (at most WAIT_MAX)."""
        request = await self._visible(caller, request_id)
        await self._audit(caller, "GET /api/v1/requests/{id}/wait", request.id, "waited")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(longest, WAIT_MAX).total_seconds()
        while not settled(request) and (left := deadline - loop.time()) > 0:
            await self.watch.changed(left)
            request = await self.clearance.get(request_id)
        return request

    async def _visible(self, caller: Caller, request_id: str) -> AccessRequest:
        """The request, when the caller filed it, has a part in it, or is an admin; every
        other id is refused as unknown, so ids cannot be probed."""
        try:
            request = await self.clearance.get(request_id)
        except Refused:
            request = None
        if request is None or not (
            request.involves(caller.identity)
            or request.principal == caller.identity
            or self.clearance.policy.is_admin(caller.identity)
        ):
            raise Refused(Refusal("unknown_request", request=request_id[:40]))
        return request

    async def _audit(self, caller: Caller, call: str, request_id: str | None, outcome: str) -> None:
        details: dict[str, object] = {"call": call, "outcome": outcome, **_proof(caller)}
        await self.clearance.record(
            AuditRecord(
                action="api_call",
                actor=caller.identity,
                request_id=request_id,
                resource_id=None,
                policy_version=self.clearance.policy.version,
                details=details,
            )
        )


def _proof(caller: Caller) -> Mapping[str, str]:
    """How the caller proved who they are, for the audit trail: never the token itself."""
    if caller.token is not None:
        return {
            "issuer": caller.token.issuer,
            "subject": caller.token.subject[:200],
            "jti": (caller.token.jti or "")[:128],
        }
    return {"token": caller.token_id or ""}


__all__ = ["Api", "ApiProblem", "Submission", "settled"]
