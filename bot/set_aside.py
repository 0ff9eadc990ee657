"""Jobs that will not be tried again, set aside in a dead-letter stream with the reason.

A job is set aside when it was delivered more than ``MAX_DELIVERIES`` times (its workers
died with it), when its handler raised on its last try, or when this code cannot read it
(``bot.jobs.UnreadableJob``). Its asker is told once, in the conversation; ``chatbot
doctor`` lists the stream (``set_aside_jobs``) and ``/metrics`` counts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot import keys, replies
from bot.jobs import ReplyTo, Work, reply_to_of, to_job
from bot.outcome import Event
from bot.redis_batch import RedisBatch
from bot.redis_errors import translated_redis_errors
from bot.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_DELIVERIES = 3  # tries in all, across replicas, before a job is set aside
SET_ASIDE_MAX_LENGTH = 1000
JOB_TTL_SECONDS = 3600  # a job's own keys: the messages it showed, why it failed

# Set a job aside once: only the replica whose XACK took it moves it.
_SET_ASIDE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'entry', ARGV[2], 'reason', ARGV[4],
  'deliveries', ARGV[5], 'platform', ARGV[6], 'job', ARGV[7])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4])
return 1
"""

# Tells the asker something in their conversation (a job set aside).
Teller = Callable[[ReplyTo, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SetAside:
    """A job that will not be tried again, as ``chatbot doctor`` lists it."""

    entry: str  # its id in the work stream
    at: float  # when it was set aside (epoch seconds)
    reason: str
    deliveries: int
    platform: str


class SetAsideJobs:
    """Sets the work stream's entries aside (``group``: the stream's consumer group)."""

    def __init__(
        self,
        *,
        redis: Redis,
        batch: RedisBatch,
        stream: str,
        group: str,
        teller: Teller | None,
        telemetry: Telemetry,
    ) -> None:
        self._redis = redis
        self._batch = batch
        self._stream = stream
        self._group = group
        self._teller = teller
        self._telemetry = telemetry
        self._set_aside = batch.script(_SET_ASIDE)

    async def failed(self, entry_id: str, work: Work, deliveries: int, exc: Exception) -> None:
        """A handler raised: its traceback goes to the log once per job (across replicas);
        the job is tried again after the reclaim time, or set aside after its last try."""
        reason = f"answering failed: {type(exc).__name__}: {exc}"[:300]
        first = await self._redis.set(
            keys.job_failure(entry_id), reason, nx=True, ex=JOB_TTL_SECONDS
        )
        if first:
            log.error("work %s failed (try %d)", entry_id, deliveries, exc_info=exc)
        else:
            log.error("work %s failed again (try %d): %s", entry_id, deliveries, reason)
        if deliveries >= MAX_DELIVERIES:
            await self.set_aside(entry_id, to_job(work), None, reason, deliveries, unreadable=False)

    async def set_aside(
        self,
        entry_id: str,
        data: object,
        raw: object,
        reason: str,
        deliveries: int,
        *,
        unreadable: bool,
    ) -> None:
        """Move a job to the dead-letter stream and tell its asker (once, across replicas).
        ``data``: the job as read (``raw``: as queued, when it could not be read); no
        ``reason``: the one its last failure recorded, else its worker stopped."""
        if not reason:
            recorded = await self._redis.get(keys.job_failure(entry_id))
            reason = (
                _text(recorded)
                if recorded
                else f"its worker stopped while answering it, {deliveries - 1} times"
            )
        reply_to = reply_to_of(data)
        platform = reply_to.platform if reply_to is not None else "unknown"
        # The asker is told first, then the job is moved: a process dying in between (a
        # poisoned job beside this one) leaves it pending, to be set aside again and its
        # asker told, rather than set aside with nobody told.
        if reply_to is None or self._teller is None:
            log.error("work %s: its asker cannot be told (no reply address)", entry_id)
        else:
            text = replies.JOB_UNREADABLE if unreadable else replies.JOB_SET_ASIDE
            try:
                await self._teller(reply_to, text)
            except Exception:
                log.warning("work %s: could not tell its asker", entry_id, exc_info=True)
        job_text = raw if isinstance(raw, str | bytes) else json.dumps(data)
        with translated_redis_errors("setting work aside"):
            moved = await self._batch.run_script(
                self._set_aside,
                keys=[
                    self._stream,
                    keys.set_aside(),
                    keys.job_posted(entry_id),
                    keys.job_failure(entry_id),
                ],
                args=[
                    self._group,
                    entry_id,
                    SET_ASIDE_MAX_LENGTH,
                    reason,
                    deliveries,
                    platform,
                    job_text,
                ],
                carry=False,
            )
        if not moved:
            return  # another replica did it
        self._telemetry.event(Event.SET_ASIDE, platform)
        log.error("work %s set aside after %d deliveries: %s", entry_id, deliveries, reason)


async def set_aside_jobs(redis: Redis, count: int = 20) -> list[SetAside]:
    """The jobs set aside (newest first), for ``chatbot doctor``."""
    entries: Any = await redis.xrevrange(keys.set_aside(), count=count)
    found = []
    for entry_id, fields in entries:
        values = {_text(k): _text(v) for k, v in fields.items()}
        deliveries = values.get("deliveries", "0")
        found.append(
            SetAside(
                entry=values.get("entry", ""),
                at=int(_text(entry_id).partition("-")[0]) / 1000,
                reason=values.get("reason", ""),
                deliveries=int(deliveries) if deliveries.isdigit() else 0,
                platform=values.get("platform", ""),
            )
        )
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
