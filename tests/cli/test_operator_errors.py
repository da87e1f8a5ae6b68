"""Mistakes an operator makes, answered as one line they can act on.

Each bad setting gives exactly one ``error:`` line that names the setting, says what is
wrong and how to fix it, exit status 2, and no traceback unless LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import EXAMPLE_POLICY, Ran, Run, pg_admin_url
from tests.fakes.slapd import free_port

# Every command that opens the database.
DATABASE_COMMANDS = [
    ("db", "upgrade"),
    ("audit", "verify"),
    ("audit", "export"),
    ("serve",),
    ("reconcile", "--dry-run"),
]
# Every setting below is real in the environment of these tests.
SECRET_PASSWORD = "s3cret-Pa55word"


def _pg(**parts: object) -> str:
    url = make_url(pg_admin_url()).set(drivername="postgresql+psycopg", **parts)  # type: ignore[arg-type]
    return url.render_as_string(hide_password=False)


def bad_database_urls(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (DATABASE_URL, what the one line must say)."""
    return {
        "not-a-url": ("not-a-url", "not a database URL"),
        "mysql": (f"mysql://app:{SECRET_PASSWORD}@db.example.com/app", "mysql databases"),
        "no-such-database": (_pg(database="clearance_does_not_exist"), "does not exist"),
        "no-such-role": (_pg(username="nobody_here", password=SECRET_PASSWORD), "role"),
        "refused-port": (_pg(port=free_port()), "nothing accepts connections"),
        "missing-directory": (f"sqlite+aiosqlite:///{tmp}/no/such/dir/x.db", "directory"),
        "sync-sqlite": (f"sqlite:///{tmp}/x.db", "sqlite+aiosqlite"),
    }


def assert_one_line(result: Ran, setting: str, says: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {setting}"), lines[0]
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.stderr and SECRET_PASSWORD not in result.stderr


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean environment, as an operator's shell would have it."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "TEAMS_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.setenv("CLEARANCE_POLICY", str(EXAMPLE_POLICY))
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/ok.db")
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("operator_env")
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c))
def test_a_database_url_that_cannot_work_is_one_line(
    run_cli: Run, tmp_path: Path, command: tuple[str, ...]
) -> None:
    for name, (url, says) in bad_database_urls(tmp_path).items():
        result = run_cli(*command, env={"DATABASE_URL": url, "PORT": str(free_port())})
        try:
            assert_one_line(result, "DATABASE_URL", says)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.mark.usefixtures("operator_env")
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c))
def test_bad_port_and_log_level_name_the_setting(run_cli: Run, command: tuple[str, ...]) -> None:
    assert_one_line(run_cli(*command, env={"PORT": "abc"}), "PORT", "1 to 65535")
    assert_one_line(
        run_cli(*command, env={"PORT": "3000", "LOG_LEVEL": "verbose"}),
        "LOG_LEVEL",
        "DEBUG, INFO, WARNING or ERROR",
    )


@pytest.mark.usefixtures("operator_env")
def test_debug_shows_the_traceback_too(run_cli: Run) -> None:
    result = run_cli("audit", "verify", env={"DATABASE_URL": "mysql://x@y/z", "LOG_LEVEL": "DEBUG"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "error: DATABASE_URL" in result.stderr


@pytest.mark.usefixtures("operator_env")
def test_a_database_without_the_schema_says_to_upgrade(run_cli: Run) -> None:
    assert_one_line(run_cli("audit", "verify"), "DATABASE_URL", "clearance db upgrade")
    assert run_cli("db", "upgrade").returncode == 0
    assert run_cli("audit", "verify").returncode == 0


@pytest.mark.usefixtures("operator_env")
def test_serve_on_a_port_in_use_names_the_port(run_cli: Run) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", env={"PORT": str(port), "HOST": "127.0.0.1"})
    assert_one_line(result, "PORT", f"port {port} on 127.0.0.1 is already in use")


@pytest.mark.usefixtures("operator_env")
def test_serve_refuses_slack_without_its_signing_secret(run_cli: Run) -> None:
    result = run_cli("serve", env={"SLACK_BOT_TOKEN": "xoxb-only-the-token"})
    assert_one_line(result, "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")
    assert "xoxb-only-the-token" not in result.stderr


@pytest.mark.usefixtures("operator_env")
def test_socket_mode_names_the_missing_token(run_cli: Run) -> None:
    no_app_token = run_cli("serve", "--socket-mode", env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert_one_line(no_app_token, "SLACK_APP_TOKEN", "xapp-")
    # An empty variable is an unset one.
    no_bot_token = run_cli(
        "serve", "--socket-mode", env={"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": "xapp-1"}
    )
    assert_one_line(no_bot_token, "SLACK_BOT_TOKEN", "xoxb-")


def test_version(run_cli: Run) -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("clearance ") and result.stdout.split()[1][0].isdigit()


def test_slack_manifest_needs_a_public_https_url(run_cli: Run) -> None:
    missing = run_cli("slack", "manifest")
    assert missing.returncode == 2 and "--url" in missing.stderr
    plain = run_cli("slack", "manifest", "--url", "clearance.example.com")
    assert plain.returncode == 2 and "https://" in plain.stderr
    http = run_cli("slack", "manifest", "--url", "http://clearance.example.com")
    assert http.returncode == 2 and "https://" in http.stderr
    ok = run_cli("slack", "manifest", "--url", "https://access.example.com/")
    assert ok.returncode == 0 and "https://access.example.com/slack/events" in ok.stdout


def test_teams_manifest_refuses_an_app_id_that_is_not_a_guid(run_cli: Run) -> None:
    result = run_cli("teams", "manifest", "--app-id", "my-bot", "--url", "https://a.example.com")
    assert result.returncode == 2 and "GUID" in result.stderr
    from_env = run_cli(
        "teams", "manifest", "--url", "https://a.example.com", env={"TEAMS_APP_ID": "1234"}
    )
    assert from_env.returncode == 2 and "GUID" in from_env.stderr


@pytest.mark.usefixtures("operator_env")
def test_reconcile_on_the_example_says_each_thing_once_in_plain_words(run_cli: Run) -> None:
    assert run_cli("db", "upgrade").returncode == 0
    result = run_cli("reconcile", "--dry-run")
    assert result.returncode == 2  # the example's groups cannot be checked without Slack
    assert "UnknownConnector" not in result.stdout + result.stderr
    not_checked = [line for line in result.stdout.splitlines() if "NOT CHECKED:" in line]
    assert not_checked and all("needs SLACK_BOT_TOKEN" in line for line in not_checked)
    # The report is the output: the reconciler's warnings do not repeat it on stderr.
    assert "needs SLACK_BOT_TOKEN" not in result.stderr
