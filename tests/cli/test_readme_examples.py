"""The commands README.md shows after `make run` work as written, in a fresh shell."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Run

# Documented there: without SLACK_BOT_TOKEN the example's groups cannot be checked.
EXPECTED_STATUS = {"reconcile": 2}


def readme_commands() -> tuple[dict[str, str], list[list[str]]]:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("After `make run`", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    exports: dict[str, str] = {}
    commands = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("export "):
            for pair in shlex.split(line)[1:]:
                name, _, value = pair.partition("=")
                exports[name] = value
        elif line.startswith(".venv/bin/clearance"):
            commands.append(shlex.split(line)[1:])
    return exports, commands


def test_the_readme_examples_run_as_written(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports, commands = readme_commands()
    assert exports.get("CLEARANCE_POLICY") == "examples/policy.yaml"
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    monkeypatch.chdir(tmp_path)  # the database and the evidence files land here
    for name in ("DATABASE_URL", "CLEARANCE_POLICY", "SLACK_BOT_TOKEN", "TEAMS_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    ran = 0
    for args in commands:
        # `serve` runs until stopped (tests/slack/test_serve_process.py runs it); lines with
        # placeholders need the reader's own values.
        if args[0] == "serve" or any(re.search(r"<|…", a) for a in args):
            continue
        result = run_cli(*args, env=exports)
        expected = EXPECTED_STATUS.get(args[0], 0)
        assert result.returncode == expected, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        ran += 1
    assert ran >= 7
