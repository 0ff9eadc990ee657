"""PostgreSQL going away and coming back while the bot runs: answers go on, the usage rows of
those answers are kept and written once it is back, `/premium` is refused while budgets cannot
be read, and /readyz names the database until it answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest

from adapters.app.builders import PROVIDER_NAMES
from bot import replies
from tests.fakes.openai import API_KEY, FakeOpenAI
from tests.support.harness import SlackBotUnderTest
from tests.support.http import get_json
from tests.support.processes import PostgresCluster, postgres_cluster
from tests.support.slack_payloads import CHANNEL, USER, mention

ROOT = "1700000000.000100"


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    try:
        with postgres_cluster() as cluster:
            yield cluster
    except LookupError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def database_url(own_postgres: PostgresCluster) -> str:
    """The harness's DATABASE_URL: the throwaway cluster (the harness migrates it)."""
    return own_postgres.url


@pytest.fixture
def bot_overrides(fake_openai: FakeOpenAI) -> dict[str, Any]:
    """Premium on, with a monthly budget: every `/premium` must read the spend first."""
    return {
        "openai_api_key": API_KEY,
        "openai_base_url": fake_openai.url,
        "premium_model": "gpt-4.1",
        "premium_users": USER,
        "premium_monthly_budget_usd": 5,
    }


async def rows(url: str) -> int:
    """Rows in the usage ledger, read straight from PostgreSQL."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=3) as conn:
        cursor = await conn.execute("SELECT count(*) FROM requests")
        (count,) = await cursor.fetchone() or (0,)
        return int(count)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    """Wait until ``check()`` holds, polling; fail naming ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} within {timeout:g} s"
        await asyncio.sleep(0.1)


async def test_postgres_outage_and_recovery(
    slack_bot: SlackBotUnderTest, own_postgres: PostgresCluster, fake_openai: FakeOpenAI
) -> None:
    slack_bot.ollama.reply_fn = lambda messages: f"local: {messages[-1]['content']}"
    await slack_bot.post_event(mention("before", ROOT))
    await slack_bot.settle()

    async def written(n: int) -> bool:
        return await rows(own_postgres.url) == n

    await eventually(lambda: written(1), "the first answer's usage row is written", 10)

    own_postgres.stop()
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 503 and body["down"] == ["database"], body

    # Local answers go on in the thread.
    for i, ts in enumerate(("1700000000.000200", "1700000000.000300")):
        resp = await slack_bot.post_event(mention(f"during {i}", ts, thread_ts=ROOT))
        assert resp.status == 200
        await slack_bot.settle(timeout=15)
    # Premium is refused: its budget cannot be read, so nothing is sent to OpenAI.
    await slack_bot.post_event(
        mention("/premium costly question", "1700000000.000400", thread_ts=ROOT)
    )
    await slack_bot.settle(timeout=15)
    texts = [m.text for m in slack_bot.slack.messages(CHANNEL, ROOT)]
    assert texts[1:] == [
        "local: during 0",
        "local: during 1",
        PROVIDER_NAMES.fill(replies.PREMIUM_BUDGET_UNKNOWN, local_model="codellama:7b"),
    ]
    assert fake_openai.requests == []
    status, body = await get_json(f"{slack_bot.url}/readyz")
    assert status == 503 and body["down"] == ["database"], body

    own_postgres.start()
    # Without anyone asking again: /readyz recovers and the kept rows are written.

    async def ready() -> bool:
        return (await get_json(f"{slack_bot.url}/readyz"))[0] == 200

    await eventually(ready, "/readyz answers 200 again", 15)
    await eventually(lambda: written(3), "the answers' usage rows are written", 15)
    # And premium works again, its spend read from the ledger.
    await slack_bot.post_event(mention("/premium now?", "1700000000.000500", thread_ts=ROOT))
    await slack_bot.settle()
    assert len(fake_openai.requests) == 1
    assert "gpt-4.1" in slack_bot.slack.messages(CHANNEL, ROOT)[-1].text
