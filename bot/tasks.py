"""Background work that outlives the request which started it, tracked until done."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

CANCEL_SECONDS = 5.0  # a cancelled answer's clean-up at shutdown


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and the cancellation was
    lost on the way. Loops that run until they are cancelled call it once a round.

    On Python 3.11, ``asyncio.wait_for`` returns the result of an operation that ends just
    as its task is cancelled, and the cancellation is gone (fixed in 3.12, CPython issue
    86296). redis-py sends every command through it when a socket timeout is set, so a loop
    that talks to Redis could miss its cancellation and run on for good: shutdown waited
    for it, and a lease kept being renewed. The request is still counted
    (``Task.cancelling()``) when its exception was swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TaskTracker:
    """Keeps strong references to background tasks and drains them on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; its exceptions are logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no task runs (including tasks spawned meanwhile); False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def drain(self, grace: float) -> None:
        """Let running tasks finish within ``grace`` seconds, then cancel the rest and give
        them ``CANCEL_SECONDS`` to end (their clean-up: a last message, a lock released)."""
        if not await self.wait_idle(grace):
            pending = list(self._tasks)
            if not pending:
                return
            log.warning("cancelling %d unfinished answers after %.0fs", len(pending), grace)
            for task in pending:
                task.cancel()
            _, stuck = await asyncio.wait(pending, timeout=CANCEL_SECONDS)
            if stuck:
                log.warning("%d cancelled answers did not end in time", len(stuck))
