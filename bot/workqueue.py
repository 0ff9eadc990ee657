"""Accepted work in a Redis Stream read through a consumer group, so no question is lost:
a replica that dies mid-answer leaves its entry pending, and another replica claims it.

The adapter submits a typed job (``bot.jobs``: everything needed to answer and reply) under
a dedupe id; every replica runs a `WorkQueue` consumer that hands each entry to the adapter's
handler and acknowledges it when the answer is complete. Entries in flight are kept fresh
with a heartbeat (XCLAIM by their owner, which does not count as a delivery), so only work of
a dead or stuck replica goes idle long enough to be reclaimed.

Nothing loops: the stream counts each entry's deliveries. An entry delivered more than
``MAX_DELIVERIES`` times (its workers died with it), whose handler raised on its last try, or
that this code cannot read (``UnreadableJob``) is set aside (``bot.set_aside``: moved to a
dead-letter stream with the reason, its asker told once). A reclaimed entry may be the one
that killed its worker, so a process runs one reclaimed entry at a time: a poisoned job
takes down only itself and the fresh work beside it, never the same bystanders three times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot import keys
from bot.dedupe import DEDUPE_TTL_SECONDS
from bot.errors import StateUnavailable
from bot.jobs import UnreadableJob, Work, from_job, to_job
from bot.outages import log_outage
from bot.outcome import Event
from bot.redis_batch import RedisBatch
from bot.redis_errors import REDIS_ERRORS, translated_redis_errors
from bot.set_aside import (
    JOB_TTL_SECONDS,
    MAX_DELIVERIES,
    SetAsideJobs,
    Teller,
)
from bot.tasks import TaskTracker, raise_if_cancelled
from bot.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)

GROUP = "chatbot"
MAX_STREAM_LENGTH = 100_000
# Entries taken per read: a burst is shared among the replicas and workers reading the
# stream, instead of going whole to the first one that reads.
READ_COUNT = 8
# Redis failing during a job's bookkeeping: the job stays pending and is tried again.
_QUEUE_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, StateUnavailable)

# Dedupe and enqueue in one step: a redelivered event is never queued twice, and an event
# whose dedupe marker was set is always queued.
_SUBMIT = """
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return false end
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'job', ARGV[4])
"""


@dataclass(frozen=True, slots=True)
class Job:
    """One accepted piece of work."""

    id: str
    work: Work
    reclaimed: bool = False  # another replica started it and did not finish
    posted: tuple[str, ...] = ()  # what that replica had already shown (platform message ids)
    deliveries: int = 1  # this try's number (1: the first)


Handler = Callable[[Job, "JobProgress"], Awaitable[None]]


@dataclass(slots=True)
class JobProgress:
    """Lets the handler note what it has shown, so a replica taking over can replace it."""

    queue: WorkQueue | None
    job_id: str
    posted: list[str] = field(default_factory=list)

    async def shown(self, message_id: str) -> None:
        """Record a platform message this answer created."""
        self.posted.append(message_id)
        if self.queue is not None:
            await self.queue.note_posted(self.job_id, message_id)


def consumer_name() -> str:
    """A name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkQueue:
    """A Redis Stream consumer group shared by every replica."""

    def __init__(
        self,
        *,
        redis: Redis,
        tracker: TaskTracker,
        batch: RedisBatch | None = None,
        handler: Handler | None = None,
        teller: Teller | None = None,
        consumer: str | None = None,
        reclaim_idle_seconds: float = 30.0,
        heartbeat_seconds: float = 5.0,
        block_seconds: float = 1.0,
        dedupe_ttl_seconds: int = DEDUPE_TTL_SECONDS,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._redis = redis
        self._batch = batch or RedisBatch(redis=redis)  # shared: acks carry memory writes
        self._telemetry = telemetry or NullTelemetry()
        self._tracker = tracker
        self._handler = handler
        self.consumer = consumer or consumer_name()
        self._stream = keys.work_stream()
        self._reclaim_idle_ms = int(reclaim_idle_seconds * 1000)
        self._heartbeat = heartbeat_seconds
        self._block_ms = int(block_seconds * 1000)
        self._dedupe_ttl = dedupe_ttl_seconds
        self._submit = self._batch.script(_SUBMIT)
        self._jobs_set_aside = SetAsideJobs(
            redis=redis,
            batch=self._batch,
            stream=self._stream,
            group=GROUP,
            teller=teller,
            telemetry=self._telemetry,
        )
        self._in_flight: set[str] = set()
        self._suspect: str | None = None  # the reclaimed entry this process is trying
        self._cursor = "0-0"  # where the next look for abandoned entries starts
        self._stopping = asyncio.Event()

    async def submit(self, dedupe_id: str | None, work: Work) -> bool:
        """Queue work once per dedupe id (across replicas); False for a duplicate."""
        with translated_redis_errors("queueing work"):
            entry = await self._batch.run_script(
                self._submit,
                keys=[self._stream, keys.seen("work", dedupe_id or "")],
                args=[dedupe_id or "", self._dedupe_ttl, MAX_STREAM_LENGTH, _dumps(work)],
                carry=False,  # the acknowledgement waits for this call alone
            )
        if entry is None:
            self._telemetry.event(Event.DEDUPE_HIT, work.platform)
        return entry is not None

    async def note_posted(self, job_id: str, message_id: str) -> None:
        """Remember a message a job has shown, for whoever may have to replace it (with
        this process's next round trip: the answer's next step)."""
        name = keys.job_posted(job_id)
        self._batch.defer(("RPUSH", name, message_id), ("EXPIRE", name, JOB_TTL_SECONDS))

    async def run(self) -> None:
        """Consume until `stop()`: new entries, then entries abandoned by other replicas."""
        while not self._stopping.is_set():
            raise_if_cancelled()
            try:
                await self._ensure_group()
                break
            except RedisError:
                log.warning("work queue: Redis unavailable; retrying")
                await self._sleep(1.0)
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="work-heartbeat")
        loop = asyncio.get_running_loop()
        next_reclaim = 0.0
        try:
            while not self._stopping.is_set():
                raise_if_cancelled()
                try:
                    # Abandoned entries are looked for once a heartbeat, not after every
                    # read: one XAUTOCLAIM per answer would double the queue's round trips.
                    if loop.time() >= next_reclaim and self._suspect is None:
                        took = await self._reclaim()
                        # After a takeover, look again as soon as it is done (one at a
                        # time: see the module's docstring).
                        next_reclaim = 0.0 if took else loop.time() + self._reclaim_every()
                    await self._read_new()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # Redis came back empty (restarted without persistence): start over.
                    await self._ensure_group()
                except RedisError as exc:
                    log_outage(log, "work queue: Redis unavailable; retrying", exc)
                    await self._sleep(1.0)
        finally:
            heartbeat.cancel()

    async def backlog(self) -> int:
        """Entries queued or in flight (acknowledged entries are deleted)."""
        with translated_redis_errors("reading the work queue"):
            return int(await self._redis.xlen(self._stream))

    def stop(self) -> None:
        """Take no new work; entries in flight finish (or are reclaimed by others)."""
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _reclaim_every(self) -> float:
        return min(self._heartbeat, self._reclaim_idle_ms / 2000)

    async def _read_new(self) -> None:
        response: Any = await self._redis.xreadgroup(
            GROUP, self.consumer, {self._stream: ">"}, count=READ_COUNT, block=self._block_ms
        )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                await self._take(_text(entry_id), fields, deliveries=1)

    async def _reclaim(self) -> bool:
        """Take over one entry abandoned by its worker (idle past the reclaim time); True
        when one was taken, or when the pending entries were not all looked at yet."""
        # XAUTOCLAIM looks at ten pending entries per claimed one: go on from where the
        # last look ended, so an abandoned entry behind many live ones is found too.
        cursor, entries, *_ = await self._redis.xautoclaim(
            self._stream, GROUP, self.consumer, self._reclaim_idle_ms, self._cursor, count=1
        )
        self._cursor = _text(cursor)
        for entry_id, fields in entries:
            entry = _text(entry_id)
            if entry in self._in_flight or fields is None:
                continue
            pending: Any = await self._redis.xpending_range(
                self._stream, GROUP, min=entry, max=entry, count=1
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else MAX_DELIVERIES + 1
            log.warning(
                "taking over work %s abandoned by its worker (delivery %d)", entry, deliveries
            )
            self._suspect = entry
            await self._take(entry, fields, deliveries=deliveries)
            return True
        return self._cursor != "0-0"

    async def _take(self, entry_id: str, fields: dict[Any, Any], *, deliveries: int) -> None:
        """Start answering an entry, or set it aside at once (before anything else read
        with it starts, so that a poisoned job beside it cannot cut that short)."""
        raw = fields.get(b"job") or fields.get("job")
        try:
            data = json.loads(raw or "")
        except (TypeError, ValueError, RecursionError):
            data = None
        try:
            work = from_job(data)
        except UnreadableJob as exc:
            await self._set_aside_now(entry_id, data, raw, str(exc), deliveries, unreadable=True)
            return
        if deliveries > MAX_DELIVERIES:
            await self._set_aside_now(entry_id, data, raw, "", deliveries, unreadable=False)
            return
        if deliveries > 1:
            self._telemetry.event(Event.RECLAIMED, work.platform)
        self._in_flight.add(entry_id)
        self._tracker.spawn(self._process(entry_id, work, deliveries), name="work")

    async def _set_aside_now(
        self,
        entry_id: str,
        data: object,
        raw: object,
        reason: str,
        deliveries: int,
        *,
        unreadable: bool,
    ) -> None:
        self._in_flight.add(entry_id)  # kept alive by the heartbeat while its asker is told
        try:
            await self._jobs_set_aside.set_aside(
                entry_id, data, raw, reason, deliveries, unreadable=unreadable
            )
        except _QUEUE_ERRORS:
            log.warning("work %s: Redis unavailable; it will be set aside later", entry_id)
        finally:
            self._done(entry_id)

    def _done(self, entry_id: str) -> None:
        self._in_flight.discard(entry_id)
        if self._suspect == entry_id:
            self._suspect = None

    async def _process(self, entry_id: str, work: Work, deliveries: int) -> None:
        try:
            posted: tuple[str, ...] = ()
            if deliveries > 1:
                raw = await self._redis.lrange(keys.job_posted(entry_id), 0, -1)
                posted = tuple(_text(p) for p in raw)
            job = Job(entry_id, work, deliveries > 1, posted, deliveries)
            assert self._handler is not None, "WorkQueue has no handler"
            try:
                await self._handler(job, JobProgress(self, entry_id, list(posted)))
            except Exception as exc:
                await self._jobs_set_aside.failed(entry_id, work, deliveries, exc)
                return
            await self._ack(entry_id)
        except _QUEUE_ERRORS:
            log.warning("work %s: Redis unavailable; it will be tried again", entry_id)
        finally:
            self._done(entry_id)

    async def _ack(self, entry_id: str) -> None:
        """Acknowledge a finished entry, with the answer's own last writes (its memory and
        lock release, deferred by ``bot.memory``) in the same round trip."""
        self._batch.defer(
            ("XACK", self._stream, GROUP, entry_id),
            ("XDEL", self._stream, entry_id),
            ("DEL", keys.job_posted(entry_id)),
        )
        try:
            await self._batch.flush(after_in_flight=True)
        except REDIS_ERRORS:
            log.warning("could not acknowledge work %s; it may be answered again", entry_id)

    async def _heartbeat_loop(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self._heartbeat)
            ids: list[Any] = list(self._in_flight)
            if not ids:
                continue
            try:
                # Re-claiming our own entries resets their idle time: they are alive.
                await self._redis.xclaim(self._stream, GROUP, self.consumer, 0, ids, justid=True)
            except RedisError:
                log.warning("work queue heartbeat failed")


def _dumps(work: Work) -> str:
    return json.dumps(to_job(work))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
