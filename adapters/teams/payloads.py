"""What a well-formed activity is, decided on the JSON body before botbuilder or anything of
ours reads it.

The shapes are the Bot Framework activity schema, reduced to what is read here or by
botbuilder (ids, where to reply, who sent it, an invoke's action); everything else passes
as it is. A malformed activity is refused (400) before its token is checked or anything
is looked up, so junk costs a parse. A person's typed text (a message, a card's inputs)
may be anything they typed: whether it can be stored is the middleware's to refuse
(``adapters.teams.middleware``) with an answer; anywhere else a string that cannot be
stored is junk.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from engine.text import Path, unstorable_path

# How deep an activity may nest (an Adaptive Card's data is shallow).
_MAX_DEPTH = 32
# The one invoke the app declares: Action.Execute on its cards.
CARD_ACTION = "adaptiveCard/action"

# Ids travel on in URLs and headers of the replies: one word, no whitespace.
Id = Annotated[str, StringConstraints(pattern=r"^\S+$", max_length=1024)]
# Every reply goes to the activity's serviceUrl: it has to be one.
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+", max_length=2048)]


class Malformed(ValueError):
    """Not an activity this bot can take; the reason is for the log."""


class _Shape(BaseModel):
    # The schema's names are camelCase; only what is read is described.
    model_config = ConfigDict(extra="allow", strict=True, alias_generator=to_camel)


class _Account(_Shape):
    id: Id
    name: str | None = None
    aad_object_id: str | None = None


class _Conversation(_Shape):
    id: Id
    # Which it is decides what a message means (a request in a 1:1 chat, an admin command
    # elsewhere): only Teams' own kinds.
    conversation_type: Literal["personal", "channel", "groupChat"] | None = None
    tenant_id: str | None = None
    is_group: bool | None = None


class _Ref(_Shape):
    id: str | None = None


class _ChannelData(_Shape):
    tenant: _Ref | None = None
    team: _Ref | None = None
    channel: _Ref | None = None


class _Entity(_Shape):
    type: str


class _Activity(_Shape):
    type: Id
    id: str | None = None
    service_url: Url
    channel_id: Id
    conversation: _Conversation
    recipient: _Account
    sender: _Account = Field(alias="from")  # every activity this bot acts on has one
    channel_data: _ChannelData | None = None
    text: str | None = None
    entities: list[_Entity] | None = None
    members_added: list[_Account] | None = None
    members_removed: list[_Account] | None = None
    action: str | None = None
    name: str | None = None
    reply_to_id: str | None = None


class _Action(_Shape):
    type: str
    verb: str
    data: dict[str, Any] | None = None


class _CardAction(_Shape):
    action: _Action
    trigger: str | None = None


def check(body: Any) -> None:
    """Raise Malformed unless ``body`` is an activity of a shape this bot can take."""
    if not isinstance(body, dict):
        raise Malformed("not a JSON object")
    try:
        where = unstorable_path(body, _is_typed, _MAX_DEPTH)
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    if where is not None:
        raise Malformed(f"text that cannot be stored at {'.'.join(where)[:120]!r}")
    try:
        activity = _Activity.model_validate(body)
        if activity.type == "invoke":
            if activity.name != CARD_ACTION:
                raise Malformed(f"not an invoke this bot takes: {str(activity.name)[:80]!r}")
            _CardAction.model_validate(body.get("value"))
    except ValidationError as exc:
        error = exc.errors()[0]
        place = ".".join(str(p) for p in error["loc"])
        raise Malformed(f"{place[:120]!r} {error['msg']}") from None


def typed_text(text: object, value: object) -> dict[str, str]:
    """What a person typed into an activity (its ``text`` and ``value``): a message's
    ``text``, a card's inputs by their ids (which arrive in the action's data)."""
    typed: dict[str, str] = {}
    if isinstance(text, str):
        typed["text"] = text
    action = value.get("action") if isinstance(value, dict) else None
    data = action.get("data") if isinstance(action, dict) else None
    for key, item in data.items() if isinstance(data, dict) else ():
        if isinstance(item, str):
            typed[str(key)] = item
    return typed


def _is_typed(path: Path) -> bool:
    """Whether ``path`` is a place ``typed_text`` reads (the two must agree)."""
    return path == ("text",) or (len(path) == 4 and path[:3] == ("value", "action", "data"))


__all__ = ["CARD_ACTION", "Malformed", "check", "typed_text"]
