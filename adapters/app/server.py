"""The one HTTP server: Slack, Teams, health, readiness; and the serve lifecycle."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.api.routes import API_ROUTES
from adapters.app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from adapters.app.settings import Settings
from adapters.app.wiring import Runtime, build_runtime
from bot import database

log = logging.getLogger(__name__)
# What to tell the operator once the bot listens (the CLI passes doctor's advice).
Advice = Callable[[Settings, Runtime], Awaitable[None]]

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
MAX_BODY_BYTES = 1024 * 1024
# After the drain, closing connections gets this long (what is not closed by then is left
# behind), and with exiting STOP_SECONDS: a process still running then prints every
# thread's stack to stderr and exits with code 1. One asked to stop stops.
CLOSE_SECONDS = 10.0
STOP_SECONDS = 15.0
HTTP_CLOSE_SECONDS = 5.0  # requests still open after the drain (answers are queued work)


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


async def _team_api(request: web.Request) -> web.StreamResponse:
    api = request.app[RUNTIME].api
    if api is None:
        raise web.HTTPNotFound()
    return await api.handle(request)


def build_web_app(runtime: Runtime) -> web.Application:
    """The aiohttp application serving every route of the contract."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = runtime
    app.router.add_post("/slack/events", _slack_events)
    app.router.add_post("/api/messages", _teams_messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    for method, path in API_ROUTES:
        app.router.add_route(method, path, _team_api)
    # (runtime is None where a test lists the routes only.)
    if runtime is not None and runtime.admin is not None and runtime.analytics is not None:
        from adapters.admin import no_bearer_tokens, register_admin_routes

        register_admin_routes(
            app,
            sign_in=runtime.admin,
            reader=runtime.analytics,
            public_url=runtime.settings.effective_public_url,
            show_questions=runtime.settings.analytics_show_questions,
            # An admin's personal token (the team API's) works for scripts.
            resolve_bearer=runtime.api.token_user if runtime.api is not None else no_bearer_tokens,
        )
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


def bad_database(exc: database.DatabaseError) -> StartupError:
    return StartupError(f"{exc}: correct DATABASE_URL (`chatbot doctor` checks it)")


async def build(
    settings: Settings, worker: Worker | None = None, *, socket_mode: bool = False
) -> Runtime:
    """The runtime (of one worker of `serve --workers`; ``socket_mode``: the one holding
    Slack's Socket Mode connection), or StartupError with one line saying what to correct."""
    worker = worker or Worker()
    try:
        return await build_runtime(
            settings,
            model_slots=worker.share(settings.ollama_max_concurrency),
            socket_mode=socket_mode,
        )
    except database.DatabaseError as exc:  # e.g. a DATABASE_URL no driver understands
        raise bad_database(exc) from exc


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
    log.info("listening on http://%s:%d (memory: %s)", host, port, runtime.memory_backend)


@dataclass(frozen=True, slots=True)
class Worker:
    """Which process of `chatbot serve` this one is: the only one (it accepts and answers),
    or with `--workers N` the ingress (it accepts HTTP and Socket Mode and queues the work)
    or answer worker ``index`` of ``count`` (it answers from the work stream)."""

    index: int = 0
    count: int = 1
    accepts: bool = True  # serves HTTP (and Socket Mode): acks never wait behind answers
    consumes: bool = True  # answers from the Redis work stream

    @classmethod
    def ingress(cls, count: int) -> Worker:
        """The process accepting for ``count`` answer workers; it answers only what it
        cannot queue (Redis down), with one worker's share of the model slots."""
        return cls(0, count, accepts=True, consumes=False)

    @classmethod
    def answering(cls, index: int, count: int) -> Worker:
        return cls(index, count, accepts=False, consumes=True)

    @property
    def name(self) -> str:
        return f"answer worker {self.index}" if self.consumes else "ingress process"

    def share(self, total: int) -> int:
        """This worker's part of ``total`` slots (at least one): the model servers' limit
        holds across the workers as long as it is at least their number."""
        return max(1, total // self.count + (1 if self.index < total % self.count else 0))


async def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    worker: Worker = Worker(),
    advise: Advice | None = None,
) -> None:
    """Run the bot until SIGTERM or SIGINT (Ctrl-C), then drain answers in flight and close.
    With ``sock`` (a process of `run_workers`), the supervisor has applied the migrations and
    the ingress accepts on that shared, listening socket; an answer worker accepts nothing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if sock is None:
        await migrate(settings)
    elif not worker.accepts:
        sock.close()  # the ingress process accepts
    runtime = await build(settings, worker, socket_mode=worker.accepts)
    runner: web.AppRunner | None = None
    site: web.BaseSite | None = None
    if worker.accepts:
        # A client that hangs up cancels its request's handler (aiohttp's default is not
        # to; its TestServer always does, which is what the in-process tests saw): a team
        # API answer collected for it then stops instead of generating for nobody. Slack
        # and Teams events are queued before they are acknowledged, and a sender that got
        # no answer sends again.
        runner = web.AppRunner(
            build_web_app(runtime),
            access_log=None,
            shutdown_timeout=HTTP_CLOSE_SECONDS,
            handler_cancellation=True,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, port) if sock is None else web.SockSite(runner, sock)
            await site.start()
            # Port 0: any free port; say the one taken.
            port = runner.addresses[0][1] if runner.addresses else port
        except BaseException:
            await runner.cleanup()
            await runtime.close()
            raise
    runtime.start(answers=worker.consumes)
    if not gc.isenabled():  # `chatbot serve` paused the collector for start-up: it is over
        gc.freeze()
        gc.enable()
    connecting: asyncio.Task[None] | None = None
    if runtime.socket_mode is not None:
        connecting = asyncio.create_task(runtime.socket_mode.run(), name="slack-socket-mode")
    if worker.accepts:  # said once for the whole group
        _log_routes(settings, runtime, host, port)
        if advise is not None:
            await advise(settings, runtime)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing answers in flight")
        _exit_after(settings.shutdown_grace_seconds + STOP_SECONDS)
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        if runtime.socket_mode is not None:
            await runtime.socket_mode.close()
        if site is not None:
            await site.stop()
        runtime.stop_taking_work()
        await runtime.tracker.drain(settings.shutdown_grace_seconds)
        _exit_after(STOP_SECONDS)  # left armed: exiting included
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                if runner is not None:
                    await runner.cleanup()
                await runtime.close()
        except TimeoutError:
            log.error("closing connections took over %.0f s: stopping without them", CLOSE_SECONDS)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _exit_after(seconds: float) -> None:
    """Unless the process has exited ``seconds`` from now, print every thread's stack to
    stderr and exit with code 1 (replaces the previous deadline)."""
    try:
        faulthandler.dump_traceback_later(seconds, exit=True)
    except (RuntimeError, ValueError, AttributeError):  # no stderr to write to
        pass
