"""The background send loop both reply sinks share: the first piece of an answer goes out at
once, later pieces at most once per interval (the platform's pace), the rest on close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SendLoop:
    """Paces one reply's sends. The sink supplies ``flush`` (send what is buffered; False
    stops the loop, e.g. when the user pressed Stop), ``pending`` (is text still buffered)
    and ``finish`` (end the reply once everything is sent)."""

    def __init__(
        self,
        *,
        flush: Callable[[], Awaitable[bool]],
        pending: Callable[[], bool],
        finish: Callable[[], Awaitable[None]],
        interval: Callable[[], float],
    ) -> None:
        self._flush = flush
        self._pending = pending
        self._finish = finish
        self._interval = interval
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether anything was handed to the loop yet."""
        return self._task is not None

    @property
    def closing(self) -> bool:
        """Whether the reply is being closed (no more text will come)."""
        return self._closing.is_set()

    def poke(self) -> None:
        """New text is buffered: start the loop, or wake it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def close(self) -> None:
        """Send what is left, finish, and wait for the loop to end (if it ever started)."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._flush():
                return
            if self._closing.is_set():
                if self._pending():
                    continue
                await self._finish()
                return
            try:
                async with asyncio.timeout(self._interval()):
                    await self._closing.wait()
            except TimeoutError:
                pass
