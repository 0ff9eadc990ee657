"""Where conversations are kept: memory, engaged threads and locks, built together on one
Redis (shared by every replica) or inside this process (the laptop mode without Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.engagement import Engagement, LocalEngagement, RedisEngagement
from bot.locks import LOCK_TTL_SECONDS, LOCK_WAIT_SECONDS
from bot.memory import MAX_STORED_TURNS, LocalMemory, Memory, RedisMemory
from bot.redis_batch import RedisBatch
from bot.redis_errors import translated_redis_errors

PING_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ConversationState:
    """The conversation stores of one backend; ``ping`` raises ``StateUnavailable`` when
    it does not answer."""

    memory: Memory
    engagement: Engagement
    ping: Callable[[], Awaitable[None]]


def redis_state(
    *,
    redis: Redis,
    batch: RedisBatch | None = None,
    ttl_seconds: int,
    max_turns: int = MAX_STORED_TURNS,
    lock_ttl_seconds: float = LOCK_TTL_SECONDS,
    lock_wait_seconds: float = LOCK_WAIT_SECONDS,
) -> ConversationState:
    """The stores on Redis; their writes share the round trips of ``batch`` (by default
    one of their own), which the work queue and the Slack budget may share too."""
    batch = batch or RedisBatch(redis=redis)

    async def ping() -> None:
        with translated_redis_errors("ping"):
            await asyncio.wait_for(redis.ping(), timeout=PING_TIMEOUT_SECONDS)

    return ConversationState(
        memory=RedisMemory(
            batch=batch,
            ttl_seconds=ttl_seconds,
            max_turns=max_turns,
            lock_ttl_seconds=lock_ttl_seconds,
            lock_wait_seconds=lock_wait_seconds,
        ),
        engagement=RedisEngagement(batch=batch, ttl_seconds=ttl_seconds),
        ping=ping,
    )


def local_state(*, ttl_seconds: int, max_turns: int = MAX_STORED_TURNS) -> ConversationState:
    """The stores inside this process (one process only, lost on restart)."""
    memory = LocalMemory(ttl_seconds=ttl_seconds, max_turns=max_turns)

    async def ping() -> None:
        """Always answers: the store is this process."""

    return ConversationState(
        memory=memory,
        engagement=LocalEngagement(memory=memory, ttl_seconds=ttl_seconds),
        ping=ping,
    )
