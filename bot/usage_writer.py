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


class UsageWriter:
    """Buffers records for a moment and stores them in one transaction: one database round
    trip per batch instead of per answer."""

    def __init__(
        self, *, ledger: Ledger, tracker: TaskTracker, delay: float = FLUSH_DELAY_SECONDS
    ) -> None:
        self._ledger = ledger
        self._tracker = tracker
        self._delay = delay
        self._buffer: list[UsageRecord] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, record: UsageRecord) -> None:
        """Queue a record; it is written within the flush delay."""
        if len(self._buffer) >= MAX_BUFFERED:
            log.warning("usage ledger backlog full; dropping the oldest record")
            del self._buffer[0]
        self._buffer.append(record)
        if self._flusher is None:
            self._flusher = self._tracker.spawn(self._flush_later(), name="usage-writer")

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._delay)
            await self.flush()
        finally:
            # Records kept after a failure are retried with the next answer's flush.
            self._flusher = None

    async def flush(self) -> None:
        """Write everything buffered now; on a database error keep it for the next try."""
        while self._buffer:
            batch = self._buffer[:MAX_BATCH]
            try:
                await self._ledger.record_many(batch)
            except DatabaseError:
                log.warning(
                    "usage ledger unavailable; %d records kept for later",
                    len(self._buffer),
                    exc_info=True,
                )
                return
            del self._buffer[: len(batch)]

    @property
    def pending(self) -> int:
        """Records not written yet."""
        return len(self._buffer)
