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
from tests.harness import SlackBotUnderTest
from tests.knowledge_helpers import MODEL, write


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
