"""The shapes the API accepts, checked before anything is looked up: a malformed body
is a 4xx that names what is wrong, never a 5xx."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bot.api import Submission
from bot.api_auth import ApiProblem
from engine.text import storable

MAX_BODY = 16 * 1024
# Longest value per field; justification and ticket are bounded by the policy's rules
# (and worded by the engine), so only the whole body bounds them here.
_FIELDS = {
    "resource": 64,
    "justification": MAX_BODY,
    "duration": 32,
    "ticket": MAX_BODY,
    "principal": 320,
}
_REQUIRED = ("resource", "justification")


def bad(detail: str, code: str = "malformed", field: str | None = None) -> ApiProblem:
    errors = ({"field": field, "code": code, "message": detail},) if field else ()
    return ApiProblem(400 if field is None else 422, code, detail, errors=errors)


def submission(raw: bytes, content_type: str) -> Submission:
    """A request body: a JSON object of strings (resource, justification required)."""
    if content_type != "application/json":
        raise ApiProblem(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object with resource, duration and justification")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise bad(
            f"unknown field {', '.join(repr(k)[:40] for k in unknown[:5])}; "
            f"the fields are {', '.join(_FIELDS)}",
            "unknown_field",
            str(unknown[0])[:40],
        )
    values: dict[str, str] = {}
    for name, limit in _FIELDS.items():
        value = data.get(name)
        if value is None:
            if name in _REQUIRED:
                raise bad(f"{name} is required", "required", name)
            continue
        if not isinstance(value, str):
            raise bad(f"{name} must be a string", "not_a_string", name)
        if len(value) > limit:
            raise bad(f"{name} is longer than {limit} characters", "too_long", name)
        if not storable(value):
            raise bad(
                f"{name} holds characters that cannot be stored (NUL, lone surrogates)",
                "unstorable",
                name,
            )
        values[name] = value
    return Submission(**values)


def wait_timeout(text: str | None) -> timedelta:
    """``?timeout=`` in seconds (default 30, 0 to 60)."""
    if text is None or text == "":
        return timedelta(seconds=30)
    try:
        seconds = float(text)
    except ValueError:
        raise bad(
            "timeout must be a number of seconds, e.g. timeout=30", "bad_timeout", "timeout"
        ) from None
    if not 0 <= seconds <= 60 or seconds != seconds:
        raise bad("timeout must be between 0 and 60 seconds", "bad_timeout", "timeout")
    return timedelta(seconds=seconds)


def request_id(text: str) -> str:
    """A request id from the path; anything else is simply not found."""
    return (
        text if 3 <= len(text) <= 32 and text.isascii() and text.replace("-", "").isalnum() else ""
    )
