"""Team knowledge in the running bot (`chatbot serve`'s runtime): it holds the embedded
store, re-indexes in the background and shows the figures at /metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.store import open_store
from tests.fakes.ollama import FakeOllama
from tests.support.harness import SlackBotUnderTest, running_bot, slack_settings
from tests.support.knowledge_helpers import MODEL, write


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=["codellama:7b", MODEL]) as fake:
        yield fake


@pytest.fixture
def bot_overrides(tmp_path: Path) -> dict[str, Any]:
    docs = write(tmp_path / "docs", {"deploy.md": "# Deploy\n\nRun make ship to deploy.\n"})
    return {
        "knowledge_sources": f"{docs},{docs.parent / 'private'}?only=C_OPS",
        "knowledge_store": str(tmp_path / "store"),
        "embedding_model": MODEL,
        "knowledge_refresh_minutes": 0.002,  # the first refresh comes 0.12 s after start
    }


async def test_the_bot_indexes_in_the_background_and_reports_it(
    slack_bot: SlackBotUnderTest, tmp_path: Path
) -> None:
    knowledge = slack_bot.runtime.knowledge
    assert knowledge is not None
    docs = str(tmp_path / "docs")
    async with asyncio.timeout(10):
        while docs not in knowledge.statuses:  # noqa: ASYNC110 (polled state of the bot)
            await asyncio.sleep(0.05)
    [passage] = await knowledge.retrieve("how do I deploy with make ship", scope=["T1", "C1"])
    assert passage.document == "deploy.md" and passage.title == "Deploy"
    # The embedded store is this process's: another one cannot open it (and says why).
    other = open_store(str(tmp_path / "store"))
    with pytest.raises(KnowledgeUnavailable, match="in use by another process"):
        await other.ping()
    await other.aclose()
    async with slack_bot.http.get(f"{slack_bot.url}/metrics") as response:
        text = await response.text()
    assert f'chatbot_knowledge_documents{{source="{docs}"}} 1.0' in text
    errors = re.search(r"^chatbot_knowledge_index_errors_total (\S+)$", text, re.M)
    assert errors is not None and float(errors.group(1)) >= 1  # the missing private folder


async def test_a_second_bot_on_the_same_embedded_store_says_so_once_and_readyz_tells(
    slack_bot: SlackBotUnderTest,
    tmp_path: Path,
    redis_url: str,
    database_url: str,
    bot_overrides: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = slack_bot.runtime.knowledge
    assert first is not None
    await first.open()  # idempotent: the first bot holds the store
    settings = slack_settings(
        slack_bot.slack, slack_bot.ollama, redis_url, database_url, **bot_overrides
    )
    async with running_bot(settings, slack_bot.slack, slack_bot.ollama) as second:
        knowledge = second.runtime.knowledge
        assert knowledge is not None
        async with asyncio.timeout(10):
            while not knowledge.degraded:  # noqa: ASYNC110 (its start opens the store)
                await asyncio.sleep(0.02)
        for _ in range(3):
            with pytest.raises(KnowledgeUnavailable, match="in use by another process"):
                await knowledge.retrieve("how do I deploy", scope=["T1"])
        said = [r for r in caplog.records if "team knowledge is off in this process" in r.message]
        assert len(said) == 1 and "KNOWLEDGE_STORE=http" in said[0].message
        async with second.http.get(f"{second.url}/readyz") as response:
            body = await response.json()
        assert response.status == 200  # answers go on without team knowledge
        assert body["knowledge"].startswith("degraded: the embedded store is held")
    async with slack_bot.http.get(f"{slack_bot.url}/readyz") as response:
        assert (await response.json())["knowledge"] == "ok"
