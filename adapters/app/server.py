"""The one HTTP server: Slack, Teams, health, readiness; and the serve lifecycle."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from adapters.api.routes import API_ROUTES
from adapters.app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from adapters.app.metrics import share_between_processes
from adapters.app.settings import Settings
from adapters.app.wiring import Runtime, build_runtime
from bot import database

log = logging.getLogger(__name__)
# What to tell the operator once the bot listens (the CLI passes doctor's advice).
Advice = Callable[[Settings, Runtime], Awaitable[None]]

MAX_DEFAULT_WORKERS = 4
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
MAX_BODY_BYTES = 1024 * 1024
PR_SET_PDEATHSIG = 1  # prctl(2)
# After the drain, closing connections gets this long (what is not closed by then is left
# behind), and with exiting STOP_SECONDS: a process still running then prints every
# thread's stack to stderr and exits with code 1. One asked to stop stops.
CLOSE_SECONDS = 10.0
STOP_SECONDS = 15.0
HTTP_CLOSE_SECONDS = 5.0  # requests still open after the drain (answers are queued work)
ANSWER_WORKER_NICENESS = 5  # a third of the ingress process's CPU weight when both run


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


def _bad_database(exc: database.DatabaseError) -> StartupError:
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
        raise _bad_database(exc) from exc


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
        runner = web.AppRunner(
            build_web_app(runtime), access_log=None, shutdown_timeout=HTTP_CLOSE_SECONDS
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


def default_workers() -> int:
    """The number of cores this process may run on, at most MAX_DEFAULT_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port for the workers to share (OSError if taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def run_workers(
    settings: Settings, *, host: str, port: int, workers: int, advise: Advice | None = None
) -> int:
    """`chatbot serve --workers N`: bind the port, apply migrations once, then fork an
    ingress process, which accepts on the socket (and opens Socket Mode) and queues the work,
    and N answer workers, which consume the Redis work stream: an ack never waits behind
    answer work. SIGTERM or SIGINT stops them all (each drains its answers in flight); the
    exit code is 0 when every process stopped cleanly. A process that dies on its own stops
    the group, so the process manager (systemd, Docker) restarts the whole bot."""
    sock = listen(host, port)
    try:
        asyncio.run(_prepare(settings))
    except BaseException:
        sock.close()
        raise
    shared_metrics = tempfile.mkdtemp(prefix="chatbot-metrics-")
    share_between_processes(shared_metrics)
    children: dict[int, Worker] = {}
    supervisor = os.getpid()
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # Signals wait until every process is forked and the handlers are in place.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    previous = {sig: signal.signal(sig, stop_all) for sig in stop_signals}
    try:
        group = [Worker.ingress(workers)]
        group += [Worker.answering(index, workers) for index in range(workers)]
        for worker in group:
            pid = os.fork()
            if pid == 0:
                os._exit(_worker_main(settings, sock, host, port, worker, supervisor, advise))
            children[pid] = worker
        sock.close()  # only the ingress accepts
        pids = list(children)
        log.info(
            "started an ingress process (%d) and %d answer workers (%s)",
            pids[0],
            workers,
            ", ".join(map(str, pids[1:])),
        )
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    code = 0
    try:
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in children:
                continue
            worker = children.pop(pid)
            exit_code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error(
                    "%s (pid %d) exited (code %d): stopping the others",
                    worker.name,
                    pid,
                    exit_code,
                )
                code = exit_code if exit_code > 0 else 1
                stop_all()
            elif exit_code != 0 and code == 0:
                code = exit_code if exit_code > 0 else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(shared_metrics, ignore_errors=True)
    return code


async def _prepare(settings: Settings) -> None:
    """What the workers would each find wrong is found once, before they start."""
    await migrate(settings)
    try:
        engine = database.create_engine(settings.effective_database_url)
    except database.DatabaseError as exc:
        raise _bad_database(exc) from exc
    await engine.dispose()


def _stop_with_supervisor(supervisor: int) -> None:
    """Get SIGTERM (and drain) when the supervisor dies, even by SIGKILL (Linux): no
    process of the group is left behind holding the port or the work."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != supervisor:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    settings: Settings,
    sock: socket.socket,
    host: str,
    port: int,
    worker: Worker,
    supervisor: int,
    advise: Advice | None = None,
) -> int:
    """The body of one forked process (ingress or answer worker); its exit code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _stop_with_supervisor(supervisor)
    if not worker.accepts:
        # On shared cores the kernel's run queue is the last queue an ack can wait in: the
        # answer workers yield the CPU to the ingress process.
        os.nice(ANSWER_WORKER_NICENESS)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    code = 0
    try:
        asyncio.run(serve(settings, host=host, port=port, sock=sock, worker=worker, advise=advise))
    except StartupError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        code = 130
    except BaseException:
        log.exception("%s stopped on an error", worker.name)
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return code
