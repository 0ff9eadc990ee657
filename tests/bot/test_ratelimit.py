"""Per-user rate limits with a controllable clock (no sleeps), on Redis and in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from bot.assistant import Assistant
from bot.conversation import ConversationKey, IncomingMessage
from bot.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter, describe_wait
from bot.state import redis_state
from tests.fakes.core import RecordingSink, ScriptedModel

# 2026-11-26 10:00:30 UTC
START = datetime(2026, 11, 26, 10, 0, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


Factory = Callable[[int, int, Clock], RateLimiter]


@pytest.fixture(params=["redis", "local"])
async def make_limiter(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Factory]:
    clients: list[Redis] = []

    def build(per_minute: int, per_day: int, clock: Clock) -> RateLimiter:
        if request.param == "local":
            return LocalRateLimiter(per_minute=per_minute, per_day=per_day, clock=clock)
        client = Redis.from_url(redis_url)
        clients.append(client)
        return RedisRateLimiter(redis=client, per_minute=per_minute, per_day=per_day, clock=clock)

    yield build
    for client in clients:
        await client.aclose()


async def test_minute_limit_resets_at_the_next_clock_minute(make_limiter: Factory) -> None:
    clock = Clock()
    limiter = make_limiter(3, 100, clock)
    assert [(await limiter.acquire("u")).allowed for _ in range(3)] == [True] * 3
    refused = await limiter.acquire("u")
    assert not refused.allowed and refused.window == "minute" and refused.limit == 3
    assert refused.retry_in(clock.now) == 30  # 10:00:30 -> 10:01:00
    assert describe_wait(refused, clock.now) == ("10:01 UTC", "31 s")
    assert (await limiter.acquire("someone-else")).allowed
    clock.now += 30
    assert (await limiter.acquire("u")).allowed


async def test_day_limit_resets_at_utc_midnight_and_refusals_do_not_count(
    make_limiter: Factory,
) -> None:
    clock = Clock()
    limiter = make_limiter(0, 5, clock)  # 0 = no per-minute limit
    for _ in range(5):
        assert (await limiter.acquire("u")).allowed
        clock.now += 61
    for _ in range(3):  # refused attempts must not push the reset further away
        refused = await limiter.acquire("u")
        assert not refused.allowed and refused.window == "day"
    assert describe_wait(refused, clock.now)[0] == "00:00 UTC"
    clock.now = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC).timestamp()
    assert (await limiter.acquire("u")).allowed


async def test_minute_refusals_do_not_use_up_the_day(make_limiter: Factory) -> None:
    clock = Clock()
    limiter = make_limiter(1, 2, clock)
    assert (await limiter.acquire("u")).allowed
    for _ in range(10):
        assert not (await limiter.acquire("u")).allowed
    clock.now += 60
    assert (await limiter.acquire("u")).allowed  # the day still had room for one more


async def test_redis_limit_holds_across_replicas_under_concurrency(redis_url: str) -> None:
    clock = Clock()
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    replicas = [RedisRateLimiter(redis=c, per_minute=10, per_day=100, clock=clock) for c in clients]
    results = await asyncio.gather(*(replicas[i % 3].acquire("u") for i in range(30)))
    assert sum(r.allowed for r in results) == 10
    for client in clients:
        await client.aclose()


def asker(
    client: Redis, model: ScriptedModel, key: ConversationKey
) -> Callable[[str, int], Awaitable[str]]:
    """Ask a bot limited to 2 questions a minute on Redis (its clock at 10:00 UTC) in one
    conversation: the reply's text."""
    clock = Clock()
    bot = Assistant(
        state=redis_state(redis=client, ttl_seconds=60),
        local_model=model,
        premium=None,
        premium_model_name="gpt-4.1",
        ledger=None,
        system_prompt="s",
        max_input_chars=50,
        rate_limiter=RedisRateLimiter(redis=client, per_minute=2, per_day=100, clock=clock),
        now=lambda: datetime.fromtimestamp(clock.now, UTC),
    )

    async def ask(text: str, n: int) -> str:
        sink = RecordingSink()
        await bot.handle(IncomingMessage(key, f"m{n}", "U1", text), sink)
        return sink.text

    return ask


async def test_the_user_is_told_when_to_ask_again_and_commands_do_not_count(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    model = ScriptedModel()
    ask = asker(client, model, ConversationKey("slack", "T", "C", "1"))

    await ask("/help", 1)
    await ask("/model", 2)
    await ask("", 3)  # an empty question is refused and does not count
    await ask("x" * 51, 4)  # nor does an oversized one
    assert await ask("one", 5) == model.reply
    assert await ask("two", 6) == model.reply
    refused = await ask("three", 7)
    assert "2 questions per minute" in refused and "10:01 UTC" in refused
    assert len(model.calls) == 2
    await client.aclose()


class HeldModel(ScriptedModel):
    """Answers only when `go` is set: its conversation stays held meanwhile (``called`` is
    set once it is asked, holding the conversation)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.called = asyncio.Event()

    async def stream(self, turns):  # type: ignore[no-untyped-def]
        self.called.set()
        await self.go.wait()
        async for event in super().stream(turns):
            yield event


async def counted(client: Redis, questions: int, timeout: float = 5) -> None:
    """Wait until the day's count in Redis reaches ``questions``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        day_keys = await client.keys("*:rl:d:*")
        total = 0
        for name in day_keys:
            total += int(await client.get(name) or 0)
        if total >= questions:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{total} questions counted"
        await asyncio.sleep(0.02)


async def test_a_question_over_the_limit_is_refused_at_once_even_while_its_thread_is_busy(
    redis_url: str,
) -> None:
    """On Redis the question is counted in the step that holds its conversation: a refused
    one does not wait for a busy conversation, and one that waits is counted once."""
    client = Redis.from_url(redis_url)
    model = HeldModel()
    ask = asker(client, model, ConversationKey("slack", "T", "C", "busy"))

    first = asyncio.create_task(ask("one", 1))
    second: asyncio.Task[str] | None = None
    try:
        await asyncio.wait_for(model.called.wait(), 5)  # the first answer holds the conversation
        second = asyncio.create_task(ask("two", 2))  # counted, then waits for the lock
        await counted(client, 2)
        refused = await asyncio.wait_for(ask("three", 3), timeout=2)  # not waiting behind "one"
        assert "2 questions per minute" in refused
        assert not second.done()
        model.go.set()
        assert await first == model.reply
        assert await second == model.reply  # its retries for the lock did not count again
        assert len(model.calls) == 2
        # The second answer saw the first one remembered, then was remembered itself.
        assert [t.content for t in model.calls[1]][-3:] == ["one", model.reply, "two"]
    finally:  # a failed check must not leave the held answers waiting forever
        model.go.set()
        held = [task for task in (first, second) if task is not None]
        await asyncio.wait_for(asyncio.gather(*held, return_exceptions=True), 10)
        await client.aclose()
