"""What the API refuses: a token it cannot verify (401), a caller that may not (403), a
body or query it cannot read (400/413/415/422), too many calls (429). Each refusal is a
problem document that says what to fix, nothing is written for it, and nothing is logged
above INFO (no 5xx, no traceback)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from sqlalchemy import text

from adapters.api.problems import PROBLEM_TYPE
from tests.api.conftest import SUBJECT, ApiWorld

BODY = {
    "resource": "prod-deploy-role",
    "duration": "30m",
    "justification": "deploying release 42 to production",
}
_TABLES = ("requests", "audit_events", "token_uses", "outbox", "api_tokens")


async def _rows(api: ApiWorld) -> dict[str, int]:
    async with api.components.database.transaction() as session:
        return {
            table: int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
            for table in _TABLES
        }


def _is_problem(status: int, body: Any, headers: dict[str, str], expected: int) -> str:
    """The problem's code, once it is checked to be a well-formed problem with ``expected``."""
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM_TYPE), headers
    assert isinstance(body, dict) and body["status"] == expected
    assert body["detail"] and body["title"] and body["type"].startswith("urn:clearance:problem:")
    return str(body["code"])


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def _nothing_loud(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def test_a_token_that_cannot_be_verified_is_401_and_changes_nothing(
    api: ApiWorld, quiet_log: pytest.LogCaptureFixture
) -> None:
    issuer = api.issuer
    claims = {"repository_owner": "acme"}
    cases: dict[str, tuple[dict[str, str], str]] = {
        "no header": ({}, "no_token"),
        "basic auth": ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "no_token"),
        "bearer and nothing": ({"Authorization": "Bearer "}, "no_token"),
        "not a JWT": ({"Authorization": "Bearer not-a-jwt"}, "malformed"),
        "expired": ({"Authorization": f"Bearer {api.token(expires_in=-600)}"}, "expired"),
        "not yet valid": (
            {"Authorization": f"Bearer {api.token(not_before=3600)}"},
            "not_yet_valid",
        ),
        "other audience": (
            {"Authorization": f"Bearer {api.token(audience='someone-else')}"},
            "wrong_audience",
        ),
        "other issuer": (
            {"Authorization": f"Bearer {api.token(issuer='https://evil.example.com')}"},
            "unknown_issuer",
        ),
        "alg none": (
            {"Authorization": f"Bearer {issuer.forge_none(SUBJECT, claims=claims)}"},
            "alg_not_allowed",
        ),
        "HS256 keyed with the public key": (
            {
                "Authorization": "Bearer "
                + issuer.forge_hs256_with_public_key(SUBJECT, claims=claims)
            },
            "alg_not_allowed",
        ),
        # Not among the issuer's keys, even once they are fetched again.
        "unknown kid": ({"Authorization": f"Bearer {api.token(kid='retired-key')}"}, "unknown_key"),
        "tampered payload": (
            {"Authorization": f"Bearer {_tampered(api.token())}"},
            "bad_signature",
        ),
        "unknown personal token": (
            {"Authorization": "Bearer clr_abcdefabcdef_secret"},
            "bad_token",
        ),
        "personal token without secret": ({"Authorization": "Bearer clr_"}, "bad_token"),
    }
    before = await _rows(api)
    for name, (headers, code) in cases.items():
        status, body, answered = await api.call(
            "POST", "/api/v1/requests", body=BODY, headers=headers
        )
        assert _is_problem(status, body, answered, 401) == code, name
    assert await _rows(api) == before
    _nothing_loud(quiet_log)


