"""Per-user question limits: per clock minute and per UTC day, shared by every replica."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from redis.asyncio import Redis

from bot import keys
from bot.redis_errors import translated_redis_errors

# Both counters are checked and, only when both allow it, incremented: atomically, so
# replicas cannot overshoot and a refused question does not count.
_CHECK_AND_COUNT = """
local minute = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > 0 and minute >= tonumber(ARGV[1]) then return 1 end
if tonumber(ARGV[2]) > 0 and day >= tonumber(ARGV[2]) then return 2 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 172800)
return 0
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a question may go ahead; when refused, which limit and when it resets."""

    allowed: bool
    window: Literal["minute", "day"] | None = None
    limit: int = 0
    retry_at: float = 0.0  # epoch seconds

    def retry_in(self, now: float) -> float:
        """Seconds until the user may ask again."""
        return max(0.0, self.retry_at - now)


class RateLimiter(Protocol):
    """Counts a user's questions against the minute and day limits."""

    async def acquire(self, user: str) -> RateDecision:
        """Count one question if both limits allow it; else say which one refused."""
        ...


def _windows(now: float) -> tuple[int, int, float, float]:
    minute = int(now // 60)
    day = int(now // 86400)
    return minute, day, (minute + 1) * 60.0, (day + 1) * 86400.0


def _refusal(code: int, per_minute: int, per_day: int, now: float) -> RateDecision:
    _, _, minute_end, day_end = _windows(now)
    if code == 1:
        return RateDecision(False, "minute", per_minute, minute_end)
    return RateDecision(False, "day", per_day, day_end)


class RedisRateLimiter:
    """Fixed windows in Redis (one Lua call per question)."""

    def __init__(
        self,
        *,
        redis: Redis,
        per_minute: int,
        per_day: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._per_minute = per_minute
        self._per_day = per_day
        self.clock = clock
        self._script = redis.register_script(_CHECK_AND_COUNT)

    async def acquire(self, user: str) -> RateDecision:
        """Count one question if both limits allow it."""
        if self._per_minute <= 0 and self._per_day <= 0:
            return RateDecision(True)
        now = self.clock()
        minute, day, _, _ = _windows(now)
        with translated_redis_errors("checking the rate limit"):
            code = await self._script(
                keys=[keys.rate_minute(user, minute), keys.rate_day(user, day)],
                args=[self._per_minute, self._per_day],
            )
        if int(code) == 0:
            return RateDecision(True)
        return _refusal(int(code), self._per_minute, self._per_day, now)


class LocalRateLimiter:
    """The same windows inside one process (for the Redis-less laptop mode)."""

    def __init__(
        self, *, per_minute: int, per_day: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._per_minute = per_minute
        self._per_day = per_day
        self.clock = clock
        self._counts: dict[tuple[str, str, int], int] = {}

    async def acquire(self, user: str) -> RateDecision:
        """Count one question if both limits allow it."""
        now = self.clock()
        minute, day, _, _ = _windows(now)
        m_key, d_key = (user, "m", minute), (user, "d", day)
        if 0 < self._per_minute <= self._counts.get(m_key, 0):
            return _refusal(1, self._per_minute, self._per_day, now)
        if 0 < self._per_day <= self._counts.get(d_key, 0):
            return _refusal(2, self._per_minute, self._per_day, now)
        if len(self._counts) > 100_000:
            self._counts = {k: v for k, v in self._counts.items() if k[2] >= minute or k[1] == "d"}
        self._counts[m_key] = self._counts.get(m_key, 0) + 1
        self._counts[d_key] = self._counts.get(d_key, 0) + 1
        return RateDecision(True)


def describe_wait(decision: RateDecision, now: float) -> tuple[str, str]:
    """When the user may ask again: a clock time in UTC and a rough duration."""
    at = datetime.fromtimestamp(decision.retry_at, UTC).strftime("%H:%M UTC")
    seconds = int(decision.retry_in(now)) + 1
    if seconds < 90:
        return at, f"{seconds} s"
    minutes = (seconds + 59) // 60
    if minutes < 90:
        return at, f"{minutes} min"
    return at, f"{minutes // 60} h {minutes % 60} min"
