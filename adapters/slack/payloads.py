"""What a well-formed Slack delivery is, decided on the raw body before bolt or anything of
ours looks at it.

The order is Slack's own: the signature over the raw bytes first (an unsigned request is
never parsed), then parsing, then the shape of what the listeners and bolt will read.
Each step is pure and cheap, so refusing junk costs no database query and no Slack API
call, and a burst of it cannot hold up real work.

The shapes are Slack's documented payloads, reduced to what is read here or by bolt
(ids, the clicked action, a view's state); anything else a payload holds is left alone.
A person's typed text (a command's text, a modal's inputs, a mention) may be anything
they typed: whether it can be stored is the listener middleware's to refuse, under the
input it was typed in. Everywhere else a string that cannot be stored is junk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from slack_sdk.signature import SignatureVerifier

from engine.text import Path, unstorable_path

# How deep a payload may nest: Slack's go about eight levels (a view's state is six).
_MAX_DEPTH = 32
# A form body (a slash command) has about a dozen fields.
_MAX_FORM_FIELDS = 100


class Rejected(Exception):
    """A delivery refused before it reached a listener: the HTTP status and why (for the
    log; the reason is ours, any text from the payload in it is quoted)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """A parsed, well-shaped delivery: what it is and which listener it is for.

    ``kind`` is command, action, view, event, or one bolt answers by itself
    (url_verification, ssl_check); ``name`` the command, action id, callback id or event
    type; for an action, its block and whether it was clicked inside a modal.
    """

    kind: str
    name: str
    body: dict[str, Any]
    block_id: str = ""
    in_view: bool = False


def verified(verifier: SignatureVerifier, raw: bytes, headers: Mapping[str, str]) -> bool:
    """Whether Slack signed this body (v0 HMAC, within bolt's 5-minute window)."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    # The verifier reads the timestamp with int() and the body as UTF-8, raising on
    # anything else; neither can be Slack's, so both are simply not signed.
    if not timestamp.isascii() or not timestamp.isdigit() or not signature:
        return False
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return verifier.is_valid(body, timestamp, signature)


def read(raw: bytes, content_type: str) -> Delivery:
    """The delivery in a verified body; raises Rejected (400) for anything malformed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "not UTF-8") from None
    body = _parse(text, content_type)
    kind = _kind(body)
    _check_strings(body, kind)
    return _shaped(kind, body)


def typed_text(body: Mapping[str, Any]) -> dict[str, str]:
    """What a person typed into this delivery, by the input it belongs to: a modal's
    inputs by block id, a command's or a mention's ``text``."""
    typed: dict[str, str] = {}
    if "command" in body and isinstance(body.get("text"), str):
        typed["text"] = body["text"]
    event = body.get("event")
    if isinstance(event, dict) and isinstance(event.get("text"), str):
        typed["text"] = event["text"]
    view = body.get("view")
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    for block, inputs in (values or {}).items():
        for entry in inputs.values() if isinstance(inputs, dict) else ():
            if isinstance(entry, dict) and isinstance(entry.get("value"), str):
                typed[str(block)] = entry["value"]
    return typed


def _is_typed(path: Path, kind: str) -> bool:
    """Whether ``path`` is a place ``typed_text`` reads (the two must agree)."""
    if kind == "command" and path == ("text",):
        return True
    if path == ("event", "text"):
        return True
    return len(path) == 6 and path[:3] == ("view", "state", "values") and path[5] == "value"


# --- parsing --------------------------------------------------------------------------------


