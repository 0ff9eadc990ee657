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

from redis.exceptions import LockError

from bot import keys
from bot.conversation import ConversationKey
from bot.errors import ConversationBusy
from bot.ratelimit import CHARGE_RATE_LUA, RateCharge, RateLimited
from bot.redis_batch import RedisBatch
from bot.redis_errors import REDIS_ERRORS, translated_redis_errors
from bot.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

_LOCK_ERRORS: tuple[type[Exception], ...] = (LockError, *REDIS_ERRORS)

# A held lock is renewed while its answer runs; a crashed holder's lock expires after this.
LOCK_TTL_SECONDS = 30.0
LOCK_WAIT_SECONDS = 300


# Take the lock and read the conversation's history in one round trip (the history is
# read after the lock is taken, as a separate read would be). With two more keys, the
# question is first counted against its sender's rate limits (``bot.ratelimit``): a refused
# one takes no lock ({2, code}); a counted one whose conversation is busy is not counted
# again when the lock is retried.
_ACQUIRE = (
    CHARGE_RATE_LUA
    + """
if #KEYS == 4 then
  local refused = charge_rate(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]))
  if refused ~= 0 then return {2, refused} end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('LRANGE', KEYS[2], 0, -1)}
end
return {0}
"""
)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class HeldLock:
    """The lock under which a conversation is held (``bot.memory.HeldConversation``): its
    token, what was read with it, and whether a last write (the answer's append) already
    released it."""

    token: str
    read: list[Any]
    released: bool = False


class RedisLocks:
    """Redis locks with a short TTL renewed while held: a crashed holder frees the
    conversation within the TTL, a long answer keeps it."""

    def __init__(
        self,
        *,
        batch: RedisBatch,
        ttl_seconds: float = LOCK_TTL_SECONDS,
        wait_seconds: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self._batch = batch
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._acquire = batch.script(_ACQUIRE)
        self._renew = batch.script(_RENEW)
        self._release = batch.script(_RELEASE)

    @asynccontextmanager
    async def lock(
        self, key: ConversationKey, *, read: str, charge: RateCharge | None = None
    ) -> AsyncIterator[HeldLock]:
        """Hold ``key``'s lock, renewing it, until the block ends (or a last write marked
        the hold released); the list ``read`` is read in the same round trip, and a
        question's ``charge`` is counted first (``RateLimited`` when refused)."""
        name, token, ttl_ms = keys.lock(key), uuid.uuid4().hex, int(self._ttl * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        with translated_redis_errors("taking a conversation lock"):
            while True:
                raise_if_cancelled()
                rate_keys, limits = (charge.keys, charge.limits) if charge else ((), ())
                got = await self._batch.run_script(
                    self._acquire, keys=[name, read, *rate_keys], args=[token, ttl_ms, *limits]
                )
                if charge is not None and int(got[0]) == 2:
                    raise RateLimited(charge.decision(int(got[1])))
                charge = None  # counted (when it was): a retry only waits for the lock
                if int(got[0]):
                    break
                if loop.time() >= deadline:
                    raise ConversationBusy(f"conversation still locked after {self._wait} s")
                await asyncio.sleep(0.05)
        hold = HeldLock(token, list(got[1]))

        async def renew() -> None:
            while not hold.released:
                raise_if_cancelled()
                await asyncio.sleep(self._ttl / 3)
                if hold.released:
                    return
                try:
                    if not await self._batch.run_script(
                        self._renew, keys=[name], args=[token, ttl_ms], carry=False
                    ):
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
                    await self._batch.run_script(self._release, keys=[name], args=[token])
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
