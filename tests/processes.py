"""Running the real `chatbot` console script as a separate process, as operators do."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp

CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
