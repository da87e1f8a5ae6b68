"""Settings from the environment (pydantic-settings); each is documented in README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config_errors import DATABASE_URL_FORMS, settings_error, shown_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The async driver Clearance runs each database with (Alembic maps it to a sync one).
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg"}


class Settings(BaseSettings):
    """Everything Clearance reads from its environment. Secrets stay SecretStr: never logged."""

    # An empty variable counts as unset: compose files pass `NAME: ${NAME:-}` for optional ones.
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_ignore_empty=True)

    database_url: str = "sqlite+aiosqlite:///./clearance.db"
    clearance_policy: Path = Path("./policy.yaml")
    # All interfaces: behind a load balancer or in a container that is what is reachable.
    host: str = "0.0.0.0"  # noqa: S104
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    # Microsoft Teams (Bot Framework). The app id turns Teams on, with every request to
    # /api/messages token-checked. TEAMS_ALLOW_UNAUTHENTICATED serves it without an app id
    # and without token checks: for local development and tests only.
    teams_app_id: str | None = None
    teams_app_password: SecretStr | None = None
    teams_tenant_id: str | None = None
    # SingleTenant when a tenant id is given, else MultiTenant, unless set here.
    teams_app_type: Literal["SingleTenant", "MultiTenant"] | None = None
    teams_allow_unauthenticated: bool = False
    # Where Bot Framework token signing keys are published (tests point it at a local server).
    teams_openid_metadata_url: str | None = None

    # How often the dispatcher looks for due work even when nothing woke it (seconds).
    clearance_tick_seconds: float = Field(default=2.0, gt=0)
    # How long a claimed outbox row is reserved for its worker before others may retry it.
    clearance_lease_seconds: int = Field(default=120, ge=10)
    # Attempts for a grant before the request fails and the admins are alerted.
    clearance_grant_attempts: int = Field(default=8, ge=1)
    # A revocation never gives up; the admins are alerted after every this many attempts.
    clearance_revoke_alert_every: int = Field(default=5, ge=1)
    # How long a stopping server waits for work in flight (HTTP requests, Slack listeners,
    # outbox jobs) before it exits anyway; unfinished jobs are retried when their lease ends.
    clearance_shutdown_seconds: float = Field(default=20.0, gt=0)
    # The HMAC key of callbacks to workloads (X-Clearance-Signature); unset: none are sent.
    clearance_callback_secret: SecretStr | None = None

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(
                f"'{value}' is not a log level; set LOG_LEVEL to DEBUG, INFO, WARNING or ERROR "
                "(default INFO)"
            )
        return level

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        check_database_url(value)
        return value


def check_database_url(value: str) -> None:
    """Refuse, with the fix, a URL that names no database Clearance can run on."""
    from sqlalchemy.engine import make_url  # not at import: `policy check` needs no database
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        # The text is not repeated: a mistyped URL may still hold a password.
        raise ValueError(f"not a database URL; use {DATABASE_URL_FORMS}") from None
    backend = url.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(
            f"{backend} databases are not supported, only SQLite and PostgreSQL; "
            f"use {DATABASE_URL_FORMS}"
        )
    driver = ASYNC_DRIVERS[backend]
    if url.get_driver_name() != driver:
        fixed = url.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=True)
        raise ValueError(
            f"{shown_url(value)} names no driver Clearance runs with (it needs {driver}); "
            f"write {fixed}"
        )


# Settings whose values are never repeated in a message.
SECRET_SETTINGS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``); a value that cannot work is a
    ConfigurationError with one line per setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise settings_error(exc, SECRET_SETTINGS) from exc
