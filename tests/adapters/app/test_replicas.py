"""Several `chatbot serve` processes on one Redis: every event answered exactly once, and a
replica killed mid-answer loses no question."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot import keys
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET
from tests.support.http import post
from tests.support.processes import start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, channel_message, mention

Replica = tuple[str, asyncio.subprocess.Process]


@pytest.fixture
async def fake_slack_api() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def replicas(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama, fake_slack_api: FakeSlack
) -> AsyncIterator[Callable[[], asyncio.Future[Replica]]]:
    started: list[asyncio.subprocess.Process] = []

    async def start() -> Replica:
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake_slack_api.api_url,
            "OLLAMA_BASE_URL": fake_ollama.url,
            "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
            "WORK_RECLAIM_SECONDS": "2",
            "SHUTDOWN_GRACE_SECONDS": "10",
        }
        url, proc = await start_serve(env, tmp_path, output=False)
        started.append(proc)
        return url, proc

    yield start  # type: ignore[misc]
    for proc in started:
        await stop(proc)


async def drained(redis_url: str, timeout: float = 15) -> None:
    """Wait until the work stream has no entry left: each is deleted when acknowledged,
    after its answer was posted and remembered."""
    client = Redis.from_url(redis_url)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while await client.xlen(keys.work_stream()):
            assert asyncio.get_running_loop().time() < deadline, "work still queued"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_answer_each_event_exactly_once(
    replicas: Callable[[], asyncio.Future[Replica]],
    fake_slack_api: FakeSlack,
    fake_ollama: FakeOllama,
    redis_url: str,
    count: int,
) -> None:
    urls = [url for url, _ in await asyncio.gather(*(replicas() for _ in range(count)))]
    b = urls[-1]
    fake_ollama.reply_fn = lambda messages: f"re: {messages[-1]['content']}"
    threads = [f"1500000000.0001{i:02d}" for i in range(8)]
    sends = []
    for i, ts in enumerate(threads):
        body = mention(f"q{i}", ts)
        # Every event reaches every replica (Slack redelivers), and as app_mention + message.
        sends += [post(url, body) for url in urls]
        sends.append(post(urls[i % count], channel_message(f"<@{BOT_USER}> q{i}", ts)))
    assert set(await asyncio.gather(*sends)) == {200}
    await fake_slack_api.wait_for(
        lambda f: all(f.messages(CHANNEL, ts) for ts in threads), timeout=15
    )
    # Every event was queued before its 200: once the work stream holds nothing queued or
    # in hand, every answer there will be (a duplicate too) has been posted.
    await drained(redis_url)
    for i, ts in enumerate(threads):
        assert [m.text for m in fake_slack_api.messages(CHANNEL, ts)] == [f"re: q{i}"]
    assert len(fake_ollama.requests) == len(threads)
    # A follow-up in a thread, through the other replica, sees the conversation.
    await post(b, channel_message("and then?", "1500000000.000900", thread_ts=threads[0]))
    await fake_slack_api.wait_for(lambda f: len(f.messages(CHANNEL, threads[0])) == 2, 15)
    assert {"role": "user", "content": "q0"} in fake_ollama.requests[-1]["messages"]


async def test_a_replica_killed_mid_answer_loses_no_question(
    replicas: Callable[[], asyncio.Future[Replica]],
    fake_slack_api: FakeSlack,
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.reply = "one two three four five six seven eight nine ten eleven twelve"
    # About 15 s of streaming: the first replica is still answering when the second is up,
    # however slowly processes start on a loaded machine.
    fake_ollama.chunk_size, fake_ollama.token_delay = 4, 1.0
    a, proc_a = await replicas()
    ts = "1500000000.000100"
    assert await post(a, mention("tell me slowly", ts)) == 200
    await fake_slack_api.wait_for(lambda f: bool(f.thread_text(CHANNEL, ts)), timeout=10)
    await replicas()  # a second replica is running when the first dies
    proc_a.send_signal(signal.SIGKILL)
    await proc_a.wait()
    fake_ollama.token_delay = 0.0
    await fake_slack_api.wait_for(
        lambda f: (
            f.thread_text(CHANNEL, ts) == fake_ollama.reply
            and not any(m.streaming for m in f.messages(CHANNEL, ts))
        ),
        timeout=20,
    )
    # The partial answer was replaced, not followed by a second one.
    assert [m.text for m in fake_slack_api.messages(CHANNEL, ts)] == [fake_ollama.reply]
    assert len(fake_ollama.requests) == 2


async def test_a_job_this_version_cannot_read_gets_please_ask_again_in_its_thread(
    replicas: Callable[[], asyncio.Future[Replica]], fake_slack_api: FakeSlack, redis_url: str
) -> None:
    """A job queued by a newer release (unknown version) during a rollback: its asker is
    told in the thread, once, and /metrics counts it."""
    from redis.asyncio import Redis

    from bot import keys, replies

    url, _ = await replicas()
    ts = "1500000000.000700"
    job = {
        "kind": "slack.event",
        "version": 2,
        "reply_to": {"platform": "slack", "channel": CHANNEL, "thread": ts},
        "question": {"text": "a field this version does not know"},
    }
    client = Redis.from_url(redis_url)
    await client.xadd(keys.work_stream(), {"job": json.dumps(job)})
    await client.aclose()
    await fake_slack_api.wait_for(lambda f: bool(f.messages(CHANNEL, ts)), timeout=15)
    assert [m.text for m in fake_slack_api.messages(CHANNEL, ts)] == [replies.JOB_UNREADABLE]
    # The asker is told first, then the job is moved and counted: wait for the count.
    counted = 'chatbot_set_aside_work_total{platform="slack"} 1.0'
    deadline = asyncio.get_running_loop().time() + 15
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            if counted in text or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
    assert counted in text
