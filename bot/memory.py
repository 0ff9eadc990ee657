"""Conversation memory: the turns of each conversation, with an expiry clock.

``RedisMemory`` is shared by every replica; ``LocalMemory`` keeps the same contract in one
process (the laptop mode without Redis)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

from bot import keys
from bot.conversation import ConversationKey
from bot.redis_errors import translated_redis_errors
from inference.base import Turn

MAX_STORED_TURNS = 200


class Memory(Protocol):
    """What the core remembers of each conversation."""

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        ...

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns to a conversation and restart its expiry clock (and its thread's
        engagement, which lives as long as the memory)."""
        ...

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        ...


def _encode(turn: Turn) -> str:
    return json.dumps({"role": turn.role, "content": turn.content}, ensure_ascii=False)


def _decode(raw: str | bytes) -> Turn | None:
    try:
        data = json.loads(raw)
        role, content = data["role"], data["content"]
    except (ValueError, KeyError, TypeError):
        return None
    if role not in ("user", "assistant") or not isinstance(content, str):
        return None
    return Turn(role, content)


class RedisMemory:
    """Memory in Redis lists, shared by every replica."""

    def __init__(self, *, redis: Redis, ttl_seconds: int, max_turns: int = MAX_STORED_TURNS):
        self._redis = redis
        self._ttl = ttl_seconds
        self._max_turns = max_turns

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        with translated_redis_errors("reading history"):
            raw = await self._redis.lrange(keys.history(key), 0, -1)
        return [t for t in map(_decode, raw) if t is not None]

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns, cap the list and restart the expiry clocks, in one round trip."""
        name = keys.history(key)
        with translated_redis_errors("appending to history"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(name, *(_encode(t) for t in turns))
                pipe.ltrim(name, -self._max_turns, -1)
                pipe.expire(name, self._ttl)
                pipe.expire(keys.engaged(key), self._ttl)
                await pipe.execute()

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        with translated_redis_errors("forgetting a conversation"):
            await self._redis.delete(keys.history(key))


class LocalMemory:
    """Memory inside this process (lost on restart)."""

    def __init__(self, *, ttl_seconds: int, max_turns: int = MAX_STORED_TURNS) -> None:
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._turns: dict[ConversationKey, tuple[float, list[Turn]]] = {}

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        entry = self._turns.get(key)
        if entry is None or entry[0] <= time.monotonic():
            self._turns.pop(key, None)
            return []
        return list(entry[1])

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns, cap the list and restart the expiry clock."""
        stored = await self.history(key)
        stored.extend(turns)
        expires = time.monotonic() + self._ttl
        self._turns[key] = (expires, stored[-self._max_turns :])

    def expires_at(self, key: ConversationKey) -> float:
        """When a conversation's memory expires (monotonic clock; 0 when there is none)."""
        entry = self._turns.get(key)
        return entry[0] if entry is not None else 0.0

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        self._turns.pop(key, None)
