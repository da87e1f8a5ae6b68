"""The running server: the web routes (Slack, Teams, health, readiness, metrics), the
scheduled jobs and ``clearance serve``'s start and graceful stop, over what ``bot.app``
builds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import logs
from bot.app import Components, start, teams_config
from bot.config_errors import ConfigurationError, address_error, database_error
from bot.metrics import CONTENT_TYPE, Metrics
from bot.settings import Settings
from engine.policy_loading import PolicyError
from storage import migrate

log = logging.getLogger("clearance")

# Every replica fires the daily drift check at the same time; the first one runs it.
DRIFT_CHECK_HOUR_UTC = 5
# How often each replica looks for reviews whose cadence has come round (one starts each).
REVIEW_CADENCE_SECONDS = 3600


# A request id from outside is kept only when it is short and plain: it goes into every line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# A readiness check that takes longer than this counts as a database that does not answer.
READY_TIMEOUT_SECONDS = 5.0
# The head of the migrations this code ships: read from their files once, not per probe.
_head_revision = functools.cache(migrate.head_revision)


@web.middleware
async def _request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every line logged while serving a request names it; the answer names it too."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    with logs.bound(http_request=request_id):
        response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


def _acked(
    metrics: Metrics, platform: str, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The chat route, timed from request to answer (Slack's 3 s limit is on this)."""

    async def timed(request: web.Request) -> web.Response:
        start = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.ack(platform, status, time.monotonic() - start)

    return timed


