"""Fewer Redis round trips: writes that need no answer wait for the next round trip this
process makes and go in the same pipeline.

A thread marked engaged, a posted message noted, an answer remembered (with its
conversation's lock released), a job acknowledged: each is ``defer``-red. The next awaited
call (``execute`` or ``run_script``) sends them first, in one pipeline with itself; what no
call carries within ``flush_after`` seconds is sent on its own (``flush`` sends it at once).
A call that carries deferred writes sees them (they go first in its pipeline). Calls that
may be cancelled midway (pacing reservations, lock renewals) and the queueing an
acknowledgement waits for do not carry them (``carry=False``): a cancelled carrier could
lose them. Calls already in flight on other connections are not waited for, so another
connection may read a deferred write a moment late: what must be ordered is ordered by
Redis itself (an answer's memory is written by the script that releases its
conversation's lock, which the next answer must take first).

The round trips of one answer, in order, and what rides in each (``tests/bot/test_round_trips.py``
counts them):

1. the work entry queued (``bot.workqueue``, XADD; the dedupe mark rides with it);
2. the conversation held (``bot.memory`` HOLD script): the lock taken, the question's rate
   limit charged (``bot.ratelimit.RateCharge``) and the history read in one script; a thread
   marked engaged (``bot.engagement``) was deferred and rides in front of it;
3. the Slack budget's slot for the reply (``bot.ratelimit.RedisCallPacer``, ``carry=False``);
4. the answer remembered by the APPEND script, which also renews the thread's engagement and
   releases the lock, then the work entry's acknowledgement, deferred after it: both in one
   pipeline, the acknowledgement last, so an entry is never acknowledged before its answer
   is in memory (if the pipeline is lost, the entry stays pending and is answered again).

A deferred write that fails is logged, not raised: its caller has moved on. One that
cannot be sent because Redis is down is lost with the connection, as a direct write would
be; the work queue's entry of an answer whose writes are lost stays pending and is
answered again (``bot.workqueue``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from bot.redis_errors import REDIS_ERRORS

log = logging.getLogger(__name__)

FLUSH_AFTER_SECONDS = 0.005
Command = tuple[Any, ...]


class RedisBatch:
    """One Redis client's deferred writes, carried by its next round trip."""

    def __init__(self, *, redis: Redis, flush_after: float | None = None) -> None:
        self.redis = redis
        self._flush_after = FLUSH_AFTER_SECONDS if flush_after is None else flush_after
        self._pending: list[Command] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()  # sending what nothing carried
        self._in_flight: set[asyncio.Future[None]] = set()  # round trips carrying writes

    def script(self, source: str) -> AsyncScript:
        """A Lua script to ``run_script`` (registered on this client)."""
        return self.redis.register_script(source)

    def defer(self, *commands: Command) -> None:
        """Send ``commands`` (``("SET", key, value, "EX", 60)``...) with the next round
        trip, at the latest after ``flush_after`` seconds."""
        self._pending.extend(commands)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._flush_after, self._flush_in_background)

    @property
    def pending(self) -> int:
        """Writes waiting for a round trip."""
        return len(self._pending)

    async def flush(self, *, after_in_flight: bool = False) -> None:
        """Send the deferred writes now (RedisError etc. when Redis cannot be reached);
        ``after_in_flight``: only once the writes already on their way have arrived, so
        these land after them (a work entry is acknowledged after its answer's memory)."""
        if after_in_flight and self._in_flight:
            await asyncio.wait(set(self._in_flight))  # (waiting cancels none of them)
        if self._pending:
            await self._round_trip(())

    async def execute(self, *command: Any) -> Any:
        """One command's reply, the deferred writes sent before it in the same round trip."""
        (reply,) = await self._round_trip((command,))
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_script(
        self,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        carry: bool = True,
    ) -> Any:
        """A Lua script's reply, the deferred writes sent before it in the same round trip
        (a script Redis does not know yet is loaded and run again). ``carry=False``: this
        call alone (it may be cancelled midway, or must stay lean); the writes wait."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if carry:
            (reply,) = await self._round_trip((command,))
        else:
            try:
                reply = await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError as exc:
                reply = exc
        if isinstance(reply, NoScriptError):  # a new or restarted Redis
            script.sha = await self.redis.script_load(script.script)
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _round_trip(self, commands: Sequence[Command]) -> list[Any]:
        """The deferred writes, then ``commands``, in one pipeline; ``commands``' replies
        (an error as its exception)."""
        pending, self._pending = self._pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not pending:
            return await self._send(pending, commands)
        arrived = asyncio.get_running_loop().create_future()
        self._in_flight.add(arrived)
        try:
            return await self._send(pending, commands)
        finally:
            self._in_flight.discard(arrived)
            if not arrived.done():
                arrived.set_result(None)

    async def _send(self, pending: Sequence[Command], commands: Sequence[Command]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in (*pending, *commands):
                pipe.execute_command(*command)
            replies = await pipe.execute(raise_on_error=False)
        for command, reply in zip(pending, replies, strict=False):
            if isinstance(reply, Exception):
                log.warning("a deferred Redis %s failed: %s", command[0], reply)
        return list(replies[len(pending) :])

    def _flush_in_background(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush_quietly())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except REDIS_ERRORS as exc:
            log.warning("deferred Redis writes were lost: %s", type(exc).__name__)

    async def close(self) -> None:
        """Send what is still deferred (at shutdown)."""
        await self._flush_quietly()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
