"""The Teams app package: the manifest (bot id, commands, scopes) and its two icons.

Upload the zip in the Teams admin center (or sideload it) to make the bot installable.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from bot.admin_commands import help_lines
from message_templates import render

_ACCENT = (0x1D, 0x35, 0x57)
Pixel = tuple[int, int, int, int]


def manifest_data(app_id: str, url: str, name: str = "Clearance") -> dict[str, Any]:
    """Data for the manifest template; ``url`` is the public base URL of clearance serve."""
    base = url.rstrip("/")
    if not base.startswith("https://"):
        raise ValueError(f"the public URL must be https:// (Teams requires it): {url}")
    # A menu entry per command word (Teams allows ten): the words with several forms
    # (review start|show|confirm) list those forms as their description.
    forms: dict[str, list[tuple[str, str]]] = {}
    for line in help_lines():
        usage, _, description = line.partition(": ")
        forms.setdefault(usage.split(" ")[0], []).append((usage, description))
    team_commands = [
        {
            "title": title,
            "description": found[0][1] if len(found) == 1 else "; ".join(u for u, _ in found),
        }
        for title, found in forms.items()
    ]
    return {
        "app_id": app_id,
        "name": name,
        "base_url": base,
        "domain": urlparse(base).netloc,
        "team_commands": team_commands,
    }


def manifest(app_id: str, url: str, name: str = "Clearance") -> dict[str, Any]:
    """The manifest as JSON data (rendered from message_templates/cli/teams_manifest)."""
    value: dict[str, Any] = json.loads(
        render("cli", "teams_manifest", manifest_data(app_id, url, name))
    )
    return value


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An RGBA PNG drawn by ``pixel(x, y)``; stdlib only (zlib, struct)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _key_shape(size: int, x: int, y: int) -> bool:
    """A simple key: a ring and a shaft with one tooth, scaled to ``size``."""
    u, v = (x + 0.5) / size, (y + 0.5) / size
    ring = 0.0144 <= (u - 0.3) ** 2 + (v - 0.5) ** 2 <= 0.0361
    shaft = 0.47 <= u <= 0.86 and 0.46 <= v <= 0.54
    tooth = (0.74 <= u <= 0.81 or 0.6 <= u <= 0.66) and 0.54 <= v <= 0.66
    return ring or shaft or tooth


def color_icon() -> bytes:
    """192x192: a white key on the accent colour (Teams' full-colour icon)."""
    white: Pixel = (255, 255, 255, 255)
    accent: Pixel = (*_ACCENT, 255)
    return png(192, 192, lambda x, y: white if _key_shape(192, x, y) else accent)


def outline_icon() -> bytes:
    """32x32: the key in white on transparent (Teams' outline icon)."""
    return png(32, 32, lambda x, y: (255, 255, 255, 255) if _key_shape(32, x, y) else (0, 0, 0, 0))


def package(app_id: str, url: str, name: str = "Clearance") -> bytes:
    """The app package zip: manifest.json, color.png, outline.png."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest(app_id, url, name), indent=2) + "\n")
        zf.writestr("color.png", color_icon())
        zf.writestr("outline.png", outline_icon())
    return out.getvalue()
