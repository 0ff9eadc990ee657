"""Conversation locks: one answer at a time per conversation, taken before its history is
read and held until the answer is remembered, across replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError

from bot import keys
from bot.conversation import ConversationKey
from bot.errors import ConversationBusy
from bot.redis_errors import REDIS_ERRORS, translated_redis_errors

log = logging.getLogger(__name__)

_LOCK_ERRORS: tuple[type[Exception], ...] = (LockError, *REDIS_ERRORS)

# A held lock is renewed while its answer runs; a crashed holder's lock expires after this.
LOCK_TTL_SECONDS = 30.0
LOCK_WAIT_SECONDS = 300


class ConversationLocks(Protocol):
    """Serialises answers within one conversation."""

    def lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Hold the conversation while one answer is built (history read to append).
        Raises ``ConversationBusy`` when it stays held too long."""
        ...


class RedisLocks:
    """Redis locks with a short TTL renewed while held: a crashed holder frees the
    conversation within the TTL, a long answer keeps it."""

    def __init__(
        self,
        *,
        redis: Redis,
        ttl_seconds: float = LOCK_TTL_SECONDS,
        wait_seconds: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._wait = wait_seconds

    @asynccontextmanager
    async def lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """Hold ``key``'s lock, renewing it, until the block ends."""
        lock = self._redis.lock(
            keys.lock(key), timeout=self._ttl, sleep=0.05, blocking_timeout=self._wait
        )
        with translated_redis_errors("taking a conversation lock"):
            acquired = await lock.acquire()
        if not acquired:
            raise ConversationBusy(f"conversation still locked after {self._wait} s")

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._ttl / 3)
                try:
                    await lock.reacquire()
                except _LOCK_ERRORS:
                    log.warning("could not renew a conversation lock")

        renewal = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            renewal.cancel()
            try:
                await lock.release()
            except _LOCK_ERRORS:
                pass  # expired or Redis gone: the TTL frees it either way


class LocalLocks:
    """An asyncio lock per conversation, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[ConversationKey, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """Hold ``key``'s lock until the block ends."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
