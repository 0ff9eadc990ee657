"""Running the real `chatbot` console script as a separate process, as operators do."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
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


async def wait_healthy(url: str, timeout: float = 15.0) -> None:
    """Poll GET /healthz until it answers 200."""
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
    env: dict[str, str], cwd: Path, *, output: bool = True, wait: bool = True
) -> tuple[str, asyncio.subprocess.Process]:
    """`chatbot serve` on a free port with ``env`` on top of this environment; its URL and
    process (stdout and stderr together on a pipe when ``output``)."""
    port = free_port()
    stream = asyncio.subprocess.PIPE if output else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        CHATBOT,
        "serve",
        "--host",
        "127.0.0.1",
        env={**os.environ, **env, "PORT": str(port)},
        cwd=cwd,
        stdout=stream,
        stderr=asyncio.subprocess.STDOUT if output else asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if wait:
        try:
            await wait_healthy(url)
        except AssertionError:
            proc.kill()
            await proc.wait()
            raise
    return url, proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Kill a process still running (test clean-up)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
