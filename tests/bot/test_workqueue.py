"""The Redis Stream work queue: exactly-once across replicas, takeover of abandoned work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from bot.jobs import ReplyTo, SlackEvent
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress, WorkQueue


def work(text: str) -> SlackEvent:
    """A queued Slack question (its text is all these tests look at)."""
    return SlackEvent(
        event={"type": "message", "text": text},
        team_id="T1",
        bot_user_id="U0",
        reply_to=ReplyTo("slack", channel="C1", thread="1.1"),
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def replica(
    redis: Redis, handled: list[tuple[str, Job]], name: str, **kwargs: float
) -> tuple[WorkQueue, TaskTracker]:
    tracker = TaskTracker()

    async def handle(job: Job, progress: JobProgress) -> None:
        handled.append((name, job))
        await progress.shown(f"{name}-msg")

    queue = WorkQueue(
        redis=redis, tracker=tracker, handler=handle, consumer=name, block_seconds=0.05, **kwargs
    )
    return queue, tracker


async def test_submit_dedupes_across_replicas(redis: Redis) -> None:
    a, _ = replica(redis, [], "a")
    b, _ = replica(redis, [], "b")
    results = await asyncio.gather(*(q.submit("evt-1", work("1")) for q in (a, b, a, b)))
    assert results.count(True) == 1


async def test_each_entry_is_handled_once_by_one_of_several_replicas(redis: Redis) -> None:
    handled: list[tuple[str, Job]] = []
    replicas = [replica(redis, handled, name) for name in ("a", "b", "c")]
    runs = [asyncio.create_task(q.run()) for q, _ in replicas]
    for i in range(30):
        assert await replicas[i % 3][0].submit(f"evt-{i}", work(str(i)))
    for _ in range(200):
        if len(handled) == 30:
            break
        await asyncio.sleep(0.02)
    for q, tracker in replicas:
        q.stop()
        await tracker.wait_idle(5)
    await asyncio.gather(*runs)
    assert sorted(int(job.work.event["text"]) for _, job in handled) == list(range(30))
    assert len({name for name, _ in handled}) > 1  # the work was shared
    assert await redis.xlen("chatbot:work") == 0  # acknowledged and removed


async def test_work_of_a_dead_replica_is_taken_over_with_what_it_had_shown(redis: Redis) -> None:
    started = asyncio.Event()

    async def hang(job: Job, progress: JobProgress) -> None:
        await progress.shown("partial-ts")
        started.set()
        await asyncio.sleep(3600)

    dead_tracker = TaskTracker()
    dead = WorkQueue(
        redis=redis,
        tracker=dead_tracker,
        handler=hang,
        consumer="dead",
        block_seconds=0.05,
        heartbeat_seconds=0.1,
    )
    dead_run = asyncio.create_task(dead.run())
    await dead.submit("evt-1", work("q"))
    await asyncio.wait_for(started.wait(), 5)
    # The replica dies: its loops stop without acknowledging anything.
    dead_run.cancel()
    await dead_tracker.drain(0)

    handled: list[tuple[str, Job]] = []
    survivor, tracker = replica(redis, handled, "survivor", reclaim_idle_seconds=0.3)
    run = asyncio.create_task(survivor.run())
    for _ in range(200):
        if handled:
            break
        await asyncio.sleep(0.02)
    survivor.stop()
    await tracker.wait_idle(5)
    await run
    ((_, job),) = handled
    assert job.reclaimed and job.posted == ("partial-ts",)
    assert job.work == work("q")
    assert job.deliveries == 2


async def test_a_long_answer_kept_alive_by_heartbeats_is_not_taken_over(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the other replica looks for abandoned work (XAUTOCLAIM names the looking consumer).
    looked: list[float] = []
    original = AbstractConnection.send_packed_command

    async def sending(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes) else b"".join(command)
        if b"XAUTOCLAIM" in packed and b"\r\nother\r\n" in packed:
            looked.append(asyncio.get_running_loop().time())
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", sending)
    release = asyncio.Event()
    handled: list[str] = []

    async def slow(job: Job, progress: JobProgress) -> None:
        handled.append("owner")
        await release.wait()

    owner_tracker = TaskTracker()
    owner = WorkQueue(
        redis=redis,
        tracker=owner_tracker,
        handler=slow,
        consumer="owner",
        block_seconds=0.05,
        heartbeat_seconds=0.05,
    )
    other_handled: list[tuple[str, Job]] = []
    # A threshold well above the heartbeat (0.05 s): a loaded event loop stalling the
    # heartbeat for a few hundred ms must not make a live entry look abandoned.
    other, other_tracker = replica(redis, other_handled, "other", reclaim_idle_seconds=1.0)
    runs = [asyncio.create_task(owner.run())]
    await owner.submit("evt-1", work(""))
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.02)
    taken = asyncio.get_running_loop().time()
    runs.append(asyncio.create_task(other.run()))
    # The other replica looks twice after the entry would be abandoned without heartbeats
    # (idle past the 1 s reclaim threshold, twice over).
    deadline = taken + 20
    while sum(t > taken + 2.0 for t in looked) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"looked at {looked}"
        await asyncio.sleep(0.02)
    assert other_handled == []
    (pending,) = await redis.xpending_range("chatbot:work", "chatbot", "-", "+", 10)
    assert pending["consumer"] == b"owner"
    release.set()
    owner.stop()
    other.stop()
    await owner_tracker.wait_idle(5)
    await other_tracker.wait_idle(5)
    await asyncio.gather(*runs)


async def test_an_abandoned_entry_behind_many_live_ones_is_taken_over(redis: Redis) -> None:
    """XAUTOCLAIM looks at ten pending entries per call: the look goes on from where the
    last one ended."""
    await redis.xgroup_create("chatbot:work", "chatbot", id="0", mkstream=True)
    submitter = WorkQueue(redis=redis, tracker=TaskTracker())
    for i in range(30):
        await submitter.submit(f"live-{i}", work(f"live {i}"))
    read = await redis.xreadgroup("chatbot", "busy", {"chatbot:work": ">"}, count=30)
    live = [entry_id for entry_id, _ in read[0][1]]

    async def heartbeat() -> None:  # a replica answering those 30, alive
        while True:
            await redis.xclaim("chatbot:work", "chatbot", "busy", 0, live, justid=True)
            await asyncio.sleep(0.05)

    beating = asyncio.create_task(heartbeat())
    # Behind them, an entry read by a replica that then died: pending, never renewed.
    await submitter.submit("dead-1", work("abandoned"))
    await redis.xreadgroup("chatbot", "dead", {"chatbot:work": ">"}, count=1)
    handled: list[tuple[str, Job]] = []
    # The live entries are renewed every 0.05 s: a threshold of 1 s keeps them live even if
    # the event loop stalls the heartbeat for a few hundred ms (0.3 s did not, once in CI).
    survivor, tracker = replica(redis, handled, "survivor", reclaim_idle_seconds=1.0)
    run = asyncio.create_task(survivor.run())
    for _ in range(300):
        if handled:
            break
        await asyncio.sleep(0.02)
    survivor.stop()
    beating.cancel()
    await tracker.wait_idle(5)
    await run
    assert [job.work.event["text"] for _, job in handled] == ["abandoned"]
