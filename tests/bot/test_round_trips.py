"""Redis round trips of one answer, counted at the client: one per request written to Redis
(a pipeline or a script is one). There were 11, then 8; issue 15 aimed at four: the work
entry queued; the question counted, the thread marked and the conversation held with its
history (one script, the mark riding with it); the Slack call's slot; the answer remembered,
its lock released and its work entry acknowledged (one pipeline). Issue 24 adds a fifth: a
slot on the model server taken in the fleet's line (its release rides with the last
pipeline)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import SlackBotUnderTest
from tests.support.slack_payloads import CHANNEL, mention

BACKGROUND = {"XREADGROUP", "XAUTOCLAIM", "XCLAIM", "PING", "XLEN"}  # the consumer's own loop
# A new pooled connection's set-up (when two round trips overlap): the pool's, not the answer's.
CONNECTING = {"HELLO", "CLIENT", "SELECT", "AUTH"}
TIMER = "(timer)"  # deferred writes the batch sent on its own after its flush interval


@pytest.fixture
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: the database plays no part here."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'chatbot.db'}"


def _sent_by_the_timer() -> bool:
    """Whether this request is the batch's own flush of writes no step carried in time."""
    task = asyncio.current_task()
    return task is not None and task.get_coro().__qualname__ == "RedisBatch._flush_quietly"  # type: ignore[union-attr]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Requests by the name of their first command; with the production flush interval
    (5 ms), deferred writes no step carried in time are sent on their own by the batch's
    timer: those are counted as "(timer)", apart from the steps' round trips."""
    counted: Counter[str] = Counter()
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes) else b"".join(command)
        # The first command of the request names it (a pipeline: MULTI or its first one).
        name = packed.split(b"\r\n", 3)[2].decode(errors="replace").upper()
        counted[TIMER if _sent_by_the_timer() else name] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield counted


async def test_one_answer_takes_at_most_five_round_trips(
    round_trips: Counter[str],
    slack_bot: SlackBotUnderTest,
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
) -> None:
    ts = "1600000002.000100"
    await slack_bot.post_event(mention("warm up", "1600000002.000001"))  # scripts loaded
    await fake_slack.wait_for(lambda f: bool(f.messages(CHANNEL, "1600000002.000001")), 10)
    await slack_bot.settle()
    round_trips.clear()
    assert (await slack_bot.post_event(mention("count me", ts))).status == 200
    await fake_slack.wait_for(lambda f: bool(f.messages(CHANNEL, ts)), 10)
    await slack_bot.settle()
    answer = {n: k for n, k in round_trips.items() if n not in BACKGROUND | CONNECTING | {TIMER}}
    print(f"round trips of one answer's steps: {sum(answer.values())} {answer}", end="")
    print(f"; deferred writes sent on their own by the timer: {round_trips[TIMER]}")
    assert sum(answer.values()) <= 5, answer


async def test_the_next_answer_in_a_conversation_reads_what_the_last_one_remembered(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.conversation import ConversationKey
    from bot.state import redis_state
    from inference.base import Turn

    state = redis_state(redis=redis_client, ttl_seconds=60)
    key = ConversationKey("slack", "T1", "C1", "1.0")
    order: list[str] = []
    holding, b_asked, b_holds = asyncio.Event(), asyncio.Event(), asyncio.Event()
    original = AbstractConnection.send_packed_command

    async def sending(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        await original(self, command, check_health)
        task = asyncio.current_task()
        packed = command if isinstance(command, bytes) else b"".join(command)
        if task is not None and task.get_name() == "b" and b"EVALSHA" in packed:
            b_asked.set()  # the second answer has asked Redis for the conversation

    monkeypatch.setattr(AbstractConnection, "send_packed_command", sending)

    async def answer(
        name: str, until: asyncio.Event | None, then: asyncio.Event | None
    ) -> list[str]:
        async with state.memory.hold(key) as held:
            holding.set()
            if name == "b":
                b_holds.set()
            seen = [t.content for t in held.history]
            order.append(name)
            if until is not None:
                await asyncio.wait_for(until.wait(), 10)
            await held.remember([Turn("user", name)])
            if then is not None:  # remembering released the lock: the next one goes
                await asyncio.wait_for(then.wait(), 10)
        return seen

    first = asyncio.create_task(answer("a", b_asked, b_holds))
    await holding.wait()  # the first holds the conversation
    second = asyncio.create_task(answer("b", None, None), name="b")
    assert await first == []
    assert await second == ["a"]
    assert order == ["a", "b"]
    assert [t.content for t in await state.memory.history(key)] == ["a", "b"]
