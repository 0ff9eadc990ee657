"""Engaged threads: a thread whose first message mentioned the bot is the bot's, and later
replies in it are answered without a new mention (for as long as its memory lives)."""

from __future__ import annotations

import time
from typing import Protocol

from bot import keys
from bot.conversation import ConversationKey
from bot.memory import LocalMemory
from bot.redis_batch import RedisBatch
from bot.redis_errors import translated_redis_errors


class Engagement(Protocol):
    """Which threads the bot owns."""

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's: later replies need no mention."""
        ...

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        ...


class RedisEngagement:
    """Engagement markers in Redis (their expiry is renewed with the memory's). Marking
    goes with the next round trip of the batch (the answer's own first step)."""

    def __init__(self, *, batch: RedisBatch, ttl_seconds: int) -> None:
        self._batch = batch
        self._ttl = ttl_seconds

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's for as long as its memory lives."""
        self._batch.defer(("SET", keys.engaged(key), b"1", "EX", self._ttl))

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        with translated_redis_errors("reading engagement"):
            return bool(await self._batch.execute("EXISTS", keys.engaged(key)))


class LocalEngagement:
    """Engagement inside this process; a thread stays engaged while its memory lives."""

    def __init__(self, *, memory: LocalMemory, ttl_seconds: int) -> None:
        self._memory = memory
        self._ttl = ttl_seconds
        self._engaged: dict[ConversationKey, float] = {}

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's."""
        self._engaged[key] = time.monotonic() + self._ttl

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        if key not in self._engaged:
            return False
        return max(self._engaged[key], self._memory.expires_at(key)) > time.monotonic()
