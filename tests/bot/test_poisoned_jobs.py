"""A question that fails every time is tried at most three times in all, across replicas,
then set aside with its asker told once; the questions behind it are answered; a job this
version cannot read is answered with "please ask again"; an older version's job is read."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot import keys, replies
from bot.jobs import ReplyTo, SlackEvent, from_job, to_job
from bot.set_aside import set_aside_jobs
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress, WorkQueue
from tests.support import REPO
from tests.support.queue_replica import ANSWERED, TOLD, TRIES

ROOT = REPO


def question(text: str, thread: str) -> SlackEvent:
    return SlackEvent(
        event={"type": "message", "text": text},
        team_id="T1",
        bot_user_id="U0",
        reply_to=ReplyTo("slack", channel="C1", thread=thread),
    )


async def _strings(redis: Redis, name: str) -> list[str]:
    return [v.decode() for v in await redis.lrange(name, 0, -1)]


class Fleet:
    """Replica processes of the work queue, restarted when one dies (as a supervisor
    would), until stopped."""

    def __init__(self, redis_url: str, size: int) -> None:
        self._url = redis_url
        self._size = size
        self.procs: list[asyncio.subprocess.Process] = []
        self.started = 0

    async def _start(self) -> asyncio.subprocess.Process:
        self.started += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.queue_replica",
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": self._url, "CONSUMER": f"replica-{self.started}"},
        )
        self.procs.append(proc)
        return proc

    async def supervise(self) -> None:
        running = [await self._start() for _ in range(self._size)]
        while True:
            await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running],
                return_when=asyncio.FIRST_COMPLETED,
            )
            running = [p for p in running if p.returncode is None]
            running += [await self._start() for _ in range(self._size - len(running))]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def wait_until(check: object, timeout: float = 40.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_poisoned_jobs_are_tried_three_times_across_replicas_and_never_loop(
    redis: Redis, redis_url: str
) -> None:
    submitter = WorkQueue(redis=redis, tracker=TaskTracker())
    # Queued before the replicas start, so the poisoned ones are read first.
    for text, thread in [("die", "t-die"), ("raise", "t-raise")]:
        assert await submitter.submit(None, question(text, thread))
    unknown = {**to_job(question("from the future", "t-new")), "version": 99}
    missing = to_job(question("renamed field", "t-missing"))
    del missing["event"]
    for raw in (unknown, missing):
        await redis.xadd(keys.work_stream(), {"job": json.dumps(raw)})
    goods = [f"good {i}" for i in range(6)]
    for i, text in enumerate(goods):
        assert await submitter.submit(None, question(text, f"t-good-{i}"))

    fleet = Fleet(redis_url, size=2)
    supervisor = asyncio.create_task(fleet.supervise())
    try:

        async def settled() -> bool:
            told = await redis.llen(TOLD)
            answered = set(await _strings(redis, ANSWERED))
            return told >= 4 and answered >= set(goods) and not await redis.xlen(keys.work_stream())

        try:
            await wait_until(settled)
        except AssertionError:
            raise AssertionError(
                f"tries {await _strings(redis, TRIES)}, answered {await _strings(redis, ANSWERED)}"
                f", told {await _strings(redis, TOLD)}, "
                f"left {await redis.xrange(keys.work_stream())}, "
                f"pending {await redis.xpending_range(keys.work_stream(), 'chatbot', '-', '+', 20)}"
            ) from None
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await fleet.stop()

    tries = await _strings(redis, TRIES)
    assert tries.count("die") == 3  # three processes died with it, no fourth
    # At most three: a try cut short by the process dying with "die" beside it counts.
    assert 1 <= tries.count("raise") <= 3
    assert "from the future" not in tries and "renamed field" not in tries
    assert fleet.started >= 5  # two replicas, and one restarted per death
    assert sorted(await _strings(redis, TOLD)) == sorted(
        [
            f"C1/t-die: {replies.JOB_SET_ASIDE}",
            f"C1/t-raise: {replies.JOB_SET_ASIDE}",
            f"C1/t-new: {replies.JOB_UNREADABLE}",
            f"C1/t-missing: {replies.JOB_UNREADABLE}",
        ]
    )
    # Nothing is left to loop: the stream and its pending list are empty.
    assert await redis.xlen(keys.work_stream()) == 0
    assert (await redis.xpending(keys.work_stream(), "chatbot"))["pending"] == 0
    reasons = {job.reason for job in await set_aside_jobs(redis)}
    assert "answering failed: RuntimeError: this question breaks the handler" in reasons
    assert "its worker stopped while answering it, 3 times" in reasons
    assert "slack.event job of unknown version 99" in reasons
    assert "slack.event job without 'event'" in reasons


async def test_a_handler_that_always_raises_is_tried_three_times_and_logged_once(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[str] = []
    told: list[tuple[ReplyTo, str]] = []
    trackers = [TaskTracker(), TaskTracker()]

    async def handle(job: Job, progress: JobProgress) -> None:
        assert isinstance(job.work, SlackEvent)
        tries.append(job.work.event["text"])
        if job.work.event["text"] == "raise":
            raise KeyError("renamed")

    async def tell(reply_to: ReplyTo, text: str) -> None:
        told.append((reply_to, text))

    queues = [
        WorkQueue(
            redis=redis,
            tracker=tracker,
            handler=handle,
            teller=tell,
            consumer=f"r{i}",
            reclaim_idle_seconds=0.2,
            heartbeat_seconds=0.05,
            block_seconds=0.05,
        )
        for i, tracker in enumerate(trackers)
    ]
    await queues[0].submit(None, question("raise", "t1"))
    await queues[0].submit(None, question("fine", "t2"))
    runs = [asyncio.create_task(q.run()) for q in queues]

    async def settled() -> bool:
        return bool(told) and not await redis.xlen(keys.work_stream())

    await wait_until(settled, 20)
    for queue, tracker in zip(queues, trackers, strict=True):
        queue.stop()
        await tracker.wait_idle(5)
    await asyncio.gather(*runs)
    assert tries.count("raise") == 3 and tries.count("fine") == 1
    assert told == [(ReplyTo("slack", channel="C1", thread="t1"), replies.JOB_SET_ASIDE)]
    tracebacks = [r for r in caplog.records if r.exc_info and "failed" in r.getMessage()]
    assert len(tracebacks) == 1  # the traceback once; later tries one line each
    (aside,) = await set_aside_jobs(redis)
    assert aside.reason == "answering failed: KeyError: 'renamed'" and aside.deliveries == 3


async def test_a_job_queued_by_the_previous_version_is_answered(redis: Redis) -> None:
    """Jobs queued before kinds were typed (plain dicts) are read after an upgrade."""
    old = {
        "platform": "slack",
        "type": "event",
        "event": {"type": "app_mention", "text": "old", "channel": "C9", "ts": "5.5"},
        "team_id": "T1",
        "bot_user_id": "U0",
    }
    await redis.xadd(keys.work_stream(), {"job": json.dumps(old)})
    handled: list[Job] = []
    tracker = TaskTracker()

    async def handle(job: Job, progress: JobProgress) -> None:
        handled.append(job)

    queue = WorkQueue(redis=redis, tracker=tracker, handler=handle, block_seconds=0.05)
    run = asyncio.create_task(queue.run())

    async def answered() -> bool:
        return bool(handled) and not await redis.xlen(keys.work_stream())

    await wait_until(answered, 10)
    queue.stop()
    await tracker.wait_idle(5)
    await run
    (job,) = handled
    assert job.work == SlackEvent(
        event=old["event"],  # type: ignore[arg-type]
        team_id="T1",
        bot_user_id="U0",
        reply_to=ReplyTo("slack", channel="C9", thread="5.5"),
        version=0,
    )


def test_a_job_reads_back_as_written() -> None:
    work = question("hello", "1.1")
    assert from_job(json.loads(json.dumps(to_job(work)))) == work
