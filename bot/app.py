"""The composition root: the one place that builds Clearance from settings.

Nothing runs at import time. ``build()`` wires storage, directory, use cases, connectors
and the dispatcher; ``serve()`` adds the web server and the scheduler and runs until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.api.routes import ApiRoutes
from adapters.ldap.connection import LdapClient, LdapSettings
from adapters.ldap.entitlements import LdapGroups
from adapters.oidc.verifier import OidcVerifier, TrustedIssuer
from adapters.scim.client import ScimClient, ScimSettings
from adapters.scim.entitlements import ScimGroups
from adapters.slack.chat import SlackChat
from adapters.slack.surface import SlackSurface
from adapters.slack.usergroups import SlackUserGroups
from adapters.teams.auth import BotConnector, Credentials, TeamsConfig, bot_authentication
from adapters.teams.chat import TeamsChat
from adapters.teams.surface import TeamsBot, TeamsSurface
from bot import logs
from bot.admin_commands import AdminCommands
from bot.api import Api
from bot.api_auth import ApiAuth
from bot.callbacks import Callbacks
from bot.chat import Chat
from bot.clock import Clock, SystemClock
from bot.config_errors import ConfigurationError
from bot.connectors import POLICY_CHECKS, ConnectorFactory, Connectors, UnknownConnector
from bot.directories import PolicyDirectory
from bot.dispatcher import Dispatcher
from bot.fulfilment import Fulfilment
from bot.ingress import Ingress
from bot.metrics import Metrics
from bot.notifier import Notifier
from bot.policy_source import PolicySource
from bot.reconcile import Reconciler
from bot.request_watch import RequestWatch
from bot.review_ingress import ReviewIngress
from bot.review_notifier import ReviewNotifier
from bot.review_views import ReviewViews
from bot.reviews import Reviews
from bot.settings import Settings
from bot.usecases import Clearance
from engine.policy import ConnectorConfig, Policy
from engine.ports import Directory, Entitlements
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from storage import migrate
from storage.api_tokens import ApiTokens
from storage.audit_log import AuditLog
from storage.chat_log import ChatLog
from storage.conversations import TeamsConversations
from storage.database import Database
from storage.health import Health
from storage.locks import NamedLocks
from storage.outbox import Outbox
from storage.repository import Store
from storage.reviews import ReviewStore

log = logging.getLogger("clearance")


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Slack Web API client (no network until used); SLACK_API_URL lets tests point it."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else settings.slack_api_url + "/"
    )
    # Slack's rate limits (HTTP 429) are waited out and retried rather than failing a job.
    client = AsyncWebClient(token=token, base_url=base)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def teams_config(settings: Settings) -> TeamsConfig:
    """The Teams part of the settings, in the adapter's terms."""
    password = settings.teams_app_password
    return TeamsConfig(
        app_id=settings.teams_app_id or None,
        app_password=password.get_secret_value() if password else None,
        tenant_id=settings.teams_tenant_id or None,
        app_type=settings.teams_app_type,
        allow_unauthenticated=settings.teams_allow_unauthenticated,
        openid_metadata_url=settings.teams_openid_metadata_url or None,
    )


def connector_factories(
    settings: Settings, directory: Directory, locks: NamedLocks
) -> dict[str, ConnectorFactory]:
    """How to build each connector type; one whose settings are missing fails when used."""

    def slack_usergroups(name: str, config: ConnectorConfig) -> Entitlements:
        if settings.slack_bot_token is None:
            raise UnknownConnector(f"connector '{name}' (slack_usergroups) needs SLACK_BOT_TOKEN")
        return SlackUserGroups(slack_client(settings), directory, locks.hold)

    def ldap(name: str, config: ConnectorConfig) -> Entitlements:
        where = f"connector '{name}' (ldap)"
        return LdapGroups(LdapClient(LdapSettings.from_options(where, config.options)))

    def scim(name: str, config: ConnectorConfig) -> Entitlements:
        where = f"connector '{name}' (scim)"
        return ScimGroups(ScimClient(ScimSettings.from_options(where, config.options)))

    return {"slack_usergroups": slack_usergroups, "ldap": ldap, "scim": scim}


@dataclass
class Components:
    """Everything ``build`` wires together; tests and the CLI take the parts they need."""

    settings: Settings
    database: Database
    store: Store
    audit: AuditLog
    outbox: Outbox
    policies: PolicySource
    directory: Directory
    clearance: Clearance
    connectors: Connectors
    dispatcher: Dispatcher
    fulfilment: Fulfilment
    reviews: Reviews
    chat_log: ChatLog
    notifier: Notifier
    review_notifier: ReviewNotifier
    admin: AdminCommands
    reconciler: Reconciler
    health: Health
    metrics: Metrics
    api: ApiRoutes
    api_tokens: ApiTokens
    slack: SlackSurface | None = None
    teams: TeamsSurface | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Set while serve() stops: /readyz then sends the load balancer elsewhere.
    stopping: bool = False

    async def close(self) -> None:
        await self.api.close()
        await self.database.dispose()


