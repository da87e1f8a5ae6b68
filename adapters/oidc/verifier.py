"""Verification of a workload's OIDC-style JWT: GitHub Actions, GitLab, Kubernetes service
account tokens, SPIFFE JWT-SVIDs.

The order matters. The header and the claims are read unverified only to choose a trusted
issuer; anything else in the token is worth nothing until its signature is checked. The
token's shape, algorithm and issuer are settled before any request goes out, so junk and
tokens of strangers cost no network round trip. Keys come only from the trusted issuer's
JWKS (header fields such as ``jku``, ``jwk`` or ``x5u`` are ignored: a token cannot bring the
key that vouches for it). PyJWT checks the signature, then iss, aud, exp, nbf and iat.

Every refusal is a ``TokenRejected`` whose detail tells a pipeline author what to change;
no detail, log line or exception message holds the token.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

import aiohttp
import jwt

from adapters.oidc.jwks import IssuerUnreachable, Jwk, KeyCache

# alg -> the kty its key must have; and for EC the curve. Never "none", never HS*: an HMAC
# "verified" with a public key would let anyone who read the JWKS sign tokens.
ALLOWED_ALGORITHMS: Mapping[str, str] = MappingProxyType(
    {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "ES256": "EC", "ES384": "EC"}
)
_CURVES = {"ES256": "P-256", "ES384": "P-384"}
MAX_TOKEN_BYTES = 16 * 1024
MAX_SHOWN = 100  # characters of a claim value a detail quotes
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_LATEST_DATE = 253402300799  # 9999-12-31T23:59:59Z: later "dates" do not fit a datetime

Code = Literal[
    "malformed",
    "alg_not_allowed",
    "unknown_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "unknown_key",
    "bad_signature",
    "missing_claim",
    "issuer_unreachable",
]


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str  # the exact iss, e.g. https://token.actions.githubusercontent.com
    audiences: frozenset[str]  # aud values accepted from this issuer


@dataclass(frozen=True)
class VerifiedToken:
    issuer: str
    subject: str
    audience: str  # the token's aud value that matched the issuer's audiences
    jti: str | None
    issued_at: datetime | None  # tz-aware UTC
    expires_at: datetime  # tz-aware UTC
    claims: Mapping[str, Any]  # every claim, verified; read-only


class TokenRejected(Exception):
    """A token Clearance does not accept: 401 for a bad token, 503 when the issuer's keys
    could not be fetched (the token may be fine: try again)."""

    def __init__(self, code: Code, detail: str, *, status: int = 401) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code: str = code
        self.detail = detail


def shown(value: object) -> str:
    """A claim value quoted in a detail: printable, at most MAX_SHOWN characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    cut = f"{text[:MAX_SHOWN]}…" if len(text) > MAX_SHOWN else text
    # Strings are quoted, so that 42 and '42' (a type error worth seeing) read differently.
    return f"'{cut}'" if isinstance(value, str) else cut


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _when(seconds: float) -> str:
    return _utc(seconds).isoformat(timespec="seconds").replace("+00:00", "Z")


