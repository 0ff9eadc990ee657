"""Conversation state shared by every replica: memory, engaged threads, locks.

`RedisState` is the real store; `LocalState` keeps the same contract inside one process
for trying the bot on a laptop without Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from bot import keys
from bot.conversation import ConversationKey
from bot.errors import StateUnavailable, UserFacingError
from inference.base import Turn

log = logging.getLogger(__name__)

MAX_STORED_TURNS = 200
# An answer holds its conversation's lock at most this long (a crashed holder frees it).
# A held lock is renewed while its answer runs; a crashed holder's lock expires after this.
LOCK_TTL_SECONDS = 30.0
LOCK_WAIT_SECONDS = 300

BUSY_TEXT = "I'm still answering an earlier message in this thread. Please ask again in a minute."


class ConversationState(Protocol):
    """What the core needs to remember between messages."""

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        ...

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns to a conversation and restart its expiry clock."""
        ...

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        ...

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's: later replies need no mention."""
        ...

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        ...

    def lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Hold the conversation while one answer is built (history read to append)."""
        ...

    async def ping(self) -> None:
        """Raise StateUnavailable when the store does not answer."""
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


class RedisState:
    """Conversation state in Redis (redis.asyncio), shared by every replica."""

    def __init__(
        self,
        *,
        redis: Redis,
        ttl_seconds: int,
        max_turns: int = MAX_STORED_TURNS,
        lock_ttl_seconds: float = LOCK_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._lock_ttl = lock_ttl_seconds

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        try:
            raw = await self._redis.lrange(keys.history(key), 0, -1)
        except RedisError as exc:
            raise StateUnavailable("redis lrange failed") from exc
        return [t for t in map(_decode, raw) if t is not None]

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns, cap the list and restart the expiry clock, in one round trip."""
        name = keys.history(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(name, *(_encode(t) for t in turns))
                pipe.ltrim(name, -self._max_turns, -1)
                pipe.expire(name, self._ttl)
                pipe.expire(keys.engaged(key), self._ttl)
                await pipe.execute()
        except RedisError as exc:
            raise StateUnavailable("redis append failed") from exc

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        try:
            await self._redis.delete(keys.history(key))
        except RedisError as exc:
            raise StateUnavailable("redis delete failed") from exc

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's for as long as its memory lives."""
        try:
            await self._redis.set(keys.engaged(key), b"1", ex=self._ttl)
        except RedisError as exc:
            raise StateUnavailable("redis set failed") from exc

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        try:
            return bool(await self._redis.exists(keys.engaged(key)))
        except RedisError as exc:
            raise StateUnavailable("redis exists failed") from exc

    @asynccontextmanager
    async def lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """A Redis lock with a short TTL renewed while held: a crashed holder frees the
        conversation within the TTL, a long answer keeps it."""
        lock = self._redis.lock(
            keys.lock(key),
            timeout=self._lock_ttl,
            sleep=0.05,
            blocking_timeout=LOCK_WAIT_SECONDS,
        )
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            raise StateUnavailable("redis lock failed") from exc
        if not acquired:
            raise UserFacingError(BUSY_TEXT)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._lock_ttl / 3)
                try:
                    await lock.reacquire()
                except (LockError, RedisError):
                    log.warning("could not renew a conversation lock")

        renewal = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            renewal.cancel()
            try:
                await lock.release()
            except (LockError, RedisError):
                # Expired or Redis gone: the TTL frees it either way.
                pass

    async def ping(self) -> None:
        """Raise StateUnavailable when Redis does not answer."""
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=3)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StateUnavailable("redis ping failed") from exc


class LocalState:
    """The same contract inside one process (memory lost on restart)."""

    def __init__(self, *, ttl_seconds: int, max_turns: int = MAX_STORED_TURNS) -> None:
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._turns: dict[ConversationKey, tuple[float, list[Turn]]] = {}
        self._engaged: dict[ConversationKey, float] = {}
        self._locks: dict[ConversationKey, tuple[asyncio.Lock, int]] = {}

    def _alive(self, expires: float) -> bool:
        return expires > time.monotonic()

    async def history(self, key: ConversationKey) -> list[Turn]:
        """The stored turns of a conversation, oldest first."""
        entry = self._turns.get(key)
        if entry is None or not self._alive(entry[0]):
            self._turns.pop(key, None)
            return []
        return list(entry[1])

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns, cap the list and restart the expiry clock."""
        stored = await self.history(key)
        stored.extend(turns)
        expires = time.monotonic() + self._ttl
        self._turns[key] = (expires, stored[-self._max_turns :])
        if key in self._engaged:
            self._engaged[key] = expires

    async def forget(self, key: ConversationKey) -> None:
        """Delete a conversation's memory."""
        self._turns.pop(key, None)

    async def engage(self, key: ConversationKey) -> None:
        """Mark a thread as the bot's."""
        self._engaged[key] = time.monotonic() + self._ttl

    async def is_engaged(self, key: ConversationKey) -> bool:
        """Whether the bot owns this thread."""
        return self._alive(self._engaged.get(key, 0.0))

    @asynccontextmanager
    async def lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """An asyncio lock per conversation, dropped when nobody holds or waits for it."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def ping(self) -> None:
        """Always answers: the store is this process."""
