"""Team knowledge through the team API and MCP: cited answers with a `Sources:` list and a
`citations` field, and a token sees only sources open to everyone or to its owner's
workspace, never a channel-restricted one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bot.tokens import Owner, TokenStore
from tests.fakes.ollama import FakeOllama
from tests.support.harness import SlackBotUnderTest
from tests.support.knowledge_helpers import write
from tests.support.mcp import mcp_session
from tests.support.slack_payloads import CHANNEL, TEAM, USER

OPEN = {"runbooks/deploy.md": "# Deploying billing\n\nDeploy billing with `deployctl push`.\n"}
TEAM_ONLY = {"team/oncall.md": "# On-call rota\n\nThe on-call rota lives in PagerDuty team Zeta.\n"}
CHANNEL_ONLY = {"secret/zebra.md": "# Project Zebra\n\nProject Zebra launches in March.\n"}


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=["codellama:7b", "nomic-embed-text"]) as fake:
        yield fake


@pytest.fixture
def bot_overrides(tmp_path: Path) -> dict[str, Any]:
    open_docs = write(tmp_path / "open", OPEN)
    team_docs = write(tmp_path / "team", TEAM_ONLY)
    channel_docs = write(tmp_path / "channel", CHANNEL_ONLY)
    return {
        "knowledge_sources": f"{open_docs},{team_docs}?only={TEAM},{channel_docs}?only={CHANNEL}",
        "knowledge_store": str(tmp_path / "store"),
        "knowledge_refresh_minutes": 0,
    }


async def ready(bot: SlackBotUnderTest) -> str:
    knowledge = bot.runtime.knowledge
    assert knowledge is not None
    reports = await knowledge.index()
    assert all(r.ok for r in reports), reports
    store = TokenStore(engine=bot.runtime.engine, lifetime_days=90)
    return (await store.create(Owner("slack", TEAM, USER))).secret


def prompt_of(fake: FakeOllama) -> str:
    return "\n".join(m["content"] for m in fake.requests[-1]["messages"])


async def test_answers_cite_sources_in_text_and_as_a_list(slack_bot: SlackBotUnderTest) -> None:
    token = await ready(slack_bot)
    slack_bot.ollama.reply = "Use deployctl push [1]."
    api = openai.AsyncOpenAI(base_url=f"{slack_bot.url}/v1", api_key=token, max_retries=0)
    async with api:
        response = await api.chat.completions.create(
            model="codellama:7b",
            messages=[{"role": "user", "content": "how do I deploy billing with deployctl?"}],
        )
        stream = await api.chat.completions.create(
            model="codellama:7b",
            messages=[{"role": "user", "content": "how do I deploy billing with deployctl?"}],
            stream=True,
        )
        chunks = [c async for c in stream]
    content = response.choices[0].message.content or ""
    assert content.startswith("Use deployctl push [1].")
    assert "\n\nSources:\n[1] Deploying billing" in content
    assert response.model_extra is not None
    [citation] = response.model_extra["citations"]
    assert citation["number"] == 1 and citation["title"] == "Deploying billing"
    assert citation["url"].endswith("deploy.md")
    with_citations = [c for c in chunks if (c.model_extra or {}).get("citations")]
    assert len(with_citations) == 1
    assert "Sources:" in (with_citations[0].choices[0].delta.content or "")


async def test_a_token_never_sees_a_channel_restricted_source(
    slack_bot: SlackBotUnderTest,
) -> None:
    token = await ready(slack_bot)
    api = openai.AsyncOpenAI(base_url=f"{slack_bot.url}/v1", api_key=token, max_retries=0)
    async with api:
        await api.chat.completions.create(
            model="codellama:7b",
            messages=[{"role": "user", "content": "when does Project Zebra launch in March?"}],
        )
        assert "Zebra launches" not in prompt_of(slack_bot.ollama)
        await api.chat.completions.create(
            model="codellama:7b",
            messages=[{"role": "user", "content": "where does the on-call rota live?"}],
        )
        assert "PagerDuty team Zeta" in prompt_of(slack_bot.ollama)  # the owner's workspace
    async with mcp_session(slack_bot, token) as session:
        zebra = await session.call_tool("search_knowledge", {"query": "Project Zebra launch"})
        rota = await session.call_tool("search_knowledge", {"query": "on-call rota", "limit": 3})
    assert not zebra.is_error and "Zebra" not in str(zebra.structured_content)
    assert "zebra.md" not in str(zebra.content)
    titles = [d["title"] for d in (rota.structured_content or {})["documents"]]
    assert "On-call rota" in titles and len(titles) <= 3
