"""API refusals as RFC 9457 problem documents (``application/problem+json``).

One home for "which refusal is which HTTP status": a caller that cannot be verified gets
401, one that may not do this 403, an id it may not see 404, a request that cannot change
any more 409, fields that do not validate 422 (each field with what to fix), too many calls
429 with Retry-After.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from bot.api_auth import ApiProblem
from engine.refusals import Refused
from message_templates import refusal_text

PROBLEM_TYPE = "application/problem+json"
TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    503: "Unavailable",
}
# Refusals that mean "you may not", not "fix this field".
_FORBIDDEN = frozenset(
    {
        "not_allowed",
        "workload_resource",
        "workload_unknown",
        "principal_not_allowed",
        "not_requester",
        "requester_not_listed",
    }
)
_STATUS = {"unknown_request": 404, "not_cancellable": 409, "busy": 503}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: Iterable[Mapping[str, str]] = (),
    retry_after: int | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"urn:clearance:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(
        status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers
    )


def from_api_problem(exc: ApiProblem) -> web.Response:
    return problem(exc.status, exc.code, exc.detail, errors=exc.errors, retry_after=exc.retry_after)


def from_refused(exc: Refused) -> web.Response:
    codes = [r.code for r in exc.refusals]
    status = next((_STATUS[c] for c in codes if c in _STATUS), None)
    if status is None:
        status = 403 if any(c in _FORBIDDEN for c in codes) else 422
    errors = [
        {"field": r.field or "", "code": r.code, "message": refusal_text(r)} for r in exc.refusals
    ]
    return problem(status, codes[0], refusal_text(exc), errors=errors)
