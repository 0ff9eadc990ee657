"""One line per model server for the whole fleet, in Redis: at most the server's limit of
generations at once across every replica and worker, the others waiting first-come,
first-served, each seeing its true place in the fleet's line.

Per server, two sorted sets: the holders of a slot, scored by when their lease ends, and
the line, scored by arrival (a counter), with a third set of the waiters' leases. A holder
renews its lease while it generates; one that dies stops renewing and its slot is free
once the lease ends, as is the place of a waiter that dies. A waiter asks again every
``POLL_SECONDS`` (one short script): a freed slot goes to the first in line within that.
Redis's own clock decides leases, so replicas' clocks may differ. While Redis cannot be
reached, each process keeps its own share of the limit (``fallback``), as without Redis.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from bot import keys
from bot.outages import log_outage
from bot.redis_batch import RedisBatch
from bot.redis_errors import REDIS_ERRORS
from bot.tasks import raise_if_cancelled
from inference.base import Overloaded
from inference.pool import QUEUE_NOTICE_AFTER, SlotLine, SlotTicket

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0  # a dead holder's slot is free within this
POLL_SECONDS = 0.1  # how often a waiter asks for a slot

# KEYS: holders, line, waiter leases, arrival counter. ARGV: ticket, limit, lease ms,
# max waiting. Returns {1, 0} when the slot is taken, {0, place} while waiting, {-1, 0}
# when the line is full.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end
local lease = now + tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return {-1, 0} end
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if rank < free then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[1], lease, ARGV[1])
  return {1, 0}
end
redis.call('ZADD', KEYS[3], lease, ARGV[1])
local ahead = rank - math.max(free, 0)
return {0, ahead + 1}
"""
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
"""


class RedisModelLine:
    """The fleet's line for one model server (``inference.pool.SlotLine``)."""

    def __init__(
        self,
        *,
        redis: Redis,
        server: str,
        limit: int,
        max_waiting: int,
        fallback: SlotLine,
        batch: RedisBatch | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._redis = redis
        batch = batch or RedisBatch(redis=redis)
        self._take = batch.script(_TAKE)
        self._renew = batch.script(_RENEW)
        self._batch = batch
        self._keys = keys.model_line(server)
        self.limit = limit
        self.max_waiting = max_waiting
        self.lease_ms = int(lease_seconds * 1000)
        self.poll = poll_seconds
        self._waiting = 0
        self.fallback = fallback

    @property
    def waiting(self) -> int:
        """Requests of this process in line."""
        return self._waiting + self.fallback.waiting

    def join(self) -> SlotTicket:
        """A ticket for one request."""
        return _RedisTicket(self)

    async def take(self, ticket: str) -> tuple[int, int]:
        """One try: (1, 0) taken, (0, place) waiting, (-1, 0) the line is full."""
        result: Any = await self._batch.run_script(
            self._take,
            keys=list(self._keys),
            args=[ticket, self.limit, self.lease_ms, self.max_waiting],
            carry=False,
        )
        return int(result[0]), int(result[1])

    async def renew(self, ticket: str) -> None:
        """Extend a held slot's lease."""
        await self._batch.run_script(
            self._renew, keys=[self._keys[0]], args=[ticket, self.lease_ms], carry=False
        )

    def leave(self, ticket: str) -> None:
        """Free the slot or the place in line, with this process's next round trip (the
        answer's own last writes, moments later): no round trip of its own."""
        holders, line, leases, _ = self._keys
        self._batch.defer(*(("ZREM", name, ticket) for name in (holders, line, leases)))

    def count(self, delta: int) -> None:
        self._waiting += delta


class _RedisTicket:
    def __init__(self, line: RedisModelLine) -> None:
        self._line = line
        self._id = uuid.uuid4().hex
        self._renewing: asyncio.Task[None] | None = None
        self._joined = False
        self._local: SlotTicket | None = None  # this process's share, while Redis is down

    async def wait(self) -> AsyncIterator[int]:
        line = self._line
        try:
            async for place in self._wait_in_redis():
                yield place
        except REDIS_ERRORS as exc:
            log_outage(log, "model servers' line: Redis unavailable; this process's share", exc)
            await self.release()
            self._local = line.fallback.join()
            async for place in self._local.wait():
                yield place

    async def _wait_in_redis(self) -> AsyncIterator[int]:
        line = self._line
        loop = asyncio.get_running_loop()
        started = loop.time()
        shown = 0
        self._joined = True
        taken, place = await self._try()
        if not taken:
            line.count(1)
            try:
                while not taken:
                    raise_if_cancelled()
                    if place and place != shown and loop.time() - started >= QUEUE_NOTICE_AFTER:
                        shown = place
                        yield place
                    await asyncio.sleep(line.poll)
                    taken, place = await self._try()
            finally:
                line.count(-1)
        self._renewing = asyncio.create_task(self._renew(), name="model-slot-lease")

    async def _try(self) -> tuple[bool, int]:
        taken, place = await self._line.take(self._id)
        if taken < 0:
            raise Overloaded("the waiting line is full")
        return taken == 1, place

    async def _renew(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self._line.lease_ms / 3000)
            try:
                await self._line.renew(self._id)
            except REDIS_ERRORS:
                log.warning("could not renew a model slot's lease")

    async def release(self) -> None:
        if self._local is not None:
            await self._local.release()
            self._local = None
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if not self._joined:
            return
        self._joined = False
        self._line.leave(self._id)  # if Redis is down then, the lease frees it
