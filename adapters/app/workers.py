"""`chatbot serve --workers N`: the supervisor forks an ingress process (it accepts HTTP and
Socket Mode) and N answer workers (they answer from the Redis work stream), all sharing one
listening socket, and stops them together."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile

from adapters.app.metrics import share_between_processes
from adapters.app.server import (
    Advice,
    StartupError,
    Worker,
    bad_database,
    migrate,
    serve,
)
from adapters.app.settings import Settings
from bot import database
from inference.ollama import tls_context

log = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 4
PR_SET_PDEATHSIG = 1  # prctl(2)
ANSWER_WORKER_NICENESS = 5  # a third of the ingress process's CPU weight when both run


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
        tls_context()  # the Ollama clients' CA bundle, loaded once for every process
        # The processes share the supervisor's pages (the imports) until one writes to
        # them: keep the collector from writing to every object it tracks.
        gc.freeze()
        for worker in group:
            pid = os.fork()
            if pid == 0:
                os._exit(_worker_main(settings, sock, host, port, worker, supervisor, advise))
            children[pid] = worker
        gc.enable()  # paused for start-up by `chatbot serve`
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
        raise bad_database(exc) from exc
    await engine.dispose()


def _stop_with_supervisor(supervisor: int) -> None:
    """Get SIGTERM (and drain) when the supervisor dies, even by SIGKILL (Linux): no
    process of the group is left behind holding the port or the work."""
    try:
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
