"""A personal token made in a Teams personal chat works with the team API; `/token` in a
Teams channel makes none."""

from __future__ import annotations

import re

import openai

from bot.tokens import TokenStore
from tests.support.teams import CHANNEL_THREAD, PERSONAL, SQLITE_ONLY, TeamsBotUnderTest

TOKEN = re.compile(r"cbt_[A-Za-z0-9_-]{40,}")


@SQLITE_ONLY
async def test_a_teams_personal_chat_token_answers_over_the_api(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await teams_bot.post(teams_bot.message("personal_message", "/token editor"))
    await teams_bot.settle()
    [reply] = teams_bot.connector.texts(PERSONAL)
    found = TOKEN.search(reply)
    assert found, reply
    teams_bot.ollama.reply = "From Teams' owner."
    url = str(teams_bot.server.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=url, api_key=found.group(0), max_retries=0) as api:
        answer = await api.chat.completions.create(
            model="codellama:7b", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "From Teams' owner."
    [token] = await TokenStore(engine=teams_bot.runtime.engine, lifetime_days=90).list()
    assert token.owner.platform == "teams" and token.name == "editor"


@SQLITE_ONLY
async def test_token_in_a_teams_channel_is_refused(teams_bot: TeamsBotUnderTest) -> None:
    await teams_bot.post(teams_bot.message("channel_mention", "/token"))
    await teams_bot.settle()
    [reply] = teams_bot.connector.texts(CHANNEL_THREAD)
    assert "direct message" in reply and not TOKEN.search(reply)
    assert await TokenStore(engine=teams_bot.runtime.engine, lifetime_days=90).list() == []
