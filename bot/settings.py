"""Settings from the environment (pydantic-settings); each is documented in README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything Clearance reads from its environment. Secrets stay SecretStr: never logged."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    database_url: str = "sqlite+aiosqlite:///./clearance.db"
    clearance_policy: Path = Path("./policy.yaml")
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: str = "INFO"

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
