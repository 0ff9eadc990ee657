"""Accepted work in a Redis Stream read through a consumer group, so no question is lost:
a replica that dies mid-answer leaves its entry pending, and another replica claims it.

The adapter submits a JSON payload (everything needed to answer and reply) under a dedupe
id; every replica runs a `WorkQueue` consumer that hands each entry to the adapter's handler
and acknowledges it when the answer is complete. Entries in flight are kept fresh with a
heartbeat (XCLAIM by their owner), so only work of a dead or stuck replica goes idle long
enough to be reclaimed.
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
from bot.outcome import Event
from bot.redis_batch import RedisBatch
from bot.redis_errors import REDIS_ERRORS, translated_redis_errors
from bot.tasks import TaskTracker
from bot.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)

GROUP = "chatbot"
MAX_STREAM_LENGTH = 100_000
JOB_TTL_SECONDS = 3600
# Entries taken per read: a burst is shared among the replicas and workers reading the
# stream, instead of going whole to the first one that reads.
READ_COUNT = 8

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
    payload: dict[str, Any]
    reclaimed: bool = False  # another replica started it and did not finish
    posted: tuple[str, ...] = ()  # what that replica had already shown (platform message ids)


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
        self._in_flight: set[str] = set()
        self._stopping = asyncio.Event()
        self.reclaimed = 0  # entries this replica took over from another

    async def submit(self, dedupe_id: str | None, payload: dict[str, Any]) -> bool:
        """Queue work once per dedupe id (across replicas); False for a duplicate."""
        with translated_redis_errors("queueing work"):
            entry = await self._batch.run_script(
                self._submit,
                keys=[self._stream, keys.seen("work", dedupe_id or "")],
                args=[dedupe_id or "", self._dedupe_ttl, MAX_STREAM_LENGTH, json.dumps(payload)],
                carry=False,  # the acknowledgement waits for this call alone
            )
        if entry is None:
            self._telemetry.event(Event.DEDUPE_HIT, str(payload.get("platform", "")))
        return entry is not None

    async def note_posted(self, job_id: str, message_id: str) -> None:
        """Remember a message a job has shown, for whoever may have to replace it (with
        this process's next round trip: the answer's next step)."""
        name = keys.job_posted(job_id)
        self._batch.defer(("RPUSH", name, message_id), ("EXPIRE", name, JOB_TTL_SECONDS))

    async def run(self) -> None:
        """Consume until `stop()`: new entries, then entries abandoned by other replicas."""
        while not self._stopping.is_set():
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
                try:
                    # Abandoned entries are looked for once a heartbeat, not after every
                    # read: one XAUTOCLAIM per answer would double the queue's round trips.
                    if loop.time() >= next_reclaim:
                        await self._reclaim()
                        next_reclaim = loop.time() + min(
                            self._heartbeat, self._reclaim_idle_ms / 2000
                        )
                    await self._read_new()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # Redis came back empty (restarted without persistence): start over.
                    await self._ensure_group()
                except RedisError:
                    log.warning("work queue: Redis unavailable; retrying", exc_info=True)
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

    async def _read_new(self) -> None:
        response: Any = await self._redis.xreadgroup(
            GROUP, self.consumer, {self._stream: ">"}, count=READ_COUNT, block=self._block_ms
        )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                self._start(_text(entry_id), fields, reclaimed=False)

    async def _reclaim(self) -> None:
        _next, entries, *_ = await self._redis.xautoclaim(
            self._stream, GROUP, self.consumer, self._reclaim_idle_ms, "0-0", count=20
        )
        for entry_id, fields in entries:
            entry = _text(entry_id)
            if entry in self._in_flight or fields is None:
                continue
            self.reclaimed += 1
            log.warning("taking over work %s abandoned by another replica", entry)
            self._start(entry, fields, reclaimed=True)

    def _start(self, entry_id: str, fields: dict[Any, Any], *, reclaimed: bool) -> None:
        raw = fields.get(b"job") or fields.get("job")
        try:
            payload = json.loads(raw or "")
        except (TypeError, ValueError):
            log.error("dropping malformed work entry %s", entry_id)
            self._tracker.spawn(self._ack(entry_id))
            return
        if reclaimed:
            self._telemetry.event(Event.RECLAIMED, str(payload.get("platform", "")))
        self._in_flight.add(entry_id)
        self._tracker.spawn(self._process(entry_id, payload, reclaimed), name="work")

    async def _process(self, entry_id: str, payload: dict[str, Any], reclaimed: bool) -> None:
        try:
            posted: tuple[str, ...] = ()
            if reclaimed:
                raw = await self._redis.lrange(keys.job_posted(entry_id), 0, -1)
                posted = tuple(_text(p) for p in raw)
            job = Job(entry_id, payload, reclaimed, posted)
            assert self._handler is not None, "WorkQueue has no handler"
            await self._handler(job, JobProgress(self, entry_id, list(posted)))
            await self._ack(entry_id)
        finally:
            self._in_flight.discard(entry_id)

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
            await asyncio.sleep(self._heartbeat)
            ids: list[Any] = list(self._in_flight)
            if not ids:
                continue
            try:
                # Re-claiming our own entries resets their idle time: they are alive.
                await self._redis.xclaim(self._stream, GROUP, self.consumer, 0, ids, justid=True)
            except RedisError:
                log.warning("work queue heartbeat failed")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
