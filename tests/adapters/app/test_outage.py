"""Redis going away and coming back while the bot runs: it keeps answering (without memory),
says so once, /readyz names Redis, nothing hangs, and it recovers without a restart."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import replies
from tests.support.harness import SlackBotUnderTest
from tests.support.http import get_json
from tests.support.processes import free_port, start_redis_server
from tests.support.slack_payloads import CHANNEL, mention


class RedisProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_redis_server(self.port, self.workdir)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


@pytest.fixture
def redis_url(own_redis: RedisProcess) -> str:
    return f"redis://127.0.0.1:{own_redis.port}/0"


async def test_redis_outage_and_recovery(
    slack_bot: SlackBotUnderTest, own_redis: RedisProcess
) -> None:
    root = "1500000000.000100"
    slack_bot.ollama.reply_fn = lambda messages: f"{len(messages)} messages"
    await slack_bot.post_event(mention("first", root))
    await slack_bot.settle()

    own_redis.stop()
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 503 and "redis" in body["down"]
    started = time.monotonic()
    for i, ts in enumerate(("1500000000.000200", "1500000000.000300")):
        resp = await slack_bot.post_event(mention(f"during {i}", ts, thread_ts=root))
        assert resp.status == 200
        await slack_bot.settle(timeout=15)
    assert time.monotonic() - started < 15  # nothing hung on the dead Redis
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, root)]
    assert texts[0] == "2 messages"
    # Answered without memory (system + question), and told once.
    assert texts[1].startswith("2 messages") and replies.MEMORY_DOWN in texts[1]
    assert texts[2] == "2 messages"

    own_redis.start()  # back, empty
    for _ in range(100):
        status, body = await get_json(f"{slack_bot.url}/readyz")
        if status == 200:
            break
    assert status == 200, body
    await slack_bot.post_event(mention("after", "1500000000.000400", thread_ts=root))
    await slack_bot.settle()
    await slack_bot.post_event(mention("again", "1500000000.000500", thread_ts=root))
    await slack_bot.settle()
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, root)]
    assert texts[3:] == ["2 messages", "4 messages"]  # memory works again
