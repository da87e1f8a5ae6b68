"""Who is calling the API: a workload proving itself with its platform's token, or a person
with a personal token made by ``clearance token create``.

Every way in ends here with a ``Caller`` or an ``ApiProblem`` (401/403/429/503) that says
what to fix; nothing is written for a refused caller. A workload token is matched to
exactly one workload of the policy by its issuer, audience, subject and claims. A token
that changes something (files or cancels a request) is accepted once: its ``jti`` is
recorded until it expires, so a captured token cannot file a second request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from adapters.oidc.verifier import TokenRejected, VerifiedToken
from bot.clock import Clock
from bot.policy_source import PolicySource
from bot.rate_limits import RateLimits
from engine.ports import Directory
from engine.workload_policy import WorkloadPolicy
from storage.api_tokens import ApiToken, ApiTokens

PERSONAL_PREFIX = "clr_"
# People's calls per minute; a workload's limit is its policy entry's rate_limit.
PERSON_RATE = (60, timedelta(minutes=1))
_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
# How long past its exp a jti is kept: the verifier accepts a token that long after exp.
JTI_GRACE = timedelta(minutes=2)


@dataclass(frozen=True)
class ApiProblem(Exception):
    """An API refusal: an RFC 9457 problem with what to fix in ``detail``."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None
    errors: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Caller:
    """A verified API caller. ``identity`` is who asks: ``workload:<id>`` or an email."""

    identity: str
    kind: str  # "workload" | "person"
    workload: WorkloadPolicy | None = None
    token: VerifiedToken | None = None
    token_id: str | None = None
    evidence: dict[str, str] = field(default_factory=dict)

    @property
    def replay_key(self) -> tuple[str, str, datetime] | None:
        """(issuer, jti, keep until) for a workload token, recorded on its first change."""
        if self.token is None or not self.token.jti:
            return None
        return self.token.issuer, self.token.jti, self.token.expires_at + JTI_GRACE


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> VerifiedToken: ...

    async def close(self) -> None: ...


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a plain hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def new_personal_token(
    owner: str, ttl: timedelta, created_by: str, now: datetime
) -> tuple[ApiToken, str]:
    """A new token and the text to show once: ``clr_<id>_<secret>``."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    stored = ApiToken(
        id=token_id,
        owner=owner.lower(),
        secret_hash=hash_secret(secret),
        created_by=created_by,
        created_at=now,
        expires_at=now + ttl,
    )
    return stored, f"{PERSONAL_PREFIX}{token_id}_{secret}"


class ApiAuth:
    """Turns an ``Authorization`` header into a Caller, or refuses with an ApiProblem."""

    def __init__(
        self,
        verifier: TokenVerifier,
        tokens: ApiTokens,
        policies: PolicySource,
        directory: Directory,
        clock: Clock,
        limits: RateLimits | None = None,
    ) -> None:
        self.verifier = verifier
        self.tokens = tokens
        self.policies = policies
        self.directory = directory
        self.clock = clock
        self.limits = limits or RateLimits()

    async def caller(self, authorization: str | None) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(
                401,
                "no_token",
                "send Authorization: Bearer <token>: your platform's OIDC token for a "
                "workload, or a token from `clearance token create` for a person",
            )
        caller = (
            await self._person(token)
            if token.startswith(PERSONAL_PREFIX)
            else await self._workload(token)
        )
        self._within_rate(caller)
        return caller

    async def close(self) -> None:
        await self.verifier.close()

    async def consume(self, caller: Caller) -> None:
        """Accept a workload token's change once; a second one is a replay (403)."""
        key = caller.replay_key
        if key is None:
            return
        issuer, jti, keep_until = key
        if not await self.tokens.first_use(issuer, jti, keep_until, self.clock.now()):
            raise ApiProblem(
                403,
                "token_replayed",
                f"this token (jti {jti[:64]}) was already used to change something; "
                "request a fresh token from your platform for each change",
            )

    async def release(self, caller: Caller) -> None:
        """Undo ``consume`` for a change that was refused: nothing changed, so the token
        may still make the corrected one."""
        if (key := caller.replay_key) is not None:
            await self.tokens.forget(key[0], key[1])

    # --- the two kinds of caller ---------------------------------------------------------

    async def _person(self, text: str) -> Caller:
        token_id, _, secret = text.removeprefix(PERSONAL_PREFIX).partition("_")
        stored = await self.tokens.get(token_id) if token_id and secret else None
        valid = stored is not None and hmac.compare_digest(stored.secret_hash, hash_secret(secret))
        if stored is None or not valid:
            raise ApiProblem(
                401,
                "bad_token",
                "the token is not one Clearance issued; create one with "
                "`clearance token create --user <email>`",
            )
        now = self.clock.now()
        if stored.revoked_at is not None:
            raise ApiProblem(
                401, "token_revoked", f"token {stored.id} was revoked; create a new one"
            )
        if now >= stored.expires_at:
            raise ApiProblem(
                401,
                "token_expired",
                f"token {stored.id} expired at {stored.expires_at:%Y-%m-%d %H:%M} UTC; "
                "create a new one",
            )
        person = await self.directory.person(stored.owner)
        if person is None or not person.active:
            raise ApiProblem(
                403, "person_inactive", f"{stored.owner} is not an active person in the directory"
            )
        await self.tokens.used(stored.id, now)
        return Caller(
            identity=person.email,
            kind="person",
            token_id=stored.id,
            evidence={"via": "api", "token": stored.id},
        )

    async def _workload(self, text: str) -> Caller:
        try:
            verified = await self.verifier.verify(text)
        except TokenRejected as exc:
            raise ApiProblem(exc.status, exc.code, exc.detail) from None
        candidates = [
            w
            for w in self.policies.current.document.workloads
            if w.issuer == verified.issuer and w.audience == verified.audience
        ]
        reasons: list[str] = []
        matched: list[WorkloadPolicy] = []
        for workload in candidates:
            why = workload.mismatch(verified.subject, verified.claims)
            (matched.append(workload) if why is None else reasons.append(f"{workload.id}: {why}"))
        if len(matched) != 1:
            detail = (
                "the token matches more than one workload ("
                + ", ".join(w.id for w in matched)
                + "); the policy must tell them apart"
                if matched
                else "no workload of the policy matches this token"
                + (f" ({'; '.join(reasons)})" if reasons else f" from {verified.issuer}")
            )
            raise ApiProblem(403, "no_workload", detail)
        workload = matched[0]
        return Caller(
            identity=workload.identity,
            kind="workload",
            workload=workload,
            token=verified,
            evidence={
                "via": "api",
                "workload": workload.id,
                "issuer": verified.issuer,
                "subject": verified.subject[:200],
            },
        )

    def _within_rate(self, caller: Caller) -> None:
        count, window = (
            (caller.workload.rate_limit.count, caller.workload.rate_limit.window)
            if caller.workload is not None
            else PERSON_RATE
        )
        wait = self.limits.take(caller.identity, count, window)
        if wait is not None:
            raise ApiProblem(
                429,
                "rate_limited",
                f"{caller.identity} may make {count} calls per "
                f"{int(window.total_seconds())} s; retry in {wait} s",
                retry_after=wait,
            )
