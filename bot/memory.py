"""Conversation memory: the turns of each conversation, with an expiry clock.

``RedisMemory`` is shared by every replica; ``LocalMemory`` keeps the same contract in one
process (the laptop mode without Redis)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from bot import keys
from bot.conversation import ConversationKey
from bot.locks import LOCK_TTL_SECONDS, LOCK_WAIT_SECONDS, LocalLocks, RedisLocks
from bot.ratelimit import RateCharge
from bot.redis_batch import RedisBatch
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

    def hold(
        self, key: ConversationKey, *, charge: RateCharge | None = None
    ) -> AbstractAsyncContextManager[HeldConversation]:
        """Hold the conversation for one answer (across replicas): its lock is taken
        before the history is read and kept until the answer is remembered or the block
        ends. Raises ``ConversationBusy`` when another answer keeps it too long. A
        ``charge`` (``RateLimiter.charge``) is counted in the same step: ``RateLimited``
        when its limits refuse the question."""
        ...


async def forget(turns: Sequence[Turn]) -> None:
    """Memory was down when the conversation was held: the answer is not remembered (nor
    written without the conversation's lock)."""


@dataclass(slots=True)
class HeldConversation:
    """A conversation held for one answer (the one name for it, from the lock to the
    assistant): its history as read under its lock, how to remember the answer (which, on
    Redis, also lets the next answer in), and ``down``: memory could not be used."""

    history: list[Turn] = field(default_factory=list)
    remember: Callable[[Sequence[Turn]], Awaitable[None]] = forget
    down: bool = False


def _encode(turn: Turn) -> str:
    return json.dumps({"role": turn.role, "content": turn.content}, ensure_ascii=False)


def _decode_all(raw: Sequence[str | bytes]) -> list[Turn]:
    """The stored turns that decode (a corrupt entry is skipped)."""
    return [t for t in map(_decode, raw) if t is not None]


def _decode(raw: str | bytes) -> Turn | None:
    try:
        data = json.loads(raw)
        role, content = data["role"], data["content"]
    except (ValueError, KeyError, TypeError):
        return None
    if role not in ("user", "assistant") or not isinstance(content, str):
        return None
    return Turn(role, content)


# Append, cap, restart the expiry clocks and, when this answer holds the conversation's
# lock, release it: the answer is remembered, the next one may start.
_APPEND = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1
"""


class RedisMemory:
    """Memory in Redis lists, shared by every replica. Its calls go through the batch
    (``bot.redis_batch``): a remembered answer is written with this process's next round
    trip (the work queue's acknowledgement of the answer's job, or another answer's step),
    and a read of this process sees it."""

    def __init__(
        self,
        *,
        batch: RedisBatch,
        ttl_seconds: int,
        max_turns: int = MAX_STORED_TURNS,
        lock_ttl_seconds: float = LOCK_TTL_SECONDS,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
    ):
        self._batch = batch
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._locks = RedisLocks(
            batch=batch, ttl_seconds=lock_ttl_seconds, wait_seconds=lock_wait_seconds
        )
        self._append = batch.script(_APPEND)

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        with translated_redis_errors("reading history"):
            raw = await self._batch.execute("LRANGE", keys.history(key), 0, -1)
        return _decode_all(raw)

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns, cap the list and restart the expiry clocks, in one round trip."""
        with translated_redis_errors("appending to history"):
            await self._batch.run_script(
                self._append, keys=self._append_keys(key), args=self._append_args(turns, "")
            )

    @asynccontextmanager
    async def hold(
        self, key: ConversationKey, *, charge: RateCharge | None = None
    ) -> AsyncIterator[HeldConversation]:
        """The question counted, the lock taken and the history read in one round trip;
        remembering the answer appends and releases the lock with the next one."""
        async with self._locks.lock(key, read=keys.history(key), charge=charge) as lock:

            async def remember(turns: Sequence[Turn]) -> None:
                # Deferred: it goes with the next round trip (the job's acknowledgement).
                self._write(key, turns, lock_token=lock.token)
                lock.released = True

            yield HeldConversation(_decode_all(lock.read), remember)

    def _write(self, key: ConversationKey, turns: Sequence[Turn], *, lock_token: str) -> None:
        names, args = self._append_keys(key), self._append_args(turns, lock_token)
        # EVAL, not EVALSHA: a deferred write has no second chance to load its script.
        self._batch.defer(("EVAL", self._append.script, len(names), *names, *args))

    def _append_keys(self, key: ConversationKey) -> tuple[str, str, str]:
        return keys.history(key), keys.engaged(key), keys.lock(key)

    def _append_args(self, turns: Sequence[Turn], lock_token: str) -> tuple[object, ...]:
        return (self._max_turns, self._ttl, lock_token, *(_encode(t) for t in turns))

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        with translated_redis_errors("forgetting a conversation"):
            await self._batch.execute("DEL", keys.history(key))


class LocalMemory:
    """Memory inside this process (lost on restart)."""

    def __init__(self, *, ttl_seconds: int, max_turns: int = MAX_STORED_TURNS) -> None:
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._turns: dict[ConversationKey, tuple[float, list[Turn]]] = {}
        self._locks = LocalLocks()

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

    @asynccontextmanager
    async def hold(
        self, key: ConversationKey, *, charge: RateCharge | None = None
    ) -> AsyncIterator[HeldConversation]:
        """An asyncio lock per conversation, then its history (a question is counted by
        the in-process rate limiter, which makes no charges)."""
        if charge is not None:
            raise ValueError("a Redis rate limit charge needs Redis memory")
        async with self._locks.lock(key):
            yield HeldConversation(await self.history(key), partial(self.append, key))
