"""The composition root: the one place that builds Clearance from settings.

Nothing runs at import time. ``build()`` wires storage, directory, use cases, connectors
and the dispatcher; ``serve()`` adds the web server and the scheduler and runs until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ldap.connection import LdapClient, LdapSettings
from adapters.ldap.entitlements import LdapGroups
from adapters.scim.client import ScimClient, ScimSettings
from adapters.scim.entitlements import ScimGroups
from adapters.slack.chat import SlackChat
from adapters.slack.surface import SlackSurface
from adapters.slack.usergroups import SlackUserGroups
from adapters.teams.auth import BotConnector, Credentials, TeamsConfig, bot_authentication
from adapters.teams.chat import TeamsChat
from adapters.teams.surface import TeamsBot, TeamsSurface
from bot.admin_commands import AdminCommands
from bot.chat import Chat
from bot.clock import Clock, SystemClock
from bot.connectors import POLICY_CHECKS, ConnectorFactory, Connectors, UnknownConnector
from bot.directories import PolicyDirectory
from bot.dispatcher import Dispatcher
from bot.fulfilment import Fulfilment
from bot.ingress import Ingress
from bot.notifier import Notifier
from bot.policy_source import PolicySource
from bot.reconcile import Reconciler
from bot.reviews import Reviews
from bot.settings import Settings
from bot.usecases import Clearance
from engine.policy import ConnectorConfig
from engine.ports import Directory, Entitlements
from engine.transitions import SYSTEM_ACTOR, AuditRecord
from storage import migrate
from storage.audit_log import AuditLog
from storage.chat_log import ChatLog
from storage.conversations import TeamsConversations
from storage.database import Database
from storage.locks import NamedLocks
from storage.outbox import Outbox
from storage.repository import Store
from storage.reviews import ReviewStore

log = logging.getLogger("clearance")

# Every replica fires the daily drift check at the same time; the first one runs it.
DRIFT_CHECK_HOUR_UTC = 5
# How often each replica looks for reviews whose cadence has come round (one starts each).
REVIEW_CADENCE_SECONDS = 3600


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
    admin: AdminCommands
    reconciler: Reconciler
    slack: SlackSurface | None = None
    teams: TeamsSurface | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
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
    clearance = Clearance(store, audit, policies, directory, clock, wake=dispatcher.wake)
    connectors = Connectors(factories, lambda: policies.current)
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
            raise ValueError("Teams settings: " + "; ".join(problems))
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
    reconciler = Reconciler(clearance, connectors, outbox, chats, chat_log)
    if chats:
        # Only a process that can deliver messages takes notification jobs.
        notifier.register(dispatcher)
        reconciler.register(dispatcher)
    admin = AdminCommands(clearance, notifier, reviews)
    ingress = Ingress(clearance, chat_log, chat_log)
    if settings.slack_bot_token is not None:
        secret = settings.slack_signing_secret
        slack = SlackSurface(
            clearance,
            notifier,
            admin,
            ingress,
            client,
            secret.get_secret_value() if secret else None,
        )
    teams = None
    if teams_auth is not None:
        teams = TeamsSurface(
            TeamsBot(clearance, notifier, admin, ingress, conversations),
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
        admin=admin,
        slack=slack,
        teams=teams,
        reconciler=reconciler,
    )


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
    log.info("policy %s loaded: %s", policy.source, policy.summary())


def web_app(components: Components) -> web.Application:
    """The HTTP surface: health and metrics here; chat platforms add their routes."""
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        try:
            counts = await components.outbox.counts()
        except Exception as exc:  # the probe reports, it does not crash
            return web.json_response({"ok": False, "error": type(exc).__name__}, status=503)
        return web.json_response(
            {"ok": True, "policy_version": components.policies.current.version, "outbox": counts}
        )

    async def metrics(_request: web.Request) -> web.Response:
        counts = await components.outbox.counts()
        lines = ["# TYPE clearance_outbox_rows gauge"]
        lines += [f'clearance_outbox_rows{{status="{k}"}} {v}' for k, v in sorted(counts.items())]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if components.slack is not None and components.settings.slack_signing_secret is not None:
        # Mounted only with a signing secret: every request to it is signature-checked.
        app.router.add_post("/slack/events", components.slack.handle)
    if components.teams is not None:
        # Built only with TEAMS_APP_ID (every request token-checked) or with the explicit
        # TEAMS_ALLOW_UNAUTHENTICATED: never unauthenticated by accident.
        app.router.add_post("/api/messages", components.teams.handle)
    return app


def warn_about_teams(settings: Settings) -> None:
    """Say at start how Teams is served; unauthenticated mode is announced loudly."""
    config = teams_config(settings)
    if not config.enabled:
        log.info("TEAMS_APP_ID is not set: Teams is off (/api/messages is not served)")
    elif not config.authenticated:
        log.warning(
            "!!! TEAMS_ALLOW_UNAUTHENTICATED is on: /api/messages accepts requests WITHOUT "
            "any token check; anyone who can reach it can act as any Teams user. For local "
            "development and tests only, never in production !!!"
        )
    else:
        if config.allow_unauthenticated:
            log.warning("TEAMS_ALLOW_UNAUTHENTICATED is ignored: TEAMS_APP_ID is set")
        if not config.tenant_id:
            log.warning(
                "TEAMS_TENANT_ID is not set: Teams activities from every tenant are accepted; "
                "set it so that only your organisation's people can act"
            )


def schedule_review_cadence(scheduler: AsyncIOScheduler, components: Components) -> None:
    """Start the reviews whose ``every:`` has come round; checked hourly (and at start),
    while each campaign runs for days, so an hour late is on time."""
    scheduler.add_job(
        components.reviews.start_due,
        "interval",
        seconds=REVIEW_CADENCE_SECONDS,
        id="review-cadence",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
    )


def schedule_drift_check(scheduler: AsyncIOScheduler, components: Components) -> None:
    """Reconcile managed groups with the grants daily; one replica runs it each day."""
    scheduler.add_job(
        components.reconciler.daily,
        "cron",
        hour=DRIFT_CHECK_HOUR_UTC,
        minute=0,
        id="drift-reconcile",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )


async def serve(
    components: Components,
    host: str = "0.0.0.0",  # noqa: S104 - a server behind a load balancer listens on all
    socket_mode: bool = False,
) -> None:
    """Run the web server, the dispatcher and the scheduler until SIGINT/SIGTERM."""
    await start(components)
    settings = components.settings
    if components.slack is None:
        log.warning("SLACK_BOT_TOKEN is not set: Slack is off")
    elif components.settings.slack_signing_secret is None and not socket_mode:
        log.warning("SLACK_SIGNING_SECRET is not set: /slack/events is not served")
    warn_about_teams(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    runner = web.AppRunner(web_app(components))
    await runner.setup()
    await web.TCPSite(runner, host, settings.port).start()
    log.info("serving on %s:%s", host, settings.port)

    scheduler = AsyncIOScheduler(timezone="UTC")
    # A tick on a schedule: due timers (expiry, reminders) run even when nothing else happens.
    scheduler.add_job(
        components.dispatcher.wake,
        "interval",
        seconds=settings.clearance_tick_seconds,
        id="dispatcher-tick",
        coalesce=True,
        max_instances=1,
    )
    schedule_drift_check(scheduler, components)
    schedule_review_cadence(scheduler, components)
    scheduler.start()
    dispatcher_task = asyncio.create_task(
        components.dispatcher.run(stop, interval=settings.clearance_tick_seconds * 5)
    )
    components.dispatcher.wake()  # overdue work found at start-up runs at once
    socket_handler = None
    if socket_mode:
        if components.slack is None or settings.slack_app_token is None:
            raise SystemExit("Socket Mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        socket_handler = AsyncSocketModeHandler(
            components.slack.app, settings.slack_app_token.get_secret_value()
        )
        await socket_handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack in Socket Mode")
    try:
        await stop.wait()
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()  # type: ignore[no-untyped-call]
        scheduler.shutdown(wait=False)
        if components.slack is not None:
            # Work a listener does after its ack (a decision, a form) finishes before exit.
            with contextlib.suppress(TimeoutError):
                await components.slack.idle(limit=10)
        components.dispatcher.wake()  # the loop sees the stop now, not after its interval
        await dispatcher_task
        await runner.cleanup()
        await components.close()
