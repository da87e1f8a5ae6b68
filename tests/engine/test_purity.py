"""The one rule: engine/ is pure domain code and imports no framework nor outer layer;
adapters/ reach storage only through the ports bot/ defines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
FORBIDDEN = (
    "slack_bolt",
    "slack_sdk",
    "botbuilder",
    "sqlmodel",
    "sqlalchemy",
    "aiohttp",
    "apscheduler",
    "jinja2",
    "bot",
    "storage",
    "adapters",
    "message_templates",
)
ENGINE_FILES = sorted(ENGINE.glob("*.py"))
# Adapters reach storage only through the ports bot/ defines (bot/chat_records.py).
ADAPTER_FILES = sorted((ROOT / "adapters").rglob("*.py"))
ADAPTERS_FORBIDDEN = ("storage",)


def imported_modules(path: Path, package: str = "engine") -> list[tuple[int, str]]:
    """Every module a file imports, wherever the import statement sits (functions too);
    a relative import is named as if written from ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, package + "." + (node.module or "")))
            elif node.module:
                found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def is_forbidden(module: str, forbidden: tuple[str, ...] = FORBIDDEN) -> bool:
    return any(module == name or module.startswith(name + ".") for name in forbidden)


def test_engine_has_modules_to_check() -> None:
    names = {p.name for p in ENGINE_FILES}
    assert {"policy.py", "lifecycle.py", "approvers.py", "audit.py", "ports.py"} <= names


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_engine_module_imports_no_framework_or_outer_layer(path: Path) -> None:
    bad = [
        f"{path.name}:{line}: {module}"
        for line, module in imported_modules(path)
        if is_forbidden(module)
    ]
    assert bad == []


def test_the_import_check_itself_catches_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "from slack_sdk.models import blocks\n"
        "def f():\n"
        "    import storage.repository\n"
        "    from bot import usecases\n"
        "    importlib.import_module('sqlalchemy')\n"
        "import botbuilder.core as bc\n"
        "import jinja2_time\n",
        encoding="utf-8",
    )
    flagged = [(line, m) for line, m in imported_modules(sample) if is_forbidden(m)]
    assert sorted(flagged) == [
        (2, "slack_sdk.models"),
        (4, "storage.repository"),
        (5, "bot"),
        (6, "sqlalchemy"),
        (7, "botbuilder.core"),
    ]


def test_adapters_have_modules_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in ADAPTER_FILES}
    assert {"adapters/slack/surface.py", "adapters/teams/surface.py"} <= names


@pytest.mark.parametrize(
    "path", ADAPTER_FILES, ids=lambda p: p.relative_to(ROOT / "adapters").as_posix()
)
def test_adapter_module_imports_no_storage(path: Path) -> None:
    bad = [
        f"{path.name}:{line}: {module}"
        for line, module in imported_modules(path, package="adapters")
        if is_forbidden(module, ADAPTERS_FORBIDDEN)
    ]
    assert bad == []


def test_the_adapter_check_catches_storage_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import storage\n"
        "from storage.chat_log import ChatLog\n"
        "from bot.chat_records import SentMessages\n"
        "def f():\n"
        "    import storage.conversations as c\n"
        "    importlib.import_module('storage.repository')\n"
        "import storage_tools\n",
        encoding="utf-8",
    )
    flagged = [
        (line, m)
        for line, m in imported_modules(sample, package="adapters")
        if is_forbidden(m, ADAPTERS_FORBIDDEN)
    ]
    assert sorted(flagged) == [
        (1, "storage"),
        (2, "storage.chat_log"),
        (5, "storage.conversations"),
        (6, "storage.repository"),
    ]


def test_engine_imports_with_frameworks_blocked() -> None:
    """Import every engine module in a fresh interpreter where the frameworks cannot load."""
    script = f"""
import importlib, pkgutil, sys
for name in {FORBIDDEN!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import engine
names = sorted(m.name for m in pkgutil.iter_modules(engine.__path__, "engine."))
for name in names:
    importlib.import_module(name)
blocked = {set(FORBIDDEN)!r}
loaded = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] in blocked and mod)
print(len(names), loaded)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) == len([p for p in ENGINE_FILES if p.name != "__init__.py"])
    assert loaded == "[]"


def test_blocking_really_blocks() -> None:
    """The subprocess trick above would fail loudly if engine imported a blocked module."""
    script = "import sys; sys.modules['jinja2'] = None\nimport jinja2\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and "import of jinja2 halted" in result.stderr
