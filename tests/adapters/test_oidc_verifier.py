"""OidcVerifier against a real local issuer (tests/fakes/oidc_issuer.py) over HTTP.

Every refusal is checked for its status, its code and a detail that tells the pipeline
author what to change, and that the detail never carries the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from adapters.oidc import OidcVerifier, TokenRejected, TrustedIssuer, VerifiedToken
from tests.fakes.oidc_issuer import OidcIssuer

SUBJECT = "repo:acme/payments:ref:refs/heads/main"


class Ticks:
    """A monotonic clock the test moves: the key cache's ttl and refresh guard read it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeVerifier = Callable[..., OidcVerifier]


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def make_verifier(oidc_issuer: OidcIssuer, ticks: Ticks) -> AsyncIterator[MakeVerifier]:
    """Verifiers trusting the local issuer with audience "clearance" (or ``trusted``)."""
    made: list[OidcVerifier] = []

    def make(trusted: Iterable[TrustedIssuer] | None = None, **options: Any) -> OidcVerifier:
        issuers = (
            list(trusted)
            if trusted is not None
            else [TrustedIssuer(oidc_issuer.url, frozenset({"clearance"}))]
        )
        verifier = OidcVerifier(lambda: issuers, clock=options.pop("clock", ticks), **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> OidcVerifier:
    return make_verifier()


async def rejected(
    verifier: OidcVerifier, token: str, code: str, *says: str, status: int = 401
) -> TokenRejected:
    """The refusal of ``token``, checked: status, code, the detail's advice, no token in it."""
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    exc = caught.value
    assert (exc.status, exc.code) == (status, code), exc.detail
    for words in says:
        assert words in exc.detail, exc.detail
    for part in token.split("."):
        if len(part) > 20:
            assert part not in exc.detail and part not in str(exc)
    assert "\n" not in exc.detail
    return exc


def with_payload(token: str, **changes: Any) -> str:
    """The token with its payload changed and its header and signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


# accepted tokens


async def test_a_valid_rs256_token_is_verified(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, jti="run-42", claims={"repository_owner": "acme"})

    verified = await verifier.verify(token)

    assert isinstance(verified, VerifiedToken)
    assert (verified.issuer, verified.subject) == (oidc_issuer.url, SUBJECT)
    assert (verified.audience, verified.jti) == ("clearance", "run-42")
    assert verified.claims["repository_owner"] == "acme"
    assert verified.expires_at.tzinfo == UTC and verified.issued_at is not None
    assert verified.issued_at.tzinfo == UTC
    assert verified.expires_at - verified.issued_at == timedelta(seconds=300)
    assert abs(verified.issued_at - datetime.now(UTC)) < timedelta(seconds=10)
    with pytest.raises(TypeError):
        verified.claims["sub"] = "someone else"  # type: ignore[index]


async def test_a_valid_es256_token_is_verified(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    verified = await verifier.verify(oidc_issuer.issue(SUBJECT, alg="ES256", jti=None))

    assert verified.subject == SUBJECT and verified.jti is None


async def test_aud_may_be_a_list_and_the_accepted_value_is_reported(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, audience=["sts.amazonaws.com", "clearance"])

    assert (await verifier.verify(token)).audience == "clearance"


async def test_a_token_just_past_exp_is_accepted_within_the_leeway(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    assert (await verifier.verify(oidc_issuer.issue(SUBJECT, expires_in=-5))).subject == SUBJECT


async def test_two_entries_for_one_issuer_accept_both_audiences(
    oidc_issuer: OidcIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(
        [
            TrustedIssuer(oidc_issuer.url, frozenset({"clearance"})),
            TrustedIssuer(oidc_issuer.url, frozenset({"clearance-staging"})),
        ]
    )

    token = oidc_issuer.issue(SUBJECT, audience="clearance-staging")

    assert (await verifier.verify(token)).audience == "clearance-staging"


# time


async def test_an_expired_token_is_refused(oidc_issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await rejected(
        verifier, oidc_issuer.issue(SUBJECT, expires_in=-120), "expired", "expired at", "fresh"
    )


async def test_a_token_before_its_nbf_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, not_before=600, expires_in=900)

    await rejected(verifier, token, "not_yet_valid", "not valid before", "(nbf)")


async def test_a_token_issued_in_the_future_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    later = int(datetime.now(UTC).timestamp()) + 600
    token = oidc_issuer.issue(SUBJECT, expires_in=900, claims={"iat": later})

    await rejected(verifier, token, "not_yet_valid", "(iat)", "clock")


# audience and issuer


async def test_a_wrong_audience_is_refused_with_the_audience_to_ask_for(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, audience="sts.amazonaws.com")

    exc = await rejected(verifier, token, "wrong_audience", "'sts.amazonaws.com'")

    assert exc.detail.endswith("request the token with audience 'clearance'")


async def test_a_list_of_wrong_audiences_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, audience=["sts.amazonaws.com", "vault"])

    await rejected(verifier, token, "wrong_audience", "'vault'", "audience 'clearance'")


async def test_long_claim_values_are_cut_in_the_detail(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    exc = await rejected(verifier, oidc_issuer.issue(SUBJECT, audience="x" * 500), "wrong_audience")

    assert "x" * 100 + "…" in exc.detail and "x" * 101 not in exc.detail


async def test_an_untrusted_issuer_is_refused_without_any_request(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    async with OidcIssuer() as stranger:
        await rejected(
            verifier,
            stranger.issue(SUBJECT),
            "unknown_issuer",
            f"iss is '{stranger.url}'",
            "ask the Clearance admins",
        )
        await rejected(
            verifier,
            oidc_issuer.issue(SUBJECT, issuer=oidc_issuer.url + "/"),
            "unknown_issuer",
        )

        assert sum(stranger.fetches.values()) == 0
    assert sum(oidc_issuer.fetches.values()) == 0


async def test_the_trusted_issuers_are_read_at_each_verify(oidc_issuer: OidcIssuer) -> None:
    trusted = [TrustedIssuer(oidc_issuer.url, frozenset({"clearance"}))]
    verifier = OidcVerifier(lambda: trusted)
    try:
        await verifier.verify(oidc_issuer.issue(SUBJECT))
        trusted.clear()  # the policy was reloaded without this issuer

        await rejected(verifier, oidc_issuer.issue(SUBJECT), "unknown_issuer")
    finally:
        await verifier.close()


# keys


async def test_the_keys_are_cached(oidc_issuer: OidcIssuer, verifier: OidcVerifier) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))
    await verifier.verify(oidc_issuer.issue(SUBJECT, alg="ES256"))

    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 1)


async def test_the_keys_are_fetched_again_after_the_ttl(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))
    ticks.advance(601)

    await verifier.verify(oidc_issuer.issue(SUBJECT))

    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (2, 2)


async def test_concurrent_verifies_share_one_fetch(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    oidc_issuer.delay = 0.1

    verified = await asyncio.gather(
        *(verifier.verify(oidc_issuer.issue(f"job-{i}")) for i in range(10))
    )

    assert [v.subject for v in verified] == [f"job-{i}" for i in range(10)]
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 1)


async def test_a_rotated_key_is_fetched_once_and_accepted(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    old = oidc_issuer.issue(SUBJECT)
    await verifier.verify(old)
    oidc_issuer.rotate()
    ticks.advance(31)  # past min_refresh_interval since the first fetch

    await verifier.verify(oidc_issuer.issue(SUBJECT))

    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (1, 2)
    await rejected(verifier, old, "unknown_key", "request a new token", "rotated")
    assert oidc_issuer.jwks_fetches == 2  # the refresh guard held: no third fetch


async def test_a_key_rotated_right_after_a_fetch_is_accepted_once_the_guard_allows(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))
    oidc_issuer.rotate()
    new = oidc_issuer.issue(SUBJECT)

    await rejected(verifier, new, "unknown_key", "has kid", "request a new token")
    ticks.advance(30)

    assert (await verifier.verify(new)).subject == SUBJECT
    assert oidc_issuer.jwks_fetches == 2


async def test_random_kids_do_not_make_the_verifier_hammer_the_issuer(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))
    for _ in range(20):
        ticks.advance(1)  # 20 s in all: within the 30 s guard
        token = oidc_issuer.issue(SUBJECT, kid=uuid.uuid4().hex)
        await rejected(verifier, token, "unknown_key", "has kid '", "request a new token")
    assert oidc_issuer.jwks_fetches == 1

    ticks.advance(11)
    for _ in range(5):
        await rejected(verifier, oidc_issuer.issue(SUBJECT, kid=uuid.uuid4().hex), "unknown_key")

    assert oidc_issuer.jwks_fetches == 2
    assert oidc_issuer.discovery_fetches == 1


async def test_an_alg_that_does_not_fit_the_kid_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    # Signed with the EC key, but naming the RSA key: the JWK's kty must fit the alg.
    token = oidc_issuer.issue(SUBJECT, alg="ES256", kid=oidc_issuer.kid("RS256"))

    await rejected(verifier, token, "alg_not_allowed", "ES256", "kty 'RSA'")


async def test_a_token_signed_by_another_key_under_a_trusted_kid_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    async with OidcIssuer() as impostor:
        impostor.rotate()  # its own keys, not the shared first pair
        token = impostor.issue(SUBJECT, issuer=oidc_issuer.url, kid=oidc_issuer.kid())

        await rejected(verifier, token, "bad_signature", "as the issuer gave it")


# forged and tampered


async def test_alg_none_is_refused_before_any_request(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    await rejected(
        verifier, oidc_issuer.forge_none(SUBJECT), "alg_not_allowed", "'none'", "RS256", "ES256"
    )
    assert sum(oidc_issuer.fetches.values()) == 0


async def test_hs256_signed_with_the_public_key_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))  # the keys are at hand, and still:

    await rejected(
        verifier,
        oidc_issuer.forge_hs256_with_public_key(SUBJECT),
        "alg_not_allowed",
        "'HS256'",
        "accepts only tokens signed with RS256",
    )


async def test_a_changed_payload_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = with_payload(oidc_issuer.issue("repo:acme/sandbox:ref:refs/heads/x"), sub=SUBJECT)

    await rejected(verifier, token, "bad_signature", "signature does not verify")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_changed_signature_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, alg: str
) -> None:
    header, payload, signature = oidc_issuer.issue(SUBJECT, alg=alg).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    token = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"

    await rejected(verifier, token, "bad_signature", "send the token exactly")


async def test_an_empty_signature_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    header, payload, _ = oidc_issuer.issue(SUBJECT).split(".")

    await rejected(verifier, f"{header}.{payload}.", "bad_signature")


# claims


@pytest.mark.parametrize(
    ("claim", "says"),
    [
        ("sub", "no sub claim"),
        ("exp", "no exp claim"),
        ("aud", "with audience 'clearance'"),
        ("iss", "no iss claim"),
    ],
)
async def test_a_missing_claim_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, claim: str, says: str
) -> None:
    token = oidc_issuer.issue(SUBJECT, claims={claim: None})

    await rejected(verifier, token, "missing_claim", says)


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": "tomorrow"}, "exp is 'tomorrow', not a time"),
        ({"exp": True}, "exp is True"),
        ({"nbf": 1e300}, "nbf is"),
        ({"sub": 42}, "sub is 42, not a string"),
        ({"aud": {"clearance": 1}}, "not a string or a list of strings"),
        ({"jti": ["a"]}, "jti is"),
    ],
)
async def test_claims_of_the_wrong_type_are_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, claims: dict[str, Any], says: str
) -> None:
    await rejected(verifier, oidc_issuer.issue(SUBJECT, claims=claims), "malformed", says)


# shape


async def test_an_oversize_token_is_refused_unparsed(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT, claims={"padding": "x" * 17_000})

    await rejected(verifier, token, "malformed", "larger than 16384 bytes")
    assert sum(oidc_issuer.fetches.values()) == 0


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "not a signed JWT"),
        ("not-a-token", "three base64url parts"),
        ("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "without 'Bearer '"),
        ("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted, JWE"),
        ("a.b", "three base64url parts"),
        ("!!!.???.***", "three base64url parts"),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0=.c2ln", "three base64url parts"),
        ("bm90IGpzb24.eyJzdWIiOiJ4In0.c2ln", "header is not one Clearance can read"),
        ("eyJhbGciOiJSUzI1NiIsImtpZCI6MX0.eyJzdWIiOiJ4In0.c2ln", "string kid"),
        ("eyJhbGciOiJSUzI1NiJ9.WzEsMl0.c2ln", "payload is not a JSON object"),
        ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "payload is not a JSON object"),
    ],
)
async def test_garbage_is_refused_as_malformed(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, token: str, says: str
) -> None:
    await rejected(verifier, token, "malformed", says)
    assert sum(oidc_issuer.fetches.values()) == 0


async def test_critical_header_extensions_are_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","crit":["exp"],"exp":1}').rstrip(b"=")
    _, payload, signature = oidc_issuer.issue(SUBJECT).split(".")

    await rejected(verifier, f"{header.decode()}.{payload}.{signature}", "malformed", "crit")


# the issuer's side


async def test_an_issuer_answering_errors_is_unreachable(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    oidc_issuer.available = False

    await rejected(
        verifier,
        oidc_issuer.issue(SUBJECT),
        "issuer_unreachable",
        "HTTP 503",
        "try again",
        status=503,
    )


async def test_an_issuer_that_is_down_is_unreachable(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier
) -> None:
    token = oidc_issuer.issue(SUBJECT)
    await oidc_issuer.stop()

    await rejected(verifier, token, "issuer_unreachable", "could not be fetched", status=503)


async def test_a_slow_issuer_times_out(
    oidc_issuer: OidcIssuer, make_verifier: MakeVerifier
) -> None:
    oidc_issuer.delay = 1.0
    verifier = make_verifier(http_timeout=0.2)

    await rejected(
        verifier, oidc_issuer.issue(SUBJECT), "issuer_unreachable", "timed out", status=503
    )


async def test_an_issuer_that_is_down_is_asked_again_only_after_the_guard(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    oidc_issuer.available = False
    for _ in range(5):
        await rejected(verifier, oidc_issuer.issue(SUBJECT), "issuer_unreachable", status=503)
    assert oidc_issuer.discovery_fetches == 1

    oidc_issuer.available = True
    ticks.advance(30)

    assert (await verifier.verify(oidc_issuer.issue(SUBJECT))).subject == SUBJECT
    assert (oidc_issuer.discovery_fetches, oidc_issuer.jwks_fetches) == (2, 1)


async def test_known_keys_outlive_a_failed_refresh(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, ticks: Ticks
) -> None:
    await verifier.verify(oidc_issuer.issue(SUBJECT))
    oidc_issuer.available = False
    ticks.advance(601)  # past the ttl: a refresh is due and fails

    assert (await verifier.verify(oidc_issuer.issue(SUBJECT))).subject == SUBJECT
    # an unknown kid while the issuer is away may be a real new key: try again later
    await rejected(
        verifier, oidc_issuer.issue(SUBJECT, kid="new"), "issuer_unreachable", status=503
    )

    ticks.advance(3600)  # keys this old are no longer trusted without a fresh fetch
    await rejected(verifier, oidc_issuer.issue(SUBJECT), "issuer_unreachable", status=503)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"jwks_uri": "http://keys.example.com/jwks"}, "jwks_uri"),
        ({"jwks_uri": None}, "has no jwks_uri"),
        ({"issuer": "https://token.actions.githubusercontent.com"}, "names another issuer"),
    ],
)
async def test_a_discovery_document_that_cannot_be_trusted_is_refused(
    oidc_issuer: OidcIssuer, verifier: OidcVerifier, overrides: dict[str, Any], says: str
) -> None:
    oidc_issuer.discovery_overrides = overrides

    await rejected(verifier, oidc_issuer.issue(SUBJECT), "issuer_unreachable", says, status=503)
    assert oidc_issuer.jwks_fetches == 0


async def test_a_plain_http_issuer_elsewhere_is_never_asked(make_verifier: MakeVerifier) -> None:
    async with OidcIssuer() as issuer:
        # the token claims an http issuer off this machine; the policy (wrongly) trusts it
        stranger = "http://issuer.example.com"
        verifier = make_verifier([TrustedIssuer(stranger, frozenset({"clearance"}))])

        await rejected(
            verifier,
            issuer.issue(SUBJECT, issuer=stranger),
            "issuer_unreachable",
            "not an https URL",
            status=503,
        )


# the session


async def test_a_session_passed_in_is_left_open(oidc_issuer: OidcIssuer) -> None:
    async with aiohttp.ClientSession() as session:
        verifier = OidcVerifier(
            lambda: [TrustedIssuer(oidc_issuer.url, frozenset({"clearance"}))], session
        )
        await verifier.verify(oidc_issuer.issue(SUBJECT))
        await verifier.close()

        assert not session.closed