def build(
    settings: Settings,
    clock: Clock | None = None,
    factories: Mapping[str, ConnectorFactory] | None = None,
    directory: Directory | None = None,
    teams_credentials: Credentials | None = None,
) -> Components:
    """Wire Clearance from settings. Reads no file and opens no connection until used.

    ``teams_credentials`` replaces the Bot Framework app credentials (tests use a fixed
    token instead of asking Microsoft's login service).
    """
    clock = clock or SystemClock()
    database = Database(settings.database_url)
    store = Store(database)
    audit = AuditLog(database)
    outbox = Outbox(database)
    policies = PolicySource(settings.clearance_policy, POLICY_CHECKS)
    directory = directory or PolicyDirectory(lambda: policies.current)
    locks = NamedLocks(database)
    if factories is None:
        factories = connector_factories(settings, directory, locks)
    dispatcher = Dispatcher(
        outbox, clock, lease=timedelta(seconds=settings.clearance_lease_seconds)
    )
    watch = RequestWatch()

    def wake() -> None:
        dispatcher.wake()
        watch.poke()  # API clients waiting for a request read it again

    clearance = Clearance(store, audit, policies, directory, clock, wake=wake)
    health = Health(database)
    metrics = Metrics(health, clock)
    connectors = Connectors(factories, lambda: policies.current, observe=metrics.connector_call)
    fulfilment = Fulfilment(clearance, connectors)
    fulfilment.register(
        dispatcher, settings.clearance_grant_attempts, settings.clearance_revoke_alert_every
    )
    dispatcher.on_give_up = fulfilment.on_give_up
    reviews = Reviews(clearance, ReviewStore(database), connectors)
    reviews.register(dispatcher, settings.clearance_revoke_alert_every)
    chat_log = ChatLog(database)
    chats: list[Chat] = []
    slack = None
    if settings.slack_bot_token is not None:
        client = slack_client(settings)
        chats.append(SlackChat(client, lambda: policies.current))
    teams_settings = teams_config(settings)
    conversations = TeamsConversations(database)
    teams_auth = None
    if teams_settings.enabled:
        if problems := teams_settings.problems():
            raise ConfigurationError(
                *(f"{p}; see Connect Microsoft Teams in README.md" for p in problems)
            )
        teams_auth = bot_authentication(teams_settings, teams_credentials)
        chats.append(
            TeamsChat(
                BotConnector(teams_auth, teams_settings.app_id),
                conversations,
                lambda: policies.current,
                teams_settings.tenant_id,
            )
        )
    notifier = Notifier(clearance, chats, chat_log)
    review_views = ReviewViews(reviews)
    review_notifier = ReviewNotifier(review_views, chats, chat_log)
    reconciler = Reconciler(clearance, connectors, outbox, chats, chat_log)
    if chats:
        # Only a process that can deliver messages takes notification jobs.
        notifier.register(dispatcher)
        review_notifier.register(dispatcher)
        reconciler.register(dispatcher)
    api = api_routes(settings, clearance, watch, ApiTokens(database))
    api.callbacks.register(dispatcher)
    admin = AdminCommands(clearance, notifier, reviews)
    ingress = Ingress(clearance, chat_log, chat_log)
    review_ingress = ReviewIngress(reviews, review_views)
    if settings.slack_bot_token is not None:
        logs.quiet_bolt()
        secret = settings.slack_signing_secret
        slack = SlackSurface(
            clearance,
            notifier,
            admin,
            ingress,
            review_ingress,
            client,
            secret.get_secret_value() if secret else None,
        )
    teams = None
    if teams_auth is not None:
        teams = TeamsSurface(
            TeamsBot(clearance, notifier, admin, ingress, conversations, review_ingress),
            teams_auth,
            authenticated=teams_settings.authenticated,
            tenant_id=teams_settings.tenant_id,
        )
    return Components(
        settings=settings,
        database=database,
        store=store,
        audit=audit,
        outbox=outbox,
        policies=policies,
        directory=directory,
        clearance=clearance,
        connectors=connectors,
        dispatcher=dispatcher,
        fulfilment=fulfilment,
        reviews=reviews,
        chat_log=chat_log,
        notifier=notifier,
        review_notifier=review_notifier,
        admin=admin,
        slack=slack,
        teams=teams,
        reconciler=reconciler,
        health=health,
        metrics=metrics,
        api=api,
        api_tokens=api.auth.tokens,
    )


def api_routes(
    settings: Settings, clearance: Clearance, watch: RequestWatch, tokens: ApiTokens
) -> ApiRoutes:
    """The /api/v1 routes: workload tokens trusted per the policy's workloads, people's
    tokens from the database, callbacks signed with CLEARANCE_CALLBACK_SECRET."""
    policies = clearance.policies

    def trusted() -> list[TrustedIssuer]:
        issuers: dict[str, set[str]] = {}
        for w in policies.current.document.workloads:
            issuers.setdefault(w.issuer, set()).add(w.audience)
        return [TrustedIssuer(i, frozenset(a)) for i, a in issuers.items()]

    verifier = OidcVerifier(trusted)
    auth = ApiAuth(verifier, tokens, policies, clearance.directory, clearance.clock)
    secret = settings.clearance_callback_secret
    callbacks = Callbacks(
        clearance.get,
        lambda: policies.current,
        secret.get_secret_value().encode() if secret else None,
    )
    return ApiRoutes(Api(clearance, auth, watch), auth, lambda: policies.current, callbacks)


async def start(components: Components) -> None:
    """Bring the schema up to date, load the policy (refusing a bad one) and audit it."""
    await asyncio.to_thread(migrate.upgrade, components.settings.database_url)
    policy = components.policies.current  # raises PolicyError with every problem
    await components.clearance.record(
        AuditRecord(
            action="policy_loaded",
            actor=SYSTEM_ACTOR,
            request_id=None,
            resource_id=None,
            policy_version=policy.version,
            details={"source": policy.source, "summary": policy.summary()},
        )
    )
    logs.add_secrets(os.environ.get(name) for name in policy_secret_variables(policy))
    log.info("policy %s loaded: %s", policy.source, policy.summary())


def policy_secret_variables(policy: Policy) -> set[str]:
    """The environment variables the policy's connectors and directory read secrets from
    (their ``*_env`` settings), so that the log masks those values too."""
    document = policy.document
    options = [c.options for c in document.connectors.values()] + [document.directory.options]
    return {str(v) for settings in options for k, v in settings.items() if k.endswith("_env") and v}
