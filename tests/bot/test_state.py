"""The conversation store contract, run against Redis and the in-process store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot import keys
from bot.conversation import ConversationKey
from bot.state import ConversationState, local_state, redis_state
from inference.base import Turn

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
OTHER = ConversationKey("slack", "T1", "C1", "1700000000.000900")


@pytest.fixture(params=["redis", "local"])
async def state(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[ConversationState]:
    if request.param == "local":
        yield local_state(ttl_seconds=60, max_turns=6)
        return
    client = Redis.from_url(redis_url)
    yield redis_state(redis=client, ttl_seconds=60, max_turns=6)
    await client.aclose()


async def test_history_is_kept_per_conversation_in_order(state: ConversationState) -> None:
    await state.memory.append(KEY, [Turn("user", "q1"), Turn("assistant", "a1")])
    await state.memory.append(KEY, [Turn("user", "q2"), Turn("assistant", "a2")])
    await state.memory.append(OTHER, [Turn("user", "elsewhere"), Turn("assistant", "x")])
    assert [t.content for t in await state.memory.history(KEY)] == ["q1", "a1", "q2", "a2"]
    assert [t.content for t in await state.memory.history(OTHER)] == ["elsewhere", "x"]


async def test_history_is_capped_keeping_the_newest(state: ConversationState) -> None:
    for i in range(5):
        await state.memory.append(KEY, [Turn("user", f"q{i}"), Turn("assistant", f"a{i}")])
    assert [t.content for t in await state.memory.history(KEY)] == [
        "q2",
        "a2",
        "q3",
        "a3",
        "q4",
        "a4",
    ]


async def test_forget_clears_only_that_conversation(state: ConversationState) -> None:
    await state.memory.append(KEY, [Turn("user", "q"), Turn("assistant", "a")])
    await state.memory.append(OTHER, [Turn("user", "q"), Turn("assistant", "a")])
    await state.memory.forget(KEY)
    assert await state.memory.history(KEY) == []
    assert len(await state.memory.history(OTHER)) == 2


async def test_engaged_threads(state: ConversationState) -> None:
    assert not await state.engagement.is_engaged(KEY)
    await state.engagement.engage(KEY)
    assert await state.engagement.is_engaged(KEY)
    assert not await state.engagement.is_engaged(OTHER)


async def test_lock_serialises_one_conversation_but_not_others(state: ConversationState) -> None:
    order: list[str] = []
    a_holds, c_done = asyncio.Event(), asyncio.Event()

    async def hold(key: ConversationKey, name: str, until: asyncio.Event | None) -> None:
        async with state.memory.hold(key):
            order.append(f"{name}+")
            if until is not None:
                a_holds.set()
                await asyncio.wait_for(until.wait(), 10)
            order.append(f"{name}-")

    async def other() -> None:
        await hold(OTHER, "c", None)
        c_done.set()

    # a holds KEY until c has held and released OTHER; b asks for KEY meanwhile.
    first = asyncio.create_task(hold(KEY, "a", c_done))
    await asyncio.wait_for(a_holds.wait(), 10)
    await asyncio.gather(first, hold(KEY, "b", None), other())
    assert order.index("a-") < order.index("b+")  # b waited for a
    assert order.index("c+") < order.index("a-")  # c did not


async def test_redis_memory_expires_and_survives_a_new_client(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    await redis_state(redis=client, ttl_seconds=100).memory.append(KEY, [Turn("user", "q")])
    ttl = await client.ttl(keys.history(KEY))
    assert 0 < ttl <= 100
    await client.aclose()
    # A restarted bot (a new client) sees the same memory.
    fresh = Redis.from_url(redis_url)
    assert [
        t.content for t in await redis_state(redis=fresh, ttl_seconds=100).memory.history(KEY)
    ] == ["q"]
    await fresh.aclose()


async def test_corrupt_entries_are_skipped(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    await client.rpush(keys.history(KEY), b"not json", b'{"role":"user","content":"ok"}')
    assert [
        t.content for t in await redis_state(redis=client, ttl_seconds=60).memory.history(KEY)
    ] == ["ok"]
    await client.aclose()
