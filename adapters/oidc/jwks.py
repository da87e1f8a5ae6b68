"""A trusted issuer's signing keys: OIDC discovery, the JWKS, their cache and the refresh guard.

Only issuers already found in the trusted list reach this module, so a token naming an
unknown ``iss`` never makes Clearance send a request anywhere. What is fetched is bounded:
one discovery document and one JWKS per issuer per ``ttl``, and an unknown ``kid`` refetches
the JWKS at most once per ``min_refresh_interval`` (a stream of made-up kids must not turn
Clearance into a load generator against GitHub or a cluster's API server). Verifies that
arrive while a fetch is in flight wait for that fetch instead of starting their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Real discovery documents and key sets are a few KiB; a bigger answer is not one of them.
MAX_DOCUMENT_BYTES = 256 * 1024
# After a failed refresh, keys fetched at most this long past their ttl are still used: a
# blip at the issuer must not stop every pipeline, but keys are not trusted forever either.
MAX_STALE_SECONDS = 3600.0
# The algorithm each usable key is checked against when the set is fetched; the token's own
# alg is bound to the key again at verification.
_PROBE_ALG: dict[tuple[object, object], str] = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
}

Jwk = Mapping[str, Any]


class IssuerUnreachable(Exception):
    """The issuer's keys could not be had; ``detail`` says what failed, without the token."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def discovery_url(issuer: str) -> str:
    # OpenID Connect Discovery 1.0 section 4: a trailing "/" of the issuer is dropped first.
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass
class _Entry:
    """What is known of one issuer. Times are the injected monotonic clock's."""

    jwks_uri: str | None = None
    discovered_at: float = -math.inf
    keys: tuple[Jwk, ...] | None = None
    fetched_at: float = -math.inf  # the last JWKS fetch that succeeded
    attempted_at: float = -math.inf  # the last fetch started, whatever came of it: the guard
    error: str | None = None  # why the last fetch failed, None when it succeeded
    inflight: asyncio.Task[None] | None = None


class KeyCache:
    """Signing keys per issuer, fetched over HTTP and kept for ``ttl`` seconds."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        ttl: float,
        min_refresh_interval: float,
        http_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def signing_keys(self, issuer: str, kid: str | None) -> list[Jwk]:
        """The issuer's keys with this ``kid`` (every key when the token has none).

        An empty list means the issuer does not publish such a key, even after the one
        refresh an unknown kid is allowed. Raises ``IssuerUnreachable`` when no keys recent
        enough can be had, or when the refresh an unknown kid needed failed (the key may
        well exist: the caller should try again rather than be told its token is bad).
        """
        entry = self._entries.setdefault(issuer, _Entry())
        if entry.inflight is not None or self._clock() - entry.fetched_at >= self._ttl:
            await self._refresh(issuer, entry)
        if entry.keys is None or self._clock() - entry.fetched_at >= self._ttl + MAX_STALE_SECONDS:
            raise IssuerUnreachable(entry.error or f"no signing keys of {issuer} yet")
        found = _with_kid(entry.keys, kid)
        if not found and await self._refresh(issuer, entry):
            found = _with_kid(entry.keys, kid)
        elif not found and entry.error is not None and entry.attempted_at > entry.fetched_at:
            raise IssuerUnreachable(entry.error)
        return found

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.inflight is not None:
                entry.inflight.cancel()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None  # a later verify opens a new one (a caller's stays theirs)

    async def _refresh(self, issuer: str, entry: _Entry) -> bool:
        """Fetch again, or join the fetch in flight; False when the guard allowed neither or
        the fetch failed (``entry.error`` says why)."""
        task = entry.inflight
        if task is None:
            if self._clock() - entry.attempted_at < self._min_refresh:
                return False
            entry.attempted_at = self._clock()
            task = entry.inflight = asyncio.ensure_future(self._fetch(issuer, entry))
        # shield: one caller giving up (its request was cancelled) must not cancel the fetch
        # the others are waiting for.
        await asyncio.shield(task)
        return entry.error is None

    async def _fetch(self, issuer: str, entry: _Entry) -> None:
        # Never raises IssuerUnreachable: the outcome is left in the entry, so a task whose
        # waiters all went away leaves no unretrieved exception behind.
        try:
            if entry.jwks_uri is None or self._clock() - entry.discovered_at >= self._ttl:
                entry.jwks_uri = await self._discover(issuer)
                entry.discovered_at = self._clock()
            keys = _usable_keys(await self._get_json(entry.jwks_uri, "JWKS"), entry.jwks_uri)
        except IssuerUnreachable as exc:
            # The key set may have moved: look at the discovery document again next time.
            entry.discovered_at = -math.inf
            entry.error = exc.detail
            log.warning("fetching the signing keys of %s failed: %s", issuer, exc.detail)
        else:
            entry.keys, entry.fetched_at, entry.error = keys, self._clock(), None
        finally:
            entry.inflight = None

    async def _discover(self, issuer: str) -> str:
        if urlsplit(issuer).scheme != "https" and not is_loopback_http(issuer):
            raise IssuerUnreachable(f"the issuer {issuer} is not an https URL")
        url = discovery_url(issuer)
        document = await self._get_json(url, "discovery document")
        if not isinstance(document, dict):
            raise IssuerUnreachable(f"the discovery document {url} is not a JSON object")
        if document.get("issuer") != issuer:
            # Discovery section 4.3: a document naming another issuer is not this issuer's.
            raise IssuerUnreachable(f"the discovery document {url} names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not urlsplit(jwks_uri).hostname:
            raise IssuerUnreachable(f"the discovery document {url} has no jwks_uri")
        # Keys over plain http could be swapped by anyone on the path; only a local test
        # issuer may serve them that way, and then only from this machine too.
        secure = urlsplit(jwks_uri).scheme == "https"
        if not secure and not (is_loopback_http(issuer) and is_loopback_http(jwks_uri)):
            raise IssuerUnreachable(f"the jwks_uri of {issuer} is not an https URL")
        return jwks_uri

    async def _get_json(self, url: str, what: str) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            # No redirects: they could lead from https to http, or to somewhere unexpected.
            async with self._session.get(
                url,
                timeout=self._timeout,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status != 200:
                    raise IssuerUnreachable(f"the {what} {url} answered HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise IssuerUnreachable(f"the {what} {url} is too large")
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else "could not be fetched"
            raise IssuerUnreachable(f"the {what} {url} {reason}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise IssuerUnreachable(f"the {what} {url} is not JSON") from exc


def _with_kid(keys: tuple[Jwk, ...], kid: str | None) -> list[Jwk]:
    return list(keys) if kid is None else [key for key in keys if key.get("kid") == kid]


def _usable_keys(document: Any, url: str) -> tuple[Jwk, ...]:
    """The signature keys of a JWKS that PyJWT can load: one odd key (an encryption key, an
    Ed25519 key, a typo) is skipped rather than making the whole set unusable."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise IssuerUnreachable(f"the JWKS {url} has no keys list")
    usable: list[Jwk] = []
    for key in document["keys"]:
        if not isinstance(key, dict) or key.get("use", "sig") != "sig":
            continue
        probe = _PROBE_ALG.get((key.get("kty"), key.get("crv")))
        if probe is None:
            continue
        try:
            jwt.PyJWK(key, algorithm=probe)
        except jwt.PyJWTError:
            continue
        usable.append(key)
    return tuple(usable)
