"""The MCP server at `POST /mcp`: the MCP SDK's own client (ClientSession over the
streamable HTTP transport) against the running bot, authenticated by a personal token."""

from __future__ import annotations

from typing import Any

import pytest

from bot.tokens import Owner, TokenStore
from tests.support.harness import SlackBotUnderTest
from tests.support.mcp import mcp_session
from tests.support.slack_payloads import TEAM, USER


async def make_token(bot: SlackBotUnderTest, user: str = USER) -> str:
    store = TokenStore(engine=bot.runtime.engine, lifetime_days=90)
    return (await store.create(Owner("slack", TEAM, user))).secret


async def test_lists_both_tools_with_descriptions_for_agents(slack_bot: SlackBotUnderTest) -> None:
    async with mcp_session(slack_bot, await make_token(slack_bot)) as session:
        tools = (await session.list_tools()).tools
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"search_knowledge", "ask"}
    assert "internal docs, runbooks and code" in (by_name["ask"].description or "")
    assert by_name["search_knowledge"].input_schema["required"] == ["query"]


async def test_ask_answers_through_the_core(slack_bot: SlackBotUnderTest) -> None:
    slack_bot.ollama.reply = "Deploys go through `make ship`."
    async with mcp_session(slack_bot, await make_token(slack_bot)) as session:
        result = await session.call_tool("ask", {"question": "how do we deploy?"})
    assert not result.is_error
    assert result.content[0].text == "Deploys go through `make ship`."  # type: ignore[union-attr]
    assert result.structured_content == {
        "answer": "Deploys go through `make ship`.",
        "sources": [],
    }
    sent = slack_bot.ollama.requests[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "how do we deploy?"}


async def test_a_refusal_is_a_tool_error_with_the_reason(slack_bot: SlackBotUnderTest) -> None:
    async with mcp_session(slack_bot, await make_token(slack_bot)) as session:
        empty = await session.call_tool("ask", {"question": "   "})
        premium = await session.call_tool("ask", {"question": "hi", "premium": True})
        search = await session.call_tool("search_knowledge", {"query": "deploy"})
    assert empty.is_error and premium.is_error
    assert "not configured" in premium.content[0].text  # type: ignore[union-attr]
    assert search.is_error and "KNOWLEDGE_SOURCES" in search.content[0].text  # type: ignore[union-attr]
    assert slack_bot.ollama.requests == []


@pytest.mark.parametrize("token", [None, "cbt_" + "x" * 43, "sk-other"])
async def test_without_a_valid_token_nothing_is_listed_or_run(
    slack_bot: SlackBotUnderTest, token: str | None
) -> None:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with slack_bot.http.post(f"{slack_bot.url}/mcp", json=body, headers=headers) as resp:
        assert resp.status == 401
        assert "tools" not in await resp.text()
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error on 401
        async with mcp_session(slack_bot, token) as session:
            await session.list_tools()
