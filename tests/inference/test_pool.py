"""The Ollama server pool against real fake servers: failover, breakers, queueing,
single-flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot import replies
from inference.base import (
    GenerationFailed,
    ModelUnavailable,
    Overloaded,
    Queued,
    StreamEvent,
    TextDelta,
    Turn,
)
from inference.ollama import OllamaChatModel
from inference.pool import ModelPool
from tests.fakes.ollama import FakeOllama

MODEL = "codellama:7b"
QUESTION = [Turn("system", "be brief"), Turn("user", "hi")]


@pytest.fixture
async def gpu() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as fake:
        fake.reply = "from gpu"
        yield fake


@pytest.fixture
async def cpu() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as fake:
        fake.reply = "from cpu"
        yield fake


def pool_of(*fakes: FakeOllama, **kwargs: object) -> ModelPool:
    servers = [
        OllamaChatModel(base_url=f.url, model=MODEL, num_ctx=4096, connect_timeout=1) for f in fakes
    ]
    return ModelPool(servers=servers, **{"max_concurrency": 2, **kwargs})  # type: ignore[arg-type]


async def collect(pool: ModelPool, turns: list[Turn] = QUESTION) -> tuple[str, list[StreamEvent]]:
    events = [e async for e in pool.stream(turns)]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


async def test_first_server_answers_when_healthy(gpu: FakeOllama, cpu: FakeOllama) -> None:
    assert (await collect(pool_of(gpu, cpu)))[0] == "from gpu"
    assert cpu.requests == []


async def test_a_dead_server_is_failed_over_and_then_skipped(
    gpu: FakeOllama, cpu: FakeOllama
) -> None:
    pool = pool_of(gpu, cpu)
    await gpu.stop()
    assert (await collect(pool))[0] == "from cpu"
    assert pool.health() == {gpu.url: False, cpu.url: True}
    await gpu.start()  # back on the same address, but the breaker is still open
    assert (await collect(pool))[0] == "from cpu"
    assert gpu.requests == []
    await pool.check_health()  # the background check sees it recovered
    assert (await collect(pool))[0] == "from gpu"


@pytest.mark.parametrize("trouble", ["busy", "slow_first_token", "model_missing"])
async def test_failover_before_the_first_token(
    gpu: FakeOllama, cpu: FakeOllama, trouble: str
) -> None:
    if trouble == "busy":
        gpu.status_override = 503
    elif trouble == "slow_first_token":
        gpu.first_token_delay = 2.0
    else:
        gpu.models = ["llama3.1:8b"]
    pool = pool_of(gpu, cpu, first_token_timeout=0.3)
    text, _ = await collect(pool)
    assert text == "from cpu"
    assert len(gpu.requests) == 1


async def test_failure_after_text_is_not_repeated_elsewhere(
    gpu: FakeOllama, cpu: FakeOllama
) -> None:
    gpu.reply, gpu.chunk_size, gpu.fail_after_chunks = "0123456789", 2, 2
    pool = pool_of(gpu, cpu)
    seen: list[str] = []
    with pytest.raises(GenerationFailed):
        async for event in pool.stream(QUESTION):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert "".join(seen) == "0123"
    assert cpu.requests == []


async def test_when_no_server_answers_the_user_is_told_fast(
    gpu: FakeOllama, cpu: FakeOllama
) -> None:
    await gpu.stop()
    await cpu.stop()
    pool = pool_of(gpu, cpu)
    with pytest.raises(ModelUnavailable):
        await collect(pool)
    # Both breakers are open now: the next question fails without waiting on the network.
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        await collect(pool)
    assert time.monotonic() - started < 0.5


async def test_concurrency_is_capped_and_the_line_is_fifo_with_positions(
    gpu: FakeOllama,
) -> None:
    gpu.reply_fn = lambda messages: messages[-1]["content"]
    gpu.chunk_size, gpu.token_delay = 1, 0.3  # each answer takes about 0.9 s
    pool = pool_of(gpu, max_concurrency=1)
    positions: dict[str, list[int]] = {}

    async def ask(name: str) -> str:
        turns = [Turn("system", "s"), Turn("user", "x"), Turn("assistant", "y"), Turn("user", name)]
        text = []
        async for event in pool.stream(turns):
            if isinstance(event, Queued):
                positions.setdefault(name, []).append(event.position)
            elif isinstance(event, TextDelta):
                text.append(event.text)
        return "".join(text)

    tasks = []
    for name in ("aaaa", "bbbb", "cccc"):
        tasks.append(asyncio.create_task(ask(name)))
        await asyncio.sleep(0.02)
    assert pool.queue_depth() == 2
    results = await asyncio.gather(*tasks)
    assert results == ["aaaa", "bbbb", "cccc"]
    assert [r["messages"][-1]["content"] for r in gpu.requests] == ["aaaa", "bbbb", "cccc"]
    assert "aaaa" not in positions
    assert positions["bbbb"][0] == 1
    assert positions["cccc"][0] == 2 and positions["cccc"][-1] == 1


async def test_a_full_line_is_refused(gpu: FakeOllama) -> None:
    gpu.first_token_delay = 0.5
    pool = pool_of(gpu, max_concurrency=1, max_waiting=1)
    turns = [
        [Turn("system", "s"), Turn("user", str(i)), Turn("assistant", "a"), Turn("user", "q")]
        for i in range(3)
    ]
    first = asyncio.create_task(collect(pool, turns[0]))
    second = asyncio.create_task(collect(pool, turns[1]))
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        await collect(pool, turns[2])
    await asyncio.gather(first, second)


async def test_identical_context_free_questions_share_one_generation(gpu: FakeOllama) -> None:
    gpu.chunk_size, gpu.token_delay = 2, 0.02
    gpu.reply = "shared answer"
    pool = pool_of(gpu)
    results = await asyncio.gather(*(collect(pool) for _ in range(5)))
    assert [text for text, _ in results] == ["shared answer"] * 5
    assert len(gpu.requests) == 1
    # With history the answer depends on the conversation: no sharing.
    with_history = [
        Turn("system", "be brief"),
        Turn("user", "a"),
        Turn("assistant", "b"),
        Turn("user", "hi"),
    ]
    await asyncio.gather(collect(pool, with_history), collect(pool, with_history))
    assert len(gpu.requests) == 3


async def test_queue_position_reaches_the_user(gpu: FakeOllama, redis_url: str) -> None:
    from redis.asyncio import Redis

    from bot.assistant import Assistant
    from bot.conversation import ConversationKey, IncomingMessage
    from bot.state import redis_state
    from tests.fakes.core import RecordingSink

    gpu.first_token_delay = 0.8
    client = Redis.from_url(redis_url)
    bot = Assistant(
        state=redis_state(redis=client, ttl_seconds=60),
        local_model=pool_of(gpu, max_concurrency=1),
        premium=None,
        premium_model_name="gpt-4.1",
        ledger=None,
        system_prompt="s",
        max_input_chars=100,
    )
    sinks = [RecordingSink(), RecordingSink()]
    await asyncio.gather(
        *(
            bot.handle(
                IncomingMessage(
                    ConversationKey("slack", "T", "C", str(i)), f"m{i}", "U", f"question {i}"
                ),
                sink,
            )
            for i, sink in enumerate(sinks)
        )
    )
    await client.aclose()
    # Whichever came second waited for the first and was told its place in line.
    assert sorted(len(s.statuses) for s in sinks) == [0, 1]
    assert [replies.QUEUED.format(position=1)] in [s.statuses for s in sinks]
    assert all(s.text == "from gpu" for s in sinks)
