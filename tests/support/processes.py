"""Running the real `chatbot` console script as a separate process, as operators do."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis_server(port: int, workdir: Path, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """A throwaway `redis-server` on 127.0.0.1:``port`` keeping nothing on disk, once it
    answers PING."""
    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ping():
                client.close()
                return proc
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"redis-server did not start within {timeout:g} s")
        time.sleep(0.02)


def postgres_bindir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin; None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions.sort(key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster (made by `initdb`) in a temporary directory, listening
    on 127.0.0.1:``port`` only; `start` and `stop` it to make an outage. Run as the
    `postgres` user when this process is root (PostgreSQL refuses to run as root)."""

    def __init__(self, bindir: Path, workdir: Path, port: int) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str, timeout: float) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.workdir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(
                f"{args[0]} {args[1] if len(args) > 1 else ''} failed: "
                f"{done.stdout}{done.stderr}{tail}"
            )

    def init(self, timeout: float = 60.0) -> None:
        """Create the cluster: trust authentication on 127.0.0.1, no fsync (throwaway)."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions", timeout=timeout,
        )  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.workdir / "server.log"),
            "-o", options, "-w", "-t", str(int(timeout)), timeout=timeout + 5,
        )  # fmt: skip

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server (``mode``: smart, fast or immediate) and wait until it is gone."""
        self._run(
            "pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)),
            timeout=timeout + 5,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        """Whether the server's postmaster.pid is present (it is removed on a clean stop)."""
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """Stop a server still running however it can, for clean-up."""
        if not self.running:
            return
        try:
            self.stop("immediate", timeout=15)
        except (AssertionError, subprocess.TimeoutExpired):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started throwaway PostgreSQL cluster on a free port; stopped and deleted on exit,
    also when the test fails. Raises LookupError when PostgreSQL is not installed."""
    bindir = postgres_bindir()
    if bindir is None:
        raise LookupError("PostgreSQL (initdb, pg_ctl) is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="chatbot-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
        cluster = PostgresCluster(bindir, workdir, free_port())
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def wait_healthy(url: str, timeout: float = 60.0) -> None:
    """Poll GET /healthz until it answers 200 (the bound is generous: on a loaded 2-core
    machine three replicas starting at once took over 15 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"chatbot serve did not come up at {url}")


async def start_serve(
    env: dict[str, str],
    cwd: Path,
    *,
    output: bool = True,
    wait: bool = True,
    workers: int | None = 1,
) -> tuple[str, asyncio.subprocess.Process]:
    """`chatbot serve --workers N` (one process unless asked; None: the default) on a free
    port with ``env`` on top of this environment; its URL and process (stdout and stderr
    together on a pipe when ``output``)."""
    port = free_port()
    stream = asyncio.subprocess.PIPE if output else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        CHATBOT,
        "serve",
        "--host",
        "127.0.0.1",
        *(["--workers", str(workers)] if workers is not None else []),
        env={**os.environ, **env, "PORT": str(port)},
        cwd=cwd,
        stdout=stream,
        stderr=asyncio.subprocess.STDOUT if output else asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if wait:
        try:
            await wait_healthy(url)
        except AssertionError as exc:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            said = await proc.stdout.read() if proc.stdout is not None else b""
            raise AssertionError(
                f"{exc} (exit code {proc.returncode}): {said.decode(errors='replace')[-3000:]}"
            ) from None
    return url, proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Kill a process still running (test clean-up)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
