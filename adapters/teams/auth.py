"""Bot Framework authentication: which requests to ``/api/messages`` are genuine, and the
credentials the bot presents when it calls the Bot Connector service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticationConfiguration,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
    ClaimsIdentity,
    PasswordServiceClientCredentialFactory,
    ServiceClientCredentialsFactory,
)

# What the bot presents to the Bot Connector; tests give one that hands out a fixed token.
Credentials: TypeAlias = ServiceClientCredentialsFactory

_PUBLIC_CLOUD_CALLER = "urn:botframework:azure"


@dataclass(frozen=True)
class TeamsConfig:
    """The Teams settings, as the adapter needs them (no secrets are logged from here)."""

    app_id: str | None = None
    app_password: str | None = None
    tenant_id: str | None = None
    app_type: str | None = None  # SingleTenant | MultiTenant; None: from tenant_id
    allow_unauthenticated: bool = False
    openid_metadata_url: str | None = None

    @property
    def enabled(self) -> bool:
        """Teams is served: with an app id, or unauthenticated on explicit request."""
        return bool(self.app_id) or self.allow_unauthenticated

    @property
    def authenticated(self) -> bool:
        """Every inbound request's token is checked: always when there is an app id."""
        return bool(self.app_id)

    @property
    def single_tenant(self) -> bool:
        kind = self.app_type or ("SingleTenant" if self.tenant_id else "MultiTenant")
        return kind == "SingleTenant"

    def problems(self) -> list[str]:
        """Settings that cannot work together, said in the operator's terms."""
        out = []
        if self.app_id and not self.app_password:
            out.append("TEAMS_APP_ID is set but TEAMS_APP_PASSWORD is not")
        if self.app_id and self.single_tenant and not self.tenant_id:
            out.append("TEAMS_APP_TYPE=SingleTenant needs TEAMS_TENANT_ID")
        return out


def bot_authentication(
    config: TeamsConfig, credentials: Credentials | None = None
) -> BotFrameworkAuthentication:
    """Token validation for inbound activities and credentials for outbound calls.

    Without an app id, botbuilder treats authentication as disabled: that is only built
    when ``allow_unauthenticated`` asked for it (the caller checks).
    """
    tenant = config.tenant_id if config.single_tenant else None
    factory = credentials or PasswordServiceClientCredentialFactory(
        config.app_id, config.app_password, tenant
    )
    if not config.openid_metadata_url:
        return BotFrameworkAuthenticationFactory.create(
            credential_factory=factory, auth_configuration=AuthenticationConfiguration()
        )
    # The public cloud's values, with the signing keys fetched from elsewhere.
    login = AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX + (
        tenant or AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT
    )
    return BotFrameworkAuthenticationFactory.create(
        validate_authority=True,
        to_channel_from_bot_login_url=login,
        to_channel_from_bot_oauth_scope=AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
        to_bot_from_channel_token_issuer=AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER,
        oauth_url=AuthenticationConstants.OAUTH_URL,
        to_bot_from_channel_open_id_metadata_url=config.openid_metadata_url,
        to_bot_from_emulator_open_id_metadata_url=(
            AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
        ),
        caller_id=_PUBLIC_CLOUD_CALLER,
        credential_factory=factory,
        auth_configuration=AuthenticationConfiguration(),
    )


class BotConnector:
    """Bot Connector clients for proactive calls (no inbound activity to borrow one from)."""

    def __init__(self, auth: BotFrameworkAuthentication, app_id: str | None) -> None:
        self.auth = auth
        self.app_id = app_id

    async def client(self, service_url: str) -> ConnectorClient:
        identity = ClaimsIdentity(
            {
                AuthenticationConstants.AUDIENCE_CLAIM: self.app_id,
                AuthenticationConstants.APP_ID_CLAIM: self.app_id,
            },
            True,
        )
        factory = self.auth.create_connector_factory(identity)
        return await factory.create(service_url, None)