async def readiness(components: Components) -> str | None:
    """Why this process should not get traffic now (None: ready)."""
    if components.stopping:
        return "shutting down"
    try:
        revision = await asyncio.wait_for(components.health.revision(), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        return str(database_error(exc, components.settings.database_url))
    head = _head_revision()
    if revision != head:
        return (
            f"database schema is at {revision or 'nothing'}, this version needs {head}: "
            "run `clearance db upgrade`"
        )
    try:
        components.policies.current  # noqa: B018 - loads it, or says why it cannot
    except PolicyError as exc:
        return f"policy not loaded: {exc.problems[0] if exc.problems else exc}"
    return None


def web_app(components: Components) -> web.Application:
    """The HTTP surface: health, readiness and metrics here; chat platforms add their routes."""
    app = web.Application(middlewares=[_request_context])
    metrics = components.metrics

    async def healthz(_request: web.Request) -> web.Response:
        # Liveness only: the process answers. It reads no database, so an outage of the
        # database does not get healthy replicas restarted; /readyz says whether to send
        # traffic here.
        return web.json_response({"ok": True})

    async def readyz(_request: web.Request) -> web.Response:
        reason = await readiness(components)
        if reason is not None:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        policy = components.policies.current
        return web.json_response({"ready": True, "policy_version": policy.version})

    async def metrics_page(_request: web.Request) -> web.Response:
        body = await metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    components.api.add_to(app)
    platforms = []
    if components.slack is not None and components.settings.slack_signing_secret is not None:
        # Mounted only with a signing secret: every request to it is signature-checked.
        app.router.add_post("/slack/events", _acked(metrics, "slack", components.slack.handle))
        platforms.append("slack")
    if components.teams is not None:
        # Built only with TEAMS_APP_ID (every request token-checked) or with the explicit
        # TEAMS_ALLOW_UNAUTHENTICATED: never unauthenticated by accident.
        app.router.add_post("/api/messages", _acked(metrics, "teams", components.teams.handle))
        platforms.append("teams")
    try:
        connectors = list(components.policies.current.document.connectors)
    except PolicyError:  # serve refuses such a policy at start; readiness says why
        connectors = []
    metrics.start(connectors, platforms)
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


def serve_problems(settings: Settings, socket_mode: bool) -> list[str]:
    """Chat settings that would start a server that cannot do what it was set up for."""
    problems = []
    if socket_mode:
        if settings.slack_bot_token is None:
            problems.append(
                "SLACK_BOT_TOKEN: --socket-mode needs the bot token (xoxb-…, OAuth & "
                "Permissions of the Slack app); set it"
            )
        if settings.slack_app_token is None:
            problems.append(
                "SLACK_APP_TOKEN: --socket-mode needs an app-level token (xapp-…, with "
                "connections:write, Basic Information of the Slack app); set it"
            )
    elif settings.slack_bot_token is not None and settings.slack_signing_secret is None:
        problems.append(
            "SLACK_SIGNING_SECRET: not set, but SLACK_BOT_TOKEN is: /slack/events could not "
            "verify that requests come from Slack; set it to the Signing Secret (Basic "
            "Information of the Slack app), or run with --socket-mode and SLACK_APP_TOKEN"
        )
    return problems


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else starts: a port in use is told at
    once, before migrations run or a policy_loaded event is audited."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise address_error(exc, host, port) from exc


async def serve(
    components: Components,
    socket_mode: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the web server, the dispatcher and the scheduler until SIGINT/SIGTERM (or
    ``stop``), then stop within CLEARANCE_SHUTDOWN_SECONDS."""
    settings = components.settings
    if problems := serve_problems(settings, socket_mode):
        raise ConfigurationError(*problems)
    sock = listening_socket(settings.host, settings.port)
    try:
        await start(components)
    except BaseException:
        sock.close()
        await components.close()
        raise
    if components.slack is None:
        log.warning("SLACK_BOT_TOKEN is not set: Slack is off")
    warn_about_teams(settings)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    bound = settings.clearance_shutdown_seconds
    # In-flight HTTP requests get the same bound as the rest when the server stops.
    runner = web.AppRunner(web_app(components), shutdown_timeout=bound)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    log.info("serving on %s:%s", settings.host, settings.port)

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
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert components.slack is not None and settings.slack_app_token is not None
        socket_handler = AsyncSocketModeHandler(
            components.slack.app, settings.slack_app_token.get_secret_value()
        )
        await socket_handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack in Socket Mode")
    try:
        await stop.wait()
    finally:
        await _shut_down(components, runner, scheduler, dispatcher_task, socket_handler, bound)


async def _shut_down(
    components: Components,
    runner: web.AppRunner,
    scheduler: AsyncIOScheduler,
    dispatcher_task: asyncio.Task[None],
    socket_handler: Any,
    bound: float,
) -> None:
    """Take no new work, finish what is in flight within ``bound`` seconds, then close.

    A job still running at the bound is cancelled: its row keeps its lease and runs
    again (here after a restart, or on another replica) once the lease ends.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    components.stopping = True
    waiting = [f"{components.dispatcher.in_flight} outbox job(s)", "in-flight HTTP requests"]
    if components.slack is not None:
        waiting.append("Slack listeners")
    log.info("stopping: waiting up to %gs for %s", bound, ", ".join(waiting))
    if socket_handler is not None:
        await socket_handler.close_async()
    scheduler.shutdown(wait=False)
    await runner.cleanup()  # stops listening, waits for requests being answered
    if components.slack is not None:
        # Work a listener does after its ack (a decision, a form) finishes before exit.
        try:
            await components.slack.idle(limit=max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("stopping: Slack listeners still working at the %gs bound", bound)
    components.dispatcher.wake()  # the loop sees the stop now, not after its interval
    try:
        await asyncio.wait_for(asyncio.shield(dispatcher_task), max(0.0, deadline - loop.time()))
    except TimeoutError:
        running = components.dispatcher.in_flight
        dispatcher_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher_task
        log.warning(
            "stopping: %d outbox job(s) unfinished at the %gs bound; they run again when "
            "their lease ends (CLEARANCE_LEASE_SECONDS=%s)",
            running,
            bound,
            components.settings.clearance_lease_seconds,
        )
    await components.close()
    log.info("stopped")
