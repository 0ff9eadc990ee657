"""The pace of calls to an outside API, in Redis (shared by replicas) and in one process."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.ratelimit import CallPacer, LocalCallPacer, Pace, RedisCallPacer


@pytest.fixture(params=["redis", "local"])
def pacer(request: pytest.FixtureRequest) -> CallPacer:
    if request.param == "redis":
        redis: Redis = request.getfixturevalue("redis_client")
        return RedisCallPacer(redis=redis)
    return LocalCallPacer()


async def test_a_burst_goes_at_once_then_calls_are_spaced(pacer: CallPacer) -> None:
    pace = Pace(per_minute=60, burst=3)  # one a second after three at once
    waits = [await pacer.reserve("slack:T1:chat.update", pace, max_wait=10) for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(1.0, abs=0.1)
    assert waits[4] == pytest.approx(2.0, abs=0.1)


async def test_a_slot_too_far_away_is_not_taken(pacer: CallPacer) -> None:
    pace = Pace(per_minute=60, burst=1)
    assert await pacer.reserve("s", pace, max_wait=0) == 0
    assert await pacer.reserve("s", pace, max_wait=0) is None  # refused, nothing reserved
    assert await pacer.reserve("s", pace, max_wait=5) == pytest.approx(1.0, abs=0.1)
    # Scopes are independent: another workspace has its own budget.
    assert await pacer.reserve("other", pace, max_wait=0) == 0


async def test_a_window_pace_lets_the_whole_minute_go_at_once_and_no_more(
    pacer: CallPacer,
) -> None:
    """As Slack counts a tier: 20 calls in any minute, all at once if they come so."""
    pace = Pace(per_minute=20, window=True)
    waits = [await pacer.reserve("slack:T1:chat.startStream", pace, max_wait=0) for _ in range(20)]
    assert waits == [0] * 20
    assert await pacer.reserve("slack:T1:chat.startStream", pace, max_wait=0) is None
    # The 21st goes once the first has left the window (a minute, and a second of margin).
    later = await pacer.reserve("slack:T1:chat.startStream", pace, max_wait=120)
    assert later == pytest.approx(61.0, abs=0.5)
    # The refused try reserved nothing: the 22nd is a minute after the second call.
    assert await pacer.reserve("slack:T1:chat.startStream", pace, max_wait=120) == (
        pytest.approx(61.0, abs=0.5)
    )
