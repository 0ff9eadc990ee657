"""Writes usage records to the ledger in batches, off the answer path."""

from __future__ import annotations

import asyncio
import logging

from bot.database import DatabaseError
from bot.ledger import Ledger
from bot.tasks import TaskTracker
from bot.usage import UsageRecord

log = logging.getLogger(__name__)

FLUSH_DELAY_SECONDS = 0.2
MAX_BATCH = 500
# While the database is down, keep at most this many records to write when it is back.
MAX_BUFFERED = 10_000
# While the database is down, try again after this long, doubling up to the maximum: kept
# records are written within RETRY_MAX_SECONDS of its return, even if nobody asks meanwhile.
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0


class UsageWriter:
    """Buffers records for a moment and stores them in one transaction: one database round
    trip per batch instead of per answer."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        tracker: TaskTracker,
        delay: float = FLUSH_DELAY_SECONDS,
    ) -> None:
        self._ledger = ledger
        self._tracker = tracker
        self._delay = delay
        self._buffer: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None
        # A timer, not a task: waiting out an outage must not keep the tracker busy.
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0

    def add(self, record: UsageRecord) -> None:
        """Queue a record; it is written within the flush delay."""
        if len(self._buffer) >= MAX_BUFFERED:
            log.warning("usage ledger backlog full; dropping the oldest record")
            del self._buffer[0]
        self._buffer.append(record)
        self._schedule(self._delay)

    def _schedule(self, delay: float) -> None:
        if self._flusher is None:
            self._flusher = self._tracker.spawn(self._flush_later(delay), name="usage-writer")

    async def _flush_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self.flush()
        finally:
            self._flusher = None
        if self._buffer and self._failures and self._retry is None:
            backoff = min(RETRY_MIN_SECONDS * 2 ** (self._failures - 1), RETRY_MAX_SECONDS)
            self._retry = asyncio.get_running_loop().call_later(backoff, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if self._buffer:
            self._schedule(0)

    async def flush(self) -> None:
        """Write everything buffered now; on a database error keep it for the next try."""
        while self._buffer:
            batch = self._buffer[:MAX_BATCH]
            try:
                await self._ledger.record_many(batch)
            except DatabaseError:
                self._failures += 1
                log.log(
                    logging.WARNING if self._failures == 1 else logging.DEBUG,
                    "usage ledger unavailable; %d records kept for later",
                    len(self._buffer),
                    exc_info=True,
                )
                return
            del self._buffer[: len(batch)]
            if self._failures:
                log.info("usage ledger back; kept records written")
                self._failures = 0

    @property
    def pending(self) -> int:
        """Records not written yet."""
        return len(self._buffer)
