"""The one HTTP server: Slack, Teams, health, readiness; and the serve lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from adapters.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from adapters.settings import Settings
from adapters.wiring import Runtime, build_runtime
from bot import database

log = logging.getLogger(__name__)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
MAX_BODY_BYTES = 1024 * 1024


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


async def _slack_events(request: web.Request) -> web.Response:
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
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = runtime
    app.router.add_post("/slack/events", _slack_events)
    app.router.add_post("/api/messages", _teams_messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def migrate(settings: Settings) -> None:
    """Apply database migrations; a failure is logged and shows in /readyz."""
    try:
        await asyncio.to_thread(database.upgrade, settings.database_url)
    except Exception:
        log.exception("database migration failed; run `chatbot db upgrade` to see why")


async def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the bot until SIGTERM or SIGINT, then drain answers in flight and close."""
    await migrate(settings)
    runtime = await build_runtime(settings)
    runtime.start()
    runner = web.AppRunner(build_web_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    socket_mode = None
    if runtime.slack is not None and settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        socket_mode = AsyncSocketModeHandler(
            runtime.slack.app, settings.slack_app_token.get_secret_value()
        )
        await socket_mode.connect_async()
        log.info("Slack: Socket Mode connected")
    elif runtime.slack is not None:
        log.info("Slack: HTTP mode at POST /slack/events")
    else:
        log.info("Slack is off (SLACK_BOT_TOKEN is not set)")
    if runtime.teams is not None:
        log.info("Teams: POST /api/messages")
    else:
        log.info("Teams is off (MICROSOFT_APP_ID is not set); /api/messages answers 401")
    log.info("listening on http://%s:%d (memory: %s)", host, port, runtime.memory)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing answers in flight")
        if socket_mode is not None:
            await socket_mode.close_async()
        await site.stop()
        runtime.stop_taking_work()
        await runtime.tracker.drain(settings.shutdown_grace_seconds)
        await runner.cleanup()
        await runtime.close()
