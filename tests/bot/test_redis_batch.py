"""The write-behind of Redis writes that need no reply (bot/redis_batch.py): they go with
the next round trip, in order, and on their own when nothing carries them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from bot.redis_batch import RedisBatch


async def test_a_read_after_a_deferred_write_sees_it_in_the_same_round_trip(
    redis_client: Redis,
) -> None:
    batch = RedisBatch(redis=redis_client, flush_after=60)  # only a round trip carries it
    batch.defer(("SET", "k", "v"), ("RPUSH", "l", "a"), ("RPUSH", "l", "b"))
    assert await redis_client.get("k") is None  # nothing sent yet
    assert await batch.execute("LRANGE", "l", 0, -1) == [b"a", b"b"]
    assert await redis_client.get("k") == b"v"
    assert batch.pending == 0
    await batch.close()


async def test_a_deferred_write_nothing_carries_is_sent_on_its_own(redis_client: Redis) -> None:
    batch = RedisBatch(redis=redis_client, flush_after=0.01)
    batch.defer(("SET", "alone", "1"))
    for _ in range(200):
        if await redis_client.get("alone") == b"1":
            break
        await asyncio.sleep(0.01)
    assert await redis_client.get("alone") == b"1"
    await batch.close()


async def test_scripts_run_on_a_redis_that_lost_them(redis_client: Redis) -> None:
    """A new or restarted Redis knows no scripts: the first call loads it."""
    batch = RedisBatch(redis=redis_client)
    script = batch.script("return redis.call('INCR', KEYS[1])")
    await redis_client.script_flush()
    batch.defer(("SET", "n", "5"))
    assert await batch.run_script(script, keys=["n"], args=[]) == 6
    await redis_client.script_flush()
    assert await batch.run_script(script, keys=["n"], args=[]) == 7
    await batch.close()


async def test_a_failing_deferred_write_is_logged_and_the_carrier_still_answers(
    redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    batch = RedisBatch(redis=redis_client, flush_after=60)
    await redis_client.set("s", "text")
    batch.defer(("RPUSH", "s", "x"))  # WRONGTYPE: s is a string
    with caplog.at_level(logging.WARNING, logger="bot.redis_batch"):
        assert await batch.execute("GET", "s") == b"text"
    assert "deferred Redis RPUSH failed" in caplog.text
    await batch.close()


async def test_writes_still_deferred_at_close_are_sent(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    batch = RedisBatch(redis=client, flush_after=60)
    batch.defer(("SET", "last", "1"))
    await batch.close()
    await client.aclose()
    other = Redis.from_url(redis_url)
    assert await other.get("last") == b"1"
    await other.aclose()


async def test_a_call_that_may_be_cancelled_leaves_the_deferred_writes_to_the_next_one(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pacing reservation cancelled midway (a status no longer needed) does not carry the
    answer's memory: it goes with the next call that carries."""
    batch = RedisBatch(redis=redis_client, flush_after=60)
    script = batch.script("redis.call('SET', KEYS[1], '1') return 1")
    batch.defer(("RPUSH", "memory", "the answer"))
    original = AbstractConnection.send_packed_command

    async def sending(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        await original(self, command, check_health)
        packed = command if isinstance(command, bytes) else b"".join(command)
        if b"EVALSHA" in packed:  # the request is written, its reply not read: cancelled
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    monkeypatch.setattr(AbstractConnection, "send_packed_command", sending)
    call = asyncio.create_task(batch.run_script(script, keys=["status"], args=[], carry=False))
    with pytest.raises(asyncio.CancelledError):
        await call
    monkeypatch.undo()
    assert batch.pending == 1
    assert await batch.execute("LRANGE", "memory", 0, -1) == [b"the answer"]
    await batch.close()


async def test_an_acknowledgement_lands_after_the_writes_already_on_their_way(
    redis_client: Redis,
) -> None:
    batch = RedisBatch(redis=redis_client, flush_after=60)
    batch.defer(("RPUSH", "order", "memory"))
    # The memory is on its way with a call that takes a while to answer (on one connection).
    carrier = asyncio.create_task(batch.execute("BLPOP", "nothing", 0.5))
    deadline = asyncio.get_running_loop().time() + 5
    while batch.pending:  # until the carrier has taken the memory with it
        assert asyncio.get_running_loop().time() < deadline, "the carrier did not start"
        await asyncio.sleep(0)
    batch.defer(("RPUSH", "order", "ack"))
    await batch.flush(after_in_flight=True)  # on another connection, once that has arrived
    assert carrier.done()
    assert await redis_client.lrange("order", 0, -1) == [b"memory", b"ack"]
    await batch.close()
