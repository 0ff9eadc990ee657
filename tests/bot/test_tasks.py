"""Loops that run until cancelled stop when cancelled, even when the cancellation is lost on
the way (Python 3.11's ``asyncio.wait_for``, through which redis-py sends every command)."""

from __future__ import annotations

import asyncio
import sys

from bot.tasks import raise_if_cancelled


async def _command() -> str:
    """What a Redis command looks like to the loop: an operation that ends at once."""
    return "OK"


async def _round_trip() -> str:
    # How redis-py sends a command when a socket timeout is set.
    return await asyncio.wait_for(_command(), timeout=10)


async def _cancel_during_a_round_trip(
    checked: bool, stop: asyncio.Event
) -> tuple[asyncio.Task[None], list[str]]:
    """Start a loop that makes round trips (until ``stop``), cancel it just as one ends, and
    give it a few rounds; the loop and what it did after the cancellation."""
    cancelled = asyncio.Event()
    after: list[str] = []

    async def loop() -> None:
        while not stop.is_set():
            if checked:
                raise_if_cancelled()
            if cancelled.is_set():
                after.append("a round after the cancellation")
            await _round_trip()
            await asyncio.sleep(0)

    task = asyncio.create_task(loop())
    # Let the loop start a round trip: the command ends at once, and its result is on
    # its way to the loop when the cancellation comes.
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    cancelled.set()
    for _ in range(20):  # rounds enough for the loop to go on, had it lost the cancellation
        await asyncio.sleep(0)
    return task, after


async def test_a_loop_that_checks_stops_even_when_its_cancellation_was_lost() -> None:
    task, after = await _cancel_during_a_round_trip(checked=True, stop=asyncio.Event())
    assert task.done() and task.cancelled()
    assert len(after) <= 1  # at most the round that was under way


async def test_without_the_check_this_python_may_lose_the_cancellation() -> None:
    """What the check is for: on Python 3.11 the same loop without it runs on."""
    stop = asyncio.Event()
    task, after = await _cancel_during_a_round_trip(checked=False, stop=stop)
    try:
        if sys.version_info < (3, 12):
            assert not task.done() and after
            assert task.cancelling() == 1  # the request is still counted
        else:
            assert task.cancelled()
    finally:
        stop.set()  # (cancelling it again could be lost the same way)
        await asyncio.gather(task, return_exceptions=True)