class OidcVerifier:
    """Verifies workload tokens against the issuers the policy trusts at the time."""

    def __init__(
        self,
        issuers: Callable[[], Iterable[TrustedIssuer]],
        session: aiohttp.ClientSession | None = None,
        *,
        leeway: timedelta = timedelta(seconds=30),
        jwks_ttl: timedelta = timedelta(minutes=10),
        min_refresh_interval: timedelta = timedelta(seconds=30),
        http_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A callable, read at every verify: a policy reload changes the trusted issuers
        # without rebuilding the verifier (and without dropping its key cache).
        self._issuers = issuers
        self._leeway = leeway
        # ``clock`` (monotonic seconds) times the key cache only; token times are checked
        # by PyJWT against the wall clock.
        self._keys = KeyCache(
            session,
            ttl=jwks_ttl.total_seconds(),
            min_refresh_interval=min_refresh_interval.total_seconds(),
            http_timeout=http_timeout,
            clock=clock,
        )

    async def close(self) -> None:
        """Closes the HTTP session if the verifier made it."""
        await self._keys.close()

    async def verify(self, token: str) -> VerifiedToken:
        alg, kid = _header(token)
        claims = _unverified_claims(token)
        trusted = self._trusted(claims)
        audience = _audience(claims, trusted)
        _check_claim_types(claims)
        key = await self._key(trusted.issuer, alg, kid)
        verified = self._decode(token, claims, key, alg, trusted)
        return VerifiedToken(
            issuer=trusted.issuer,
            subject=verified["sub"],
            audience=audience,
            jti=verified.get("jti"),
            issued_at=_utc(verified["iat"]) if verified.get("iat") is not None else None,
            expires_at=_utc(verified["exp"]),
            claims=MappingProxyType(verified),
        )

    def _trusted(self, claims: Mapping[str, Any]) -> TrustedIssuer:
        iss = claims.get("iss")
        if iss is None or iss == "":
            raise TokenRejected(
                "missing_claim",
                "the token has no iss claim; request it from your platform's "
                "OIDC token service, which names itself there",
            )
        audiences: dict[str, set[str]] = {}
        for trusted in self._issuers():
            # Two policy entries for one issuer (say, two workloads with different
            # audiences) are one issuer accepting both.
            audiences.setdefault(trusted.issuer, set()).update(trusted.audiences)
        if not isinstance(iss, str) or iss not in audiences:
            # The trusted issuers are not listed: they are the deployment's configuration,
            # not something an unauthenticated caller needs to read.
            raise TokenRejected(
                "unknown_issuer",
                f"the token's iss is {shown(iss)}, which Clearance does not "
                "trust; use a token from a trusted issuer or ask the Clearance admins to add it",
            )
        return TrustedIssuer(iss, frozenset(audiences[iss]))

    async def _key(self, issuer: str, alg: str, kid: str | None) -> jwt.PyJWK:
        try:
            candidates = await self._keys.signing_keys(issuer, kid)
        except IssuerUnreachable as exc:
            raise TokenRejected(
                "issuer_unreachable",
                f"Clearance could not fetch the signing keys of "
                f"{issuer} ({exc.detail}); try again in a minute",
                status=503,
            ) from None
        fitting = [key for key in candidates if _fits(key, alg)]
        if kid is not None and candidates and not fitting:
            raise TokenRejected(
                "alg_not_allowed",
                f"the token's alg {alg} does not fit the issuer's key "
                f"{shown(kid)} (kty {shown(candidates[0].get('kty'))}); request a new token",
            )
        if not fitting:
            which = "has no kid header and" if kid is None else f"has kid {shown(kid)}, but"
            raise TokenRejected(
                "unknown_key",
                f"the token {which} {issuer} publishes no such {alg} key; "
                "request a new token (the issuer may have rotated its keys)",
            )
        if len(fitting) > 1 and kid is None:
            raise TokenRejected(
                "unknown_key",
                f"the token has no kid header and {issuer} publishes several "
                f"{alg} keys; request a token whose header names its key (kid)",
            )
        try:
            return jwt.PyJWK(dict(fitting[0]), algorithm=alg)
        except jwt.PyJWTError:
            raise TokenRejected(
                "unknown_key",
                f"the issuer's key {shown(kid)} cannot be used for {alg}; request a new token",
            ) from None

    def _decode(
        self,
        token: str,
        claims: Mapping[str, Any],
        key: jwt.PyJWK,
        alg: str,
        trusted: TrustedIssuer,
    ) -> dict[str, Any]:
        # ``claims`` (unverified) only word the refusals; what is returned is PyJWT's.
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=sorted(trusted.audiences),
                issuer=trusted.issuer,
                leeway=self._leeway,
                options={
                    "require": ["iss", "sub", "aud", "exp"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(
                "bad_signature",
                "the token's signature does not verify with the issuer's key; "
                "send the token exactly as the issuer gave it",
            ) from None
        except jwt.ExpiredSignatureError:
            raise TokenRejected(
                "expired",
                f"the token expired at {_when(claims['exp'])}; request a fresh token "
                "right before calling Clearance",
            ) from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not_yet_valid", self._immature(claims)) from None
        except jwt.InvalidKeyError:
            raise TokenRejected(
                "unknown_key",
                "the issuer signed the token with a key too short for "
                "Clearance (RSA keys need 2048 bits or more); ask the issuer's admins",
            ) from None
        except jwt.PyJWTError as exc:
            # The checks before the fetch already explain every other refusal; this is the
            # last line, reached only if PyJWT is stricter than they are.
            raise TokenRejected(
                "malformed", f"the token was refused ({type(exc).__name__}); request a new one"
            ) from None

    def _immature(self, claims: Mapping[str, Any]) -> str:
        now, leeway = time.time(), self._leeway.total_seconds()
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + leeway:
            return f"the token is not valid before {_when(nbf)} (nbf); use it from then on"
        return (
            f"the token was issued at {_when(claims['iat'])} (iat), in the future; check the "
            "clock of the machine that made it"
        )


def _header(token: str) -> tuple[str, str | None]:
    """The token's alg and kid, after the checks that need no parsing."""
    if not isinstance(token, str):
        raise TokenRejected("malformed", "the token is not text; send the JWT as a string")
    # Counted in characters: more characters are more bytes, and a non-ASCII character
    # fails the shape check below anyway.
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected(
            "malformed",
            f"the token is larger than {MAX_TOKEN_BYTES} bytes; send only the "
            "JWT itself, as the issuer gave it",
        )
    if not _JWS_COMPACT.fullmatch(token):
        hint = " (it looks encrypted, JWE)" if token.count(".") == 4 else ""
        raise TokenRejected(
            "malformed",
            f"the token is not a signed JWT{hint}; send the JWT itself (three "
            "base64url parts joined by dots), without 'Bearer ' or quotes",
        )
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected(
            "malformed",
            "the token's header is not one Clearance can read (JSON, a string kid, no crit "
            "extensions); send the JWT exactly as the issuer gave it",
        ) from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise TokenRejected(
            "alg_not_allowed",
            f"the token's alg is {shown(alg)}; Clearance accepts only "
            f"tokens signed with {', '.join(ALLOWED_ALGORITHMS)}",
        )
    if "crit" in header:
        raise TokenRejected(
            "malformed",
            "the token's header lists critical extensions (crit), which "
            "Clearance does not support; request a plain signed JWT",
        )
    kid = header.get("kid")
    return alg, kid if isinstance(kid, str) else None


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRejected(
            "malformed",
            "the token's payload is not a JSON object; send the JWT exactly as the issuer gave it",
        ) from None


def _audience(claims: Mapping[str, Any], trusted: TrustedIssuer) -> str:
    """The first of the token's aud values the issuer's audiences accept."""
    aud = claims.get("aud")
    wanted = " or ".join(shown(a) for a in sorted(trusted.audiences)) or "(none configured)"
    if aud is None or aud == [] or aud == "":
        raise TokenRejected(
            "missing_claim", f"the token has no aud claim; request the token with audience {wanted}"
        )
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TokenRejected(
            "malformed",
            f"the token's aud is {shown(aud)}, not a string or a list of strings; "
            f"request the token with audience {wanted}",
        )
    for value in values:
        if value in trusted.audiences:
            return str(value)
    raise TokenRejected(
        "wrong_audience",
        f"the token's aud is {shown(aud)}; request the token with audience {wanted}",
    )


def _check_claim_types(claims: Mapping[str, Any]) -> None:
    """sub and exp are there, and the claims PyJWT reads have the types it expects."""
    sub = claims.get("sub")
    if sub is None or sub == "":
        raise TokenRejected(
            "missing_claim",
            "the token has no sub claim; Clearance tells workloads apart by "
            "sub, so request the token from a platform that sets it",
        )
    if not isinstance(sub, str):
        raise TokenRejected("malformed", f"the token's sub is {shown(sub)}, not a string")
    if claims.get("exp") is None:
        raise TokenRejected(
            "missing_claim",
            "the token has no exp claim; Clearance accepts only tokens that "
            "expire: request a short-lived one",
        )
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value) or not 0 <= value <= _LATEST_DATE:
            raise TokenRejected(
                "malformed",
                f"the token's {name} is {shown(value)}, not a time in seconds "
                "since 1970; request a new token",
            )
    if claims.get("jti") is not None and not isinstance(claims["jti"], str):
        raise TokenRejected("malformed", f"the token's jti is {shown(claims['jti'])}, not a string")


def _fits(key: Jwk, alg: str) -> bool:
    """Whether a JWK may verify this alg: its kty (and curve) match and, if the key names
    an alg of its own, it is this one (RFC 7517 section 4.4)."""
    if key.get("kty") != ALLOWED_ALGORITHMS[alg] or key.get("alg", alg) != alg:
        return False
    return alg not in _CURVES or key.get("crv") == _CURVES[alg]
