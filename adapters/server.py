"""The one HTTP server: Slack, Teams, health, readiness; and the serve lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from adapters.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from adapters.settings import Settings
from adapters.wiring import Runtime, build_runtime
from bot import database

log = logging.getLogger(__name__)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
MAX_BODY_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    report = await request.app[RUNTIME].readiness()
    ready = not report["down"]
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", **report}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].metrics.render()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


@web.middleware
async def _slack_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Slack's signature and body shape are checked before the route parses anything."""
    endpoint = request.app[RUNTIME].slack_endpoint
    if endpoint is None:
        return await handler(request)
    return await endpoint.middleware(request, handler)


async def _slack_events(request: web.Request) -> web.StreamResponse:
    endpoint = request.app[RUNTIME].slack_endpoint
    if endpoint is None:
        return web.json_response({"error": "Slack is not configured on this bot"}, status=401)
    return await endpoint.handle(request)


async def _teams_messages(request: web.Request) -> web.Response:
    teams = request.app[RUNTIME].teams
    if teams is None:
        return web.json_response({"error": "Teams is not configured on this bot"}, status=401)
    return await teams.handle(request)


def build_web_app(runtime: Runtime) -> web.Application:
    """The aiohttp application serving every route of the contract."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_slack_guard])
    app[RUNTIME] = runtime
    app.router.add_post("/slack/events", _slack_events)
    app.router.add_post("/api/messages", _teams_messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


class StartupError(Exception):
    """The bot cannot start as configured; the message says why and what to do."""


async def migrate(settings: Settings) -> None:
    """Apply database migrations; a failure is one log line and shows in /readyz."""
    try:
        await asyncio.to_thread(database.upgrade, settings.effective_database_url)
    except database.DatabaseError as exc:
        log.error("%s (run `chatbot db upgrade` to retry, `chatbot doctor` to check)", exc)
    except Exception as exc:
        log.error(
            "database migration failed: %s (run `chatbot db upgrade` to see why)",
            type(exc).__name__,
        )


async def build(settings: Settings) -> Runtime:
    """The runtime, or StartupError with one line saying what to correct."""
    try:
        return await build_runtime(settings)
    except database.DatabaseError as exc:  # e.g. a DATABASE_URL no driver understands
        raise StartupError(f"{exc}: correct DATABASE_URL (`chatbot doctor` checks it)") from exc


async def first_steps(settings: Settings, runtime: Runtime) -> None:
    """Say once, at start, what is missing and the next command: the model server (in
    doctor's words) and, with neither Slack nor Teams configured, how to try the bot."""
    from adapters.doctor import check_ollama

    for check in await check_ollama(settings):
        if check.status != "OK":
            log.warning("%s; fix: %s", check.what, check.fix)
    if runtime.slack is None and runtime.teams is None:
        log.warning(
            "Slack and Teams are both off (SLACK_BOT_TOKEN and MICROSOFT_APP_ID are not set), "
            "so nobody can reach this bot yet. Next: `chatbot chat` to try it in this "
            "terminal, `chatbot doctor` to check the setup, and the README's 'Connect Slack' "
            "to add Slack"
        )


def _log_routes(settings: Settings, runtime: Runtime, host: str, port: int) -> None:
    if runtime.socket_mode is not None:
        log.info("Slack: Socket Mode (connecting; /readyz names Slack until it is connected)")
    elif runtime.slack is not None:
        log.info("Slack: HTTP mode at POST /slack/events")
    else:
        log.info("Slack is off (SLACK_BOT_TOKEN is not set)")
    if runtime.teams is not None:
        log.info("Teams: POST /api/messages")
    else:
        log.info("Teams is off (MICROSOFT_APP_ID is not set); /api/messages answers 401")
    log.info("listening on http://%s:%d (memory: %s)", host, port, runtime.memory)


async def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the bot until SIGTERM or SIGINT (Ctrl-C), then drain answers in flight and close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await migrate(settings)
    runtime = await build(settings)
    runner = web.AppRunner(build_web_app(runtime), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        await runtime.close()
        raise
    runtime.start()
    connecting: asyncio.Task[None] | None = None
    if runtime.slack is not None and settings.slack_app_token is not None:
        from adapters.slack.socket_mode import SocketMode

        runtime.socket_mode = SocketMode(
            app=runtime.slack.app,
            app_token=settings.slack_app_token.get_secret_value(),
            api_url=settings.slack_api_url,
        )
        connecting = asyncio.create_task(runtime.socket_mode.run(), name="slack-socket-mode")
    _log_routes(settings, runtime, host, port)
    await first_steps(settings, runtime)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing answers in flight")
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        if runtime.socket_mode is not None:
            await runtime.socket_mode.close()
        await site.stop()
        runtime.stop_taking_work()
        await runtime.tracker.drain(settings.shutdown_grace_seconds)
        await runner.cleanup()
        await runtime.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
