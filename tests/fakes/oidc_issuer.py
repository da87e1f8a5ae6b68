"""A local OIDC issuer for tests: an aiohttp server on 127.0.0.1 serving the discovery
document and the JWKS, and minting tokens the way GitHub Actions or a cluster would.

    async with OidcIssuer() as issuer:
        token = issuer.issue("repo:acme/payments:ref:refs/heads/main")

It holds one RSA key (RS256) and one EC P-256 key (ES256); ``rotate()`` replaces both with
new kids and drops the old ones from the JWKS. ``fetches`` counts the requests for each
document, so tests can see what the cache and the refresh guard saved. ``available = False``
makes both documents answer 503, ``delay`` holds each answer back that many seconds, and
``discovery_overrides`` changes fields of the discovery document (a plain-http jwks_uri, an
issuer that names another).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from types import TracebackType
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class _Default(Enum):
    """jti's default (a fresh uuid), told apart from jti=None (no jti claim)."""

    JTI = "jti"


_DEFAULT = _Default.JTI


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_b64(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _new_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def _first_key(alg: str) -> PrivateKey:
    # RSA key generation is the slow part of a test; every issuer starts with the same pair.
    return _new_key(alg)


class OidcIssuer:
    """One issuer with its own port; ``url`` is its iss."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, PrivateKey]] = {
            alg: (f"{alg.lower()}-{uuid.uuid4().hex[:8]}", _first_key(alg))
            for alg in ("RS256", "ES256")
        }
        self.fetches: Counter[str] = Counter()  # "discovery", "jwks"
        self.available = True
        self.delay = 0.0
        self.discovery_overrides: dict[str, Any] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    # lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(DISCOVERY_PATH, self._discovery)
        app.router.add_get(JWKS_PATH, self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OidcIssuer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # the two documents

    @property
    def discovery_fetches(self) -> int:
        return self.fetches["discovery"]

    @property
    def jwks_fetches(self) -> int:
        return self.fetches["jwks"]

    def kid(self, alg: str = "RS256") -> str:
        return self.keys[alg][0]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for alg, (kid, key) in self.keys.items():
            jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": keys}

    async def _answer(self, which: str, body: Mapping[str, Any]) -> web.Response:
        self.fetches[which] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.available:
            return web.Response(status=503, text="unavailable")
        return web.json_response(body)

    async def _discovery(self, request: web.Request) -> web.Response:
        document = {
            "issuer": self.url,
            "jwks_uri": self.url + JWKS_PATH,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(self.keys),
            **self.discovery_overrides,
        }
        return await self._answer("discovery", document)

    async def _jwks(self, request: web.Request) -> web.Response:
        return await self._answer("jwks", self.jwks())

    # tokens

    def rotate(self) -> None:
        """New keys with new kids for both algorithms; the old ones leave the JWKS."""
        self.keys = {
            alg: (f"{alg.lower()}-{uuid.uuid4().hex[:8]}", _new_key(alg)) for alg in self.keys
        }

    def claims(
        self,
        subject: str,
        audience: str | list[str] = "clearance",
        *,
        expires_in: int = 300,
        not_before: datetime | int | None = None,
        jti: str | _Default | None = _DEFAULT,
        claims: Mapping[str, Any] | None = None,
        issuer: str | None = None,
    ) -> dict[str, Any]:
        """The payload ``issue`` signs. ``not_before`` is a datetime or seconds from now;
        a claim given as None in ``claims`` is left out (to test missing claims)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer if issuer is not None else self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + expires_in,
        }
        if isinstance(not_before, datetime):
            payload["nbf"] = int(not_before.timestamp())
        elif not_before is not None:
            payload["nbf"] = now + not_before
        if jti is _DEFAULT:
            payload["jti"] = str(uuid.uuid4())
        elif jti is not None:
            payload["jti"] = jti
        payload.update(claims or {})
        return {name: value for name, value in payload.items() if value is not None}

    def issue(
        self,
        subject: str,
        audience: str | list[str] = "clearance",
        *,
        alg: str = "RS256",
        expires_in: int = 300,
        not_before: datetime | int | None = None,
        jti: str | _Default | None = _DEFAULT,
        kid: str | None = None,
        claims: Mapping[str, Any] | None = None,
        issuer: str | None = None,
    ) -> str:
        """A token signed with the current key for ``alg`` (RS256 or ES256); ``kid`` only
        changes what the header says, not which key signs."""
        payload = self.claims(
            subject,
            audience,
            expires_in=expires_in,
            not_before=not_before,
            jti=jti,
            claims=claims,
            issuer=issuer,
        )
        current_kid, key = self.keys[alg]
        headers = {"kid": kid if kid is not None else current_kid, "typ": "JWT"}
        return jwt.encode(payload, key, algorithm=alg, headers=headers)

    def forge_none(self, subject: str, audience: str | list[str] = "clearance", **kw: Any) -> str:
        """An unsigned token (alg none) with otherwise valid claims and the RSA key's kid."""
        header = {"alg": "none", "typ": "JWT", "kid": self.kid("RS256")}
        return f"{_json_b64(header)}.{_json_b64(self.claims(subject, audience, **kw))}."

    def forge_hs256_with_public_key(
        self, subject: str, audience: str | list[str] = "clearance", **kw: Any
    ) -> str:
        """The algorithm-confusion attack: HMAC-SHA256 keyed with the RSA public key's PEM,
        which anyone can read from the JWKS. Built by hand, as PyJWT refuses to sign it."""
        public_pem = (
            self.keys["RS256"][1]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid("RS256")}
        signing_input = f"{_json_b64(header)}.{_json_b64(self.claims(subject, audience, **kw))}"
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"
