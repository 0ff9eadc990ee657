"""Redis failures as the core's error, in one place (``bot.database.translated_errors`` is
its SQL counterpart)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from bot.errors import StateUnavailable

# What a failed exchange with Redis raises: the client's own errors, and socket errors or
# timeouts from below it.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)


@contextmanager
def translated_redis_errors(what: str) -> Iterator[None]:
    """Turn a Redis failure inside the block into ``StateUnavailable`` saying ``what``
    could not be done."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StateUnavailable(f"redis: {what} failed") from exc