def _parse(text: str, content_type: str) -> dict[str, Any]:
    """Events come as JSON; commands as a form; interactivity as a form whose ``payload``
    field is JSON. Strictly: a field without ``=``, an escape that is not UTF-8 or a
    field given twice is not a form Slack sends."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return _json_object(text)
    try:
        fields = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is one
        raise Rejected(400, f"not a form: {type(exc).__name__}") from None
    form = dict(fields)
    if len(form) != len(fields):
        raise Rejected(400, "a form field is given twice")
    if "payload" in form:
        return _json_object(form["payload"])
    return form


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise Rejected(400, "not JSON") from None
    if not isinstance(value, dict):
        raise Rejected(400, "not a JSON object")
    return value


def _kind(body: dict[str, Any]) -> str:
    if "command" in body:
        return "command"
    if "ssl_check" in body:
        return "ssl_check"
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise Rejected(400, "no payload type")
    return {"block_actions": "action", "view_submission": "view", "event_callback": "event"}.get(
        kind, kind
    )


def _check_strings(body: dict[str, Any], kind: str) -> None:
    try:
        where = unstorable_path(body, lambda path: _is_typed(path, kind), _MAX_DEPTH)
    except ValueError as exc:
        raise Rejected(400, str(exc)) from None
    if where is not None:
        raise Rejected(400, f"text that cannot be stored at {'.'.join(where)[:120]!r}")


# --- shapes ---------------------------------------------------------------------------------

# Ids travel on in API calls: one word, no whitespace.
Id = Annotated[str, StringConstraints(pattern=r"^\S+$", max_length=255)]
# Where ``respond`` posts: it has to be a URL to post to.
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+", max_length=2048)]


class _Shape(BaseModel):
    # Only what is read is described; the rest of Slack's payload passes as it is.
    model_config = ConfigDict(extra="allow", strict=True)


class _User(_Shape):
    id: Id


class _Option(_Shape):
    value: str


class _Input(_Shape):
    """One input's state in a view."""

    type: str
    value: str | None = None
    selected_option: _Option | None = None
    selected_options: list[_Option] | None = None


class _State(_Shape):
    values: dict[str, dict[str, _Input]]


class _Block(_Shape):
    block_id: str | None = None


class _View(_Shape):
    id: Id
    type: str  # bolt tells a workflow step's view by it
    hash: str
    callback_id: str
    private_metadata: str = ""
    state: _State
    blocks: list[_Block] = []


class _Action(_Shape):
    type: str
    action_id: Id
    block_id: str
    value: str | None = None
    selected_option: _Option | None = None
    selected_options: list[_Option] | None = None


class _ResponseUrl(_Shape):
    response_url: Url


class _Envelope(_Shape):
    # bolt keeps these for ``respond`` and opening modals.
    response_url: Url | None = None
    response_urls: list[_ResponseUrl] | None = None
    trigger_id: str | None = None


class _Command(_Envelope):
    command: Annotated[str, StringConstraints(pattern=r"^/\S+$")]
    user_id: Id
    trigger_id: Id
    text: str = ""


class _BlockActions(_Envelope):
    type: Literal["block_actions"]
    user: _User
    trigger_id: Id
    actions: Annotated[list[_Action], Field(min_length=1)]
    view: _View | None = None


class _ViewSubmission(_Envelope):
    type: Literal["view_submission"]
    user: _User
    view: _View


class _Event(_Shape):
    type: Id
    user: Id | None = None


class _EventCallback(_Envelope):
    type: Literal["event_callback"]
    event_id: Id
    event: _Event


class _Mention(_Event):
    user: Id
    channel: Id
    ts: Id
    text: str
    thread_ts: str | None = None


class _HomeOpened(_Event):
    user: Id
    tab: str = "home"


class _UrlVerification(_Shape):
    type: Literal["url_verification"]
    challenge: str


# What the events the listeners take hold; other events need only a type.
_EVENTS: dict[str, type[_Event]] = {"app_mention": _Mention, "app_home_opened": _HomeOpened}
_SHAPES: dict[str, type[_Shape]] = {
    "command": _Command,
    "action": _BlockActions,
    "view": _ViewSubmission,
    "event": _EventCallback,
    "url_verification": _UrlVerification,
}


def _shaped(kind: str, body: dict[str, Any]) -> Delivery:
    shape = _SHAPES.get(kind)
    if shape is None:  # ssl_check, or a kind no listener takes (a shortcut, view_closed)
        return Delivery(kind, "", body)
    try:
        model = shape.model_validate(body)
        if isinstance(model, _EventCallback) and model.event.type in _EVENTS:
            _EVENTS[model.event.type].model_validate(body["event"])
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise Rejected(400, f"{kind}: {where[:120]!r} {error['msg']}") from None
    if isinstance(model, _Command):
        return Delivery(kind, model.command, body)
    if isinstance(model, _BlockActions):
        action = model.actions[0]  # bolt routes a click by its first action
        return Delivery(kind, action.action_id, body, action.block_id, model.view is not None)
    if isinstance(model, _ViewSubmission):
        return Delivery(kind, model.view.callback_id, body)
    if isinstance(model, _EventCallback):
        return Delivery(kind, model.event.type, body)
    return Delivery(kind, "", body)


__all__ = ["Delivery", "Rejected", "read", "typed_text", "verified"]