def _tampered(token: str) -> str:
    """The token's own signature over a payload that names another repository."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["repository"] = "acme/other"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{changed}.{signature}"


async def test_a_verified_caller_that_may_not_is_403_and_changes_nothing(
    api: ApiWorld, quiet_log: pytest.LogCaptureFixture
) -> None:
    cases: dict[str, tuple[str, dict[str, str], str]] = {
        # Verified by the issuer, but no workload of the policy is this subject or claim.
        "other repository": (
            api.token(subject="repo:evil/payments:ref:refs/heads/main"),
            BODY,
            "no_workload",
        ),
        "other owner claim": (api.token(claims={"repository_owner": "evil"}), BODY, "no_workload"),
        # The workload may ask only for what lists it by name.
        "a resource it is not listed on": (
            api.token(),
            {**BODY, "resource": "staging-deploy"},
            "workload_resource",
        ),
        # Its principal is fixed by the policy: it cannot ask for someone else's account.
        "someone else's account": (
            api.token(),
            {**BODY, "principal": "alice@example.com"},
            "principal_not_allowed",
        ),
    }
    before = await _rows(api)
    for name, (token, body, code) in cases.items():
        status, answer, headers = await api.call("POST", "/api/v1/requests", token, body)
        _is_problem(status, answer, headers, 403)
        assert code in [answer["code"], *(e["code"] for e in answer.get("errors", ()))], name
    assert await _rows(api) == before
    _nothing_loud(quiet_log)


async def test_a_token_files_once_and_a_refused_one_may_file_the_corrected_request(
    api: ApiWorld,
) -> None:
    token = api.token()
    # Refused for what it says (too short a justification): nothing filed, the jti kept free.
    status, answer, headers = await api.call(
        "POST", "/api/v1/requests", token, {**BODY, "justification": "x"}
    )
    assert _is_problem(status, answer, headers, 422)
    assert answer["errors"][0]["field"] == "justification"
    status, made, _ = await api.call("POST", "/api/v1/requests", token, BODY)
    assert status == 201, made
    after = await _rows(api)
    # The same token again, even with another body: a replay, refused, nothing more filed.
    for body in (BODY, {**BODY, "justification": "a second deploy of release 42"}):
        status, answer, headers = await api.call("POST", "/api/v1/requests", token, body)
        assert _is_problem(status, answer, headers, 403) == "token_replayed"
        status, answer, headers = await api.call(
            "POST", f"/api/v1/requests/{made['id']}/cancel", token
        )
        assert _is_problem(status, answer, headers, 403) == "token_replayed"
    assert await _rows(api) == after
    # Reading and waiting may reuse it.
    status, view, _ = await api.call("GET", f"/api/v1/requests/{made['id']}", token)
    assert status == 200 and view["status"] == "pending"


async def test_a_body_or_query_it_cannot_read_is_4xx_naming_what_to_fix(
    api: ApiWorld, quiet_log: pytest.LogCaptureFixture
) -> None:
    json_ = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, Any], int, str, str | None]] = [
        ("not JSON", {"raw": b"{resource: prod", "headers": json_}, 400, "malformed", None),
        ("not UTF-8", {"raw": b"\xff\xfe{}", "headers": json_}, 400, "malformed", None),
        ("a list", {"body": [BODY]}, 400, "malformed", None),
        ("a string", {"body": "prod-deploy-role"}, 400, "malformed", None),
        ("no body", {"headers": json_}, 400, "malformed", None),
        (
            "form-encoded",
            {
                "raw": b"resource=prod-deploy-role",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
            None,
        ),
        ("too large", {"body": {**BODY, "justification": "x" * 20_000}}, 413, "too_large", None),
        ("unknown field", {"body": {**BODY, "approver": "me"}}, 422, "unknown_field", "approver"),
        (
            "no resource",
            {"body": {"justification": BODY["justification"]}},
            422,
            "required",
            "resource",
        ),
        (
            "no justification",
            {"body": {"resource": "prod-deploy-role"}},
            422,
            "required",
            "justification",
        ),
        ("resource a number", {"body": {**BODY, "resource": 7}}, 422, "not_a_string", "resource"),
        (
            "duration a list",
            {"body": {**BODY, "duration": ["1h"]}},
            422,
            "not_a_string",
            "duration",
        ),
        (
            "a NUL",
            {"body": {**BODY, "justification": "deploy\x00ing release 42"}},
            422,
            "unstorable",
            "justification",
        ),
        (
            "a lone surrogate",
            {
                "raw": b'{"resource": "prod-deploy-role", '
                b'"justification": "deploying \\ud800 release 42"}',
                "headers": json_,
            },
            422,
            "unstorable",
            "justification",
        ),
        (
            "unknown resource",
            {"body": {**BODY, "resource": "no-such-thing"}},
            422,
            "unknown_resource",
            "resource",
        ),
        ("too long", {"body": {**BODY, "duration": "9h"}}, 422, "duration_over_max", "duration"),
        ("not a duration", {"body": {**BODY, "duration": "soon"}}, 422, "bad_duration", "duration"),
    ]
    before = await _rows(api)
    for name, kw, expected, code, field in cases:
        status, answer, headers = await api.call("POST", "/api/v1/requests", api.token(), **kw)
        assert _is_problem(status, answer, headers, expected) == code, (name, answer)
        if field is not None:
            assert [e["field"] for e in answer["errors"]] == [field], (name, answer)
            assert all(e["message"] for e in answer["errors"])
    assert await _rows(api) == before
    _nothing_loud(quiet_log)


async def test_a_query_or_id_it_cannot_read_is_4xx(
    api: ApiWorld, quiet_log: pytest.LogCaptureFixture
) -> None:
    status, made, _ = await api.call("POST", "/api/v1/requests", api.token(), BODY)
    assert status == 201
    queries = {
        "abc": "bad_timeout",
        "-1": "bad_timeout",
        "61": "bad_timeout",
        "nan": "bad_timeout",
        "1e999": "bad_timeout",
    }
    for timeout, code in queries.items():
        status, answer, headers = await api.call(
            "GET", f"/api/v1/requests/{made['id']}/wait?timeout={timeout}", api.token()
        )
        assert _is_problem(status, answer, headers, 422) == code, timeout
    # Ids that are not ids are simply not found (nothing to probe, nothing looked up).
    for bad in ("R-NOPE", "%00", "x" * 200, "%E2%80%AE-R", "R-1;DROP"):
        status, answer, headers = await api.call("GET", f"/api/v1/requests/{bad}", api.token())
        assert _is_problem(status, answer, headers, 404) == "unknown_request", bad
    _nothing_loud(quiet_log)


async def test_too_many_calls_are_429_with_retry_after(api: ApiWorld) -> None:
    # The workload's policy entry allows 20 calls a minute.
    token = api.token()
    for _ in range(20):
        status, _, _ = await api.call("GET", "/api/v1/requests/R-NOPE", token)
        assert status == 404
    before = await _rows(api)
    status, answer, headers = await api.call("POST", "/api/v1/requests", api.token(), BODY)
    assert _is_problem(status, answer, headers, 429) == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "20 calls per 60 s" in answer["detail"]
    assert await _rows(api) == before
