"""Every message Clearance shows is a jinja2 template here; Python passes data, never wording.

``render(platform, name, data)`` renders ``<platform>/<name>.<ext>.j2``: ``cli`` is plain
text, ``slack`` is Block Kit JSON and ``teams`` Adaptive Card JSON (user text is escaped
by the filters those templates use). ``shared/`` holds plain-text wording every surface
uses, such as why something was refused (``refusal_text``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2

from engine.refusals import Refusal, Refused

_EXTENSIONS = {"cli": "txt", "slack": "json", "teams": "json", "shared": "txt"}


def mrkdwn(value: object) -> str:
    """Slack mrkdwn-escape user text: ``<!channel>``, ``<@U1>``, ``<https://x|y>`` stay inert.

    Slack's documented escaping is exactly &, < and >; with them escaped no mention,
    broadcast or link can be formed from the text.
    """
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ASCII punctuation that Adaptive Card markdown (a CommonMark subset), Teams' own extras or
# the DATE()/TIME() functions give a meaning: emphasis, links, lists, headings, code,
# HTML-like tags (<at> mentions), entities (&lt;) and {{DATE(...)}}. CommonMark shows a
# backslash-escaped ASCII punctuation character literally, so escaping all of them is safe.
_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-!|~&=")
# "1. text" or "1) text" starts a numbered list; the ")" is escaped above, the "." here
# (only after a digit, so ordinary sentences and e-mail addresses stay readable).
_NUMBERED_DOT = re.compile(r"(?<=[0-9])\.")


def markdown(value: object) -> str:
    """Adaptive Card (Teams) TextBlock markdown-escape: user text shows as typed.

    Escapes every character that could start markup (``**b**``, ``_i_``, ``[a](b)``,
    ``<at>x</at>``, ``# h``, ``- item``, ``1. item``, ``&lt;``, ``{{DATE(...)}}``) with a
    backslash, so the text can form no emphasis, link, list, mention or date function.
    """
    out = "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(value))
    return _NUMBERED_DOT.sub(r"\\.", out)


def one_line(value: object) -> str:
    """Plain text on one line: every run of whitespace (newlines too) becomes one space."""
    return " ".join(str(value).split())


def byte_size(value: object) -> int:
    """UTF-8 size of rendered text: templates spend it against Teams' ~28 KB message limit."""
    return len(str(value).encode("utf-8"))


_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def slack_who(person: Mapping[str, Any] | None) -> str:
    """A Slack mention for a directory person with a well-formed Slack id, else their
    escaped name: a malformed id from the directory can never become markup."""
    if not person:
        return "someone"
    slack_id = person.get("slack_id")
    if isinstance(slack_id, str) and _SLACK_USER_ID.match(slack_id):
        return f"<@{slack_id}>"
    return mrkdwn(person.get("name") or person.get("email") or "someone")


def json_string(value: object) -> str:
    """A JSON string literal (with quotes), for placing any value inside a JSON template."""
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def clip(value: object, limit: int) -> str:
    """At most ``limit`` characters, ending in an ellipsis when cut."""
    text = str(value)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def slack_date(ts: float | int | None, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A Slack date token: shown in each reader's own time zone, with a UTC fallback."""
    if ts is None:
        return "-"
    fallback = datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{fmt}|{fallback}>"


def teams_mri(teams_id: str) -> str:
    """A Teams user id as an MRI, the form ``refresh.userIds`` takes.

    A directory holds either the bot-scoped id from activities (``29:…``, already an MRI)
    or the Entra object id, whose MRI is ``8:orgid:<object id>``.
    """
    return teams_id if teams_id.startswith(("29:", "8:")) else f"8:orgid:{teams_id}"


def teams_date(ts: float | int | None) -> str:
    """Adaptive Card DATE()/TIME() functions: Teams shows them in each reader's own time zone.

    Only TextBlock text evaluates them; the functions need strict RFC 3339 UTC times.
    """
    if ts is None:
        return "-"
    iso = datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{{{{DATE({iso}, SHORT)}}}} {{{{TIME({iso})}}}}"


def utc_time(ts: float | int | None) -> str:
    """Plain UTC time for surfaces without date tokens."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def environment(platform: str) -> jinja2.Environment:
    """The jinja2 environment of one platform (built on first use, not at import)."""
    if platform not in _EXTENSIONS:
        raise ValueError(f"no templates for platform '{platform}'")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("message_templates", platform),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - JSON/text; user text goes through explicit filters
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(
        mrkdwn=mrkdwn,
        slack_who=slack_who,
        markdown=markdown,
        json=json_string,
        clip=clip,
        slack_date=slack_date,
        teams_date=teams_date,
        teams_mri=teams_mri,
        utc_time=utc_time,
        one_line=one_line,
        byte_size=byte_size,
        refusal=refusal_text,
    )
    return env


def render(platform: str, name: str, data: Mapping[str, Any]) -> str:
    """Render the named template of a platform with ``data``."""
    template = environment(platform).get_template(f"{name}.{_EXTENSIONS[platform]}.j2")
    return template.render(**data)


def render_json(platform: str, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Render a JSON template and parse it; a template that yields bad JSON fails loudly."""
    text = render(platform, name, data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"template {platform}/{name} rendered invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"template {platform}/{name} must render a JSON object")
    return value


def templates(platform: str) -> list[str]:
    """Names of every template of a platform (tests render each one)."""
    suffix = f".{_EXTENSIONS[platform]}.j2"
    return sorted(
        name.removesuffix(suffix)
        for name in environment(platform).list_templates()
        if name.endswith(suffix)
    )


def refusal_text(refused: Refused | Refusal) -> str:
    """What a person reads about a refusal (every reason, joined), as plain text.

    Worded by the macro named for its code in ``shared/refusals.txt.j2``; surfaces escape
    the text for their markup through their ``error`` template.
    """
    refusals = refused.refusals if isinstance(refused, Refused) else (refused,)
    return "; ".join(_refusal(r) for r in refusals)


def _refusal(refusal: Refusal) -> str:
    params = {
        k: refusal_text(v) if isinstance(v, Refusal) else v for k, v in refusal.params.items()
    }
    return wording("refusals", refusal.code, **params)


def wording(template: str, phrase: str, **params: Any) -> str:
    """One phrase of a shared wording template (``shared/<template>.txt.j2``), as plain text."""
    macro = getattr(_wording(template), phrase, None)
    if macro is None:
        raise LookupError(f"no wording for {template} '{phrase}' in shared/{template}.txt.j2")
    return str(macro(**params)).strip()


@cache
def _wording(name: str) -> Any:
    """The macros of a shared wording template (loaded once)."""
    return environment("shared").get_template(f"{name}.txt.j2").module


def field_errors(
    refused: Refused, fields: Collection[str] | None = None, fallback: str | None = None
) -> dict[str, str]:
    """Refusal texts keyed by form field, for inline errors (see ``Refused.by_field``)."""
    return {key: refusal_text(r) for key, r in refused.by_field(fields, fallback).items()}
