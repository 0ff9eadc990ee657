"""Conversation locks: one answer at a time per conversation, taken before its history is
read and held until the answer is remembered, across replicas. ``bot.memory`` holds a
conversation with them (``Memory.hold``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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


# Take the lock and read the conversation's history in one round trip (the history is
# read after the lock is taken, as a separate read would be).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('LRANGE', KEYS[2], 0, -1)}
end
return {0}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class RedisHold:
    """A lock this answer holds: its token, what was read with it, and whether a last
    write (the answer's append) already released it."""

    token: str
    read: list[Any]
    released: bool = False


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
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @asynccontextmanager
    async def lock(self, key: ConversationKey, *, read: str) -> AsyncIterator[RedisHold]:
        """Hold ``key``'s lock, renewing it, until the block ends (or a last write marked
        the hold released); the list ``read`` is read in the same round trip."""
        name, token, ttl_ms = keys.lock(key), uuid.uuid4().hex, int(self._ttl * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        with translated_redis_errors("taking a conversation lock"):
            while True:
                got = await self._acquire(keys=[name, read], args=[token, ttl_ms])
                if int(got[0]):
                    break
                if loop.time() >= deadline:
                    raise ConversationBusy(f"conversation still locked after {self._wait} s")
                await asyncio.sleep(0.05)
        hold = RedisHold(token, list(got[1]))

        async def renew() -> None:
            while not hold.released:
                await asyncio.sleep(self._ttl / 3)
                if hold.released:
                    return
                try:
                    if not await self._renew(keys=[name], args=[token, ttl_ms]):
                        log.warning("could not renew a conversation lock (it expired)")
                except _LOCK_ERRORS:
                    log.warning("could not renew a conversation lock")

        renewal = loop.create_task(renew())
        try:
            yield hold
        finally:
            renewal.cancel()
            if not hold.released:
                try:
                    await self._release(keys=[name], args=[token])
                except _LOCK_ERRORS:
                    pass  # Redis gone: the TTL frees it


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
