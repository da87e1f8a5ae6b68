"""``clearance teams manifest``: the Teams app package an admin uploads."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

from tests.conftest import Run

APP_ID = "11111111-2222-3333-4444-555555555555"


def _png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGBA pixel rows of a PNG this package wrote."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 6)
            size = (width, height)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = size[0] * 4 + 1
    rows = [raw[i * stride + 1 : (i + 1) * stride] for i in range(size[1])]
    return size[0], size[1], rows


def test_the_package_holds_the_manifest_and_both_icons(run_cli: Run, tmp_path: Path) -> None:
    out = tmp_path / "clearance-teams.zip"
    result = run_cli(
        "teams",
        "manifest",
        "--app-id",
        APP_ID,
        "--url",
        "https://access.example.com/",
        "--package",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
        color = _png(zf.read("color.png"))
        outline = _png(zf.read("outline.png"))
    assert manifest["id"] == APP_ID and manifest["manifestVersion"] == "1.17"
    (bot,) = manifest["bots"]
    assert bot["botId"] == APP_ID and bot["scopes"] == ["personal", "team"]
    personal, team = bot["commandLists"]
    assert [c["title"] for c in personal["commands"]] == ["request access", "status", "help"]
    assert {"pending", "revoke", "audit", "reload"} <= {c["title"] for c in team["commands"]}
    for commands in (personal, team):
        assert len(commands["commands"]) <= 10
        assert all(len(c["description"]) <= 128 for c in commands["commands"])
    assert manifest["validDomains"] == ["access.example.com"]
    assert manifest["developer"]["websiteUrl"] == "https://access.example.com"
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert color[:2] == (192, 192) and outline[:2] == (32, 32)
    # The outline icon is white on transparent, as Teams requires.
    pixels = {row[i : i + 4] for row in outline[2] for i in range(0, len(row), 4)}
    assert pixels == {b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"}


def test_the_manifest_needs_an_app_id_and_an_https_url(run_cli: Run) -> None:
    printed = run_cli("teams", "manifest", "--app-id", APP_ID)
    assert printed.returncode == 0 and json.loads(printed.stdout)["id"] == APP_ID
    missing = run_cli("teams", "manifest", env={"TEAMS_APP_ID": ""})
    assert missing.returncode == 2 and "--app-id" in missing.stderr
    plain = run_cli("teams", "manifest", "--app-id", APP_ID, "--url", "http://insecure.example")
    assert plain.returncode == 2 and "https" in plain.stderr
