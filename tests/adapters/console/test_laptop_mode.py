"""The embedded default: no REDIS_URL and no Redis on localhost. Slack still works in one
process, with memory and dedupe kept in the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackBotUnderTest,
    bot_settings,
    running_bot,
)
from tests.support.processes import free_port
from tests.support.slack_payloads import BOT_USER, CHANNEL, channel_message, mention


@pytest.fixture
async def laptop_bot(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
) -> AsyncIterator[SlackBotUnderTest]:
    monkeypatch.setattr(
        "adapters.app.settings.DEFAULT_REDIS_URL", f"redis://127.0.0.1:{free_port()}"
    )
    settings = bot_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
        ollama_base_url=fake_ollama.url,
        database_url=f"sqlite:///{tmp_path}/laptop.db",
    )
    async with running_bot(settings, fake_slack, fake_ollama) as bot:
        assert bot.runtime.memory == "local" and bot.runtime.work_queue is None
        yield bot


async def test_slack_works_without_redis(laptop_bot: SlackBotUnderTest) -> None:
    root = "1500000000.000100"
    laptop_bot.ollama.reply_fn = lambda messages: f"{len(messages)} messages"
    body = mention("hello", root)
    await laptop_bot.post_event(body)
    await laptop_bot.post_event(channel_message(f"<@{BOT_USER}> hello", root))
    await laptop_bot.post_event(body, retry_num=1)
    await laptop_bot.settle()
    await laptop_bot.post_event(channel_message("and?", "1500000000.000200", thread_ts=root))
    await laptop_bot.settle()
    texts = [m.text for m in laptop_bot.slack.messages(CHANNEL, root)]
    assert texts == ["2 messages", "4 messages"]  # answered once, then with memory
    status, _ = await get_status(laptop_bot, "/readyz")
    assert status == 200  # the in-process store counts as up


async def get_status(bot: SlackBotUnderTest, path: str) -> tuple[int, str]:
    async with bot.http.get(f"{bot.url}{path}") as resp:
        return resp.status, await resp.text()
