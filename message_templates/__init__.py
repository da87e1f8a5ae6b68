"""Every message Clearance shows is a jinja2 template here; Python passes data, never wording.

``render(platform, name, data)`` renders ``<platform>/<name>.<ext>.j2``: ``cli`` is plain
text, ``slack`` is Block Kit JSON and ``teams`` Adaptive Card JSON (user text is escaped
by the filters those templates use).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

_EXTENSIONS = {"cli": "txt", "slack": "json", "teams": "json"}


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
    return env


def render(platform: str, name: str, data: Mapping[str, Any]) -> str:
    """Render the named template of a platform with ``data``."""
    template = environment(platform).get_template(f"{name}.{_EXTENSIONS[platform]}.j2")
    return template.render(**data)
