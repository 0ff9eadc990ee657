"""Conversation locks: one answer at a time per conversation, taken before its history is
read and held until the answer is remembered, across replicas."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

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
class _Hold:
    task: asyncio.Task[Any] | None
    token: str
    history: list[Any] | None  # read with the lock, until the holder asks for it
    released: bool = False


class HeldLocks:
    """The conversation locks this process holds, shared by `RedisLocks` and `RedisMemory`:
    the history read together with the lock, and the release that goes with the answer's
    append (fewer round trips per answer). Only the task that took a lock sees its entry."""

    def __init__(self) -> None:
        self._holds: dict[ConversationKey, _Hold] = {}

    def _mine(self, key: ConversationKey) -> _Hold | None:
        hold = self._holds.get(key)
        if hold is None or hold.released or hold.task is not asyncio.current_task():
            return None
        return hold

    def take_history(self, key: ConversationKey) -> list[Any] | None:
        """The history read with this task's lock on ``key`` (once), else None."""
        hold = self._mine(key)
        if hold is None or hold.history is None:
            return None
        history, hold.history = hold.history, None
        return history

    def token(self, key: ConversationKey) -> str | None:
        """This task's lock token on ``key``, to release the lock with a last write."""
        hold = self._mine(key)
        return None if hold is None else hold.token

    def add(self, key: ConversationKey, hold: _Hold) -> None:
        """Note a lock just taken."""
        self._holds[key] = hold

    def drop(self, key: ConversationKey, hold: _Hold) -> None:
        """Forget a lock given up."""
        if self._holds.get(key) is hold:
            del self._holds[key]

    def released(self, key: ConversationKey) -> None:
        """This task's lock on ``key`` was released by a last write."""
        hold = self._mine(key)
        if hold is not None:
            hold.released = True


class RedisLocks:
    """Redis locks with a short TTL renewed while held: a crashed holder frees the
    conversation within the TTL, a long answer keeps it."""

    def __init__(
        self,
        *,
        redis: Redis,
        ttl_seconds: float = LOCK_TTL_SECONDS,
        wait_seconds: float = LOCK_WAIT_SECONDS,
        held: HeldLocks | None = None,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._held = held or HeldLocks()
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @asynccontextmanager
    async def lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """Hold ``key``'s lock, renewing it, until the block ends (or the answer's append
        released it)."""
        name, token, ttl_ms = keys.lock(key), uuid.uuid4().hex, int(self._ttl * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        with translated_redis_errors("taking a conversation lock"):
            while True:
                got = await self._acquire(keys=[name, keys.history(key)], args=[token, ttl_ms])
                if int(got[0]):
                    break
                if loop.time() >= deadline:
                    raise ConversationBusy(f"conversation still locked after {self._wait} s")
                await asyncio.sleep(0.05)
        hold = _Hold(asyncio.current_task(), token, list(got[1]))
        self._held.add(key, hold)

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
            yield
        finally:
            renewal.cancel()
            self._held.drop(key, hold)
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
