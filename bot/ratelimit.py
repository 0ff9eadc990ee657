"""Per-user question limits: per clock minute and per UTC day, shared by every replica; and
the pace of calls to an outside API (a generic cell rate algorithm), shared the same way."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from redis.asyncio import Redis

from bot import keys
from bot.redis_batch import RedisBatch
from bot.redis_errors import translated_redis_errors

# Both counters are checked and, only when both allow it, incremented: atomically, so
# replicas cannot overshoot and a refused question does not count. 0: counted; 1 or 2: the
# minute or the day limit refused. Also run inside the script that takes a conversation's
# lock (``bot.locks``), so an answer is admitted and held in one round trip.
CHARGE_RATE_LUA = """
local function charge_rate(minute_key, day_key, per_minute, per_day)
  local minute = tonumber(redis.call('GET', minute_key) or '0')
  local day = tonumber(redis.call('GET', day_key) or '0')
  if per_minute > 0 and minute >= per_minute then return 1 end
  if per_day > 0 and day >= per_day then return 2 end
  redis.call('INCR', minute_key)
  redis.call('EXPIRE', minute_key, 120)
  redis.call('INCR', day_key)
  redis.call('EXPIRE', day_key, 172800)
  return 0
end
"""
_CHECK_AND_COUNT = (
    CHARGE_RATE_LUA + "return charge_rate(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))"
)


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


@dataclass(frozen=True, slots=True)
class RateCharge:
    """One question to count against its sender's limits by ``CHARGE_RATE_LUA`` inside
    another script (the one that takes the conversation's lock): its keys and limits."""

    keys: tuple[str, str]
    limits: tuple[int, int]
    now: float

    def decision(self, code: int) -> RateDecision:
        """What the script's code (0, 1 or 2) means."""
        if code == 0:
            return RateDecision(True)
        return _refusal(code, self.limits[0], self.limits[1], self.now)


class RateLimited(Exception):
    """A question refused by its sender's rate limit where it was charged with the lock."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(f"rate limited ({decision.window})")
        self.decision = decision


class RateLimiter(Protocol):
    """Counts a user's questions against the minute and day limits."""

    async def acquire(self, user: str) -> RateDecision:
        """Count one question if both limits allow it; else say which one refused."""
        ...

    def charge(self, user: str) -> RateCharge | None:
        """The question as a charge for the conversation's lock to count in its own round
        trip (Redis), or None: count it with ``acquire`` (in this process, or no limits)."""
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
        """Count one question if both limits allow it (the same charge ``charge`` hands to
        the lock's script, run on its own)."""
        charge = self.charge(user)
        if charge is None:
            return RateDecision(True)
        with translated_redis_errors("checking the rate limit"):
            code = await self._script(keys=list(charge.keys), args=list(charge.limits))
        return charge.decision(int(code))

    def charge(self, user: str) -> RateCharge | None:
        """The question's keys and limits, for the lock's script (None: no limits)."""
        if self._per_minute <= 0 and self._per_day <= 0:
            return None
        now = self.clock()
        minute, day, _, _ = _windows(now)
        return RateCharge(
            keys=(keys.rate_minute(user, minute), keys.rate_day(user, day)),
            limits=(self._per_minute, self._per_day),
            now=now,
        )


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

    def charge(self, user: str) -> RateCharge | None:
        """None: counted in this process by ``acquire``."""
        return None


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


# GCRA: the key holds the theoretical arrival time (TAT, ms) of the next call. A call at
# `now` may go at max(TAT, now) - tolerance; it is reserved (TAT moves one interval on) only
# when that is within `max_wait`. Redis' own clock, so replicas agree.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return wait
"""


# A sliding window: at most ARGV[1] calls in any ARGV[2] ms (a sorted set of the reserved
# call times). The next call goes when the window holds fewer, or when the call that many
# calls back leaves it; reserved only within `max_wait`.
_RESERVE_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  local back = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(now, tonumber(back[2]) + window + 1)
end
if at - now > tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], at, ARGV[4])
redis.call('PEXPIRE', KEYS[1], at - now + window + 1000)
return at - now
"""


# A window pace counts its calls over a minute and a second: a call reaches the API a moment
# after its reservation, and must not land in the previous minute's window there.
WINDOW_MS = 61_000


@dataclass(frozen=True, slots=True)
class Pace:
    """At most ``per_minute`` calls a minute on average, ``burst`` of them at once; with
    ``window``: at most ``per_minute`` calls in any 60 seconds, all at once if they come so
    (a sliding window, as Slack counts its tiers)."""

    per_minute: float
    burst: int = 1
    window: bool = False

    @property
    def interval_ms(self) -> int:
        """Milliseconds between calls at the steady pace."""
        return max(1, round(60_000 / self.per_minute))

    @property
    def tolerance_ms(self) -> int:
        """How far ahead of the steady pace a burst may run."""
        return self.interval_ms * max(0, self.burst - 1)


class CallPacer(Protocol):
    """Spaces calls to an outside API that limits its callers' rate."""

    async def reserve(self, scope: str, pace: Pace, *, max_wait: float) -> float | None:
        """Reserve the next call in ``scope``: the seconds to wait before making it, or
        None (nothing reserved) when that would be longer than ``max_wait``."""
        ...


class RedisCallPacer:
    """The pace kept in Redis, shared by every replica (one Lua call per reservation)."""

    def __init__(self, *, redis: Redis, batch: RedisBatch | None = None) -> None:
        self._batch = batch or RedisBatch(redis=redis)
        self._script = self._batch.script(_RESERVE)
        self._window = self._batch.script(_RESERVE_WINDOW)

    async def reserve(self, scope: str, pace: Pace, *, max_wait: float) -> float | None:
        """Reserve the next call in ``scope`` (see `CallPacer`)."""
        limit = min(max_wait, 3600.0)
        if pace.window:
            script = self._window
            args: list[object] = [
                int(pace.per_minute),
                WINDOW_MS,
                int(limit * 1000),
                uuid.uuid4().hex,
            ]
        else:
            script = self._script
            args = [pace.interval_ms, pace.tolerance_ms, int(limit * 1000)]
        with translated_redis_errors("pacing calls"):
            wait = int(
                await self._batch.run_script(
                    script,
                    keys=[keys.call_pace(scope)],
                    args=args,
                    carry=False,  # a status's reservation may be cancelled midway
                )
            )
        return None if wait < 0 else wait / 1000


class LocalCallPacer:
    """The same pace inside one process (the laptop mode, and tests)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._windows: dict[str, list[float]] = {}

    async def reserve(self, scope: str, pace: Pace, *, max_wait: float) -> float | None:
        """Reserve the next call in ``scope`` (see `CallPacer`)."""
        now = self.clock()
        if pace.window:
            return self._reserve_in_window(scope, pace, max_wait, now)
        tat = max(self._tat.get(scope, now), now)
        wait = max(0.0, tat - pace.tolerance_ms / 1000 - now)
        if wait > max_wait:
            return None
        if len(self._tat) > 10_000:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[scope] = tat + pace.interval_ms / 1000
        return wait

    def _reserve_in_window(
        self, scope: str, pace: Pace, max_wait: float, now: float
    ) -> float | None:
        window = WINDOW_MS / 1000
        calls = sorted(t for t in self._windows.get(scope, []) if t > now - window)
        limit = int(pace.per_minute)
        at = now if len(calls) < limit else max(now, calls[len(calls) - limit] + window)
        if at - now > max_wait:
            return None
        self._windows[scope] = [*calls, at]
        return at - now
