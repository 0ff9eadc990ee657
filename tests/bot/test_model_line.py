"""One line per model server for the whole fleet: two `chatbot serve` replicas with two
answer workers each never send a server more than OLLAMA_MAX_CONCURRENCY at once, a
waiting person sees their place in the fleet's line, and a replica killed while holding a
slot frees it within the lease."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET
from tests.support.http import post
from tests.support.processes import start_serve, stop
from tests.support.slack_payloads import BOT_ID, BOT_USER, CHANNEL, TEAM, mention

Replica = tuple[str, asyncio.subprocess.Process]
PLACE = re.compile(r"#(\d+) in line")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, fake_ollama: FakeOllama, slack: FakeSlack
) -> AsyncIterator[Callable[[], Awaitable[Replica]]]:
    started: list[asyncio.subprocess.Process] = []

    async def start() -> Replica:
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "OLLAMA_BASE_URL": fake_ollama.url,
            "OLLAMA_MAX_CONCURRENCY": "1",
            "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
            "WORK_RECLAIM_SECONDS": "2",
        }
        url, proc = await start_serve(env, tmp_path, output=False, workers=2)
        started.append(proc)
        return url, proc

    yield start
    for proc in started:
        await stop(proc)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its children (a replica: its ingress and answer workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)


def place(slack: FakeSlack, ts: str) -> int:
    """The first place in line a thread's status showed (0: none yet)."""
    for call in slack.calls_to("assistant.threads.setStatus"):
        if call.args.get("thread_ts") == ts:
            match = PLACE.search(" ".join(call.args.get("loading_messages") or []))
            if match:
                return int(match.group(1))
    return 0


async def test_the_fleet_keeps_one_line_per_model_server(
    fleet: Callable[[], Awaitable[Replica]], slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    (a, _), (b, _) = await asyncio.gather(fleet(), fleet())
    fake_ollama.reply = "one two three four five six seven eight"
    fake_ollama.chunk_size, fake_ollama.token_delay = 4, 1.0  # the first answer holds the slot
    threads = [f"1500000000.00{i:04d}" for i in range(5)]
    places = []
    for i, ts in enumerate(threads):
        assert await post((a, b)[i % 2], mention(f"q{i}", ts)) == 200
        if i == 0:
            await slack.wait_for(lambda f: fake_ollama.generating == 1, timeout=15)
            continue
        # Each question joins the line before the next is asked, from either replica.
        await slack.wait_for(lambda f, ts=ts: place(f, ts) > 0, timeout=15)
        places.append(place(slack, ts))
    assert places == [1, 2, 3, 4]  # the fleet's line, not each process's own
    fake_ollama.token_delay = 0.05
    await slack.wait_for(
        lambda f: all(f.thread_text(CHANNEL, ts) == fake_ollama.reply for ts in threads),
        timeout=60,
    )
    assert fake_ollama.most_generating == 1
    assert len(fake_ollama.requests) == len(threads)


async def test_a_replica_killed_holding_a_slot_frees_it_within_the_lease(
    fleet: Callable[[], Awaitable[Replica]], slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    (a, proc_a), (b, _) = await asyncio.gather(fleet(), fleet())
    fake_ollama.reply = "one two three four five six seven eight"
    fake_ollama.chunk_size, fake_ollama.token_delay = 4, 3.0
    first, second = "1500000000.000100", "1500000000.000200"
    assert await post(a, mention("q0", first)) == 200
    await slack.wait_for(lambda f: fake_ollama.generating == 1, timeout=15)
    assert await post(b, mention("q1", second)) == 200
    await slack.wait_for(lambda f: place(f, second) == 1, timeout=15)
    assert fake_ollama.most_generating == 1  # q1 waits in line on the other replica
    kill_tree(proc_a.pid)  # the replica and its answer workers die holding the only slot
    await proc_a.wait()
    fake_ollama.token_delay = 0.05
    # The killed holder's slot comes back (its lease: WORK_RECLAIM_SECONDS / 3) and the line
    # moves on; q0 is taken over by the surviving replica (its work queue), answered too.
    await slack.wait_for(
        lambda f: all(f.thread_text(CHANNEL, ts) == fake_ollama.reply for ts in (first, second)),
        timeout=30,
    )
    # (The dead holder's generation ends at the server only when it next writes to the
    # closed connection, so the server may count it beside q1's for a moment.)
