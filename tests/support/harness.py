"""End-to-end harness: the whole bot (real wiring, real aiohttp server, real Redis and
database) wired to fake Slack and Ollama servers that speak the real protocols."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier

from adapters.app.server import build_web_app, migrate
from adapters.app.settings import Settings
from adapters.app.wiring import Runtime, build_runtime
from bot.usage import UsageRecord
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.support.fixtures_db import recorded
from tests.support.slack_payloads import BOT_ID, BOT_USER, TEAM

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a request: timestamp and v0 HMAC signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


@dataclass
class SlackBotUnderTest:
    """The running bot and its fake neighbours."""

    runtime: Runtime
    server: TestServer
    http: aiohttp.ClientSession
    slack: FakeSlack
    ollama: FakeOllama

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))

    async def post_event(
        self,
        body: dict[str, Any],
        *,
        retry_num: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST a signed Events API request, as Slack does."""
        raw = json.dumps(body)
        all_headers = {"Content-Type": "application/json", **sign(raw)}
        if retry_num is not None:
            all_headers |= {
                "X-Slack-Retry-Num": str(retry_num),
                "X-Slack-Retry-Reason": "http_timeout",
            }
        all_headers |= headers or {}
        async with self.http.post(
            f"{self.url}/slack/events", data=raw, headers=all_headers
        ) as resp:
            await resp.read()
            return resp

    async def post_command(self, form: dict[str, str]) -> aiohttp.ClientResponse:
        """POST a signed slash command, form-encoded as Slack does."""
        raw = urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(raw)}
        async with self.http.post(f"{self.url}/slack/events", data=raw, headers=headers) as resp:
            await resp.read()
            return resp

    async def settle(self, timeout: float = 10) -> None:
        """Wait until every queued or running answer is finished."""
        assert await self.runtime.settle(timeout), "answers still running"


def bot_settings(**overrides: Any) -> Settings:
    """Settings for a test bot, ignoring any .env file on the machine."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=["codellama:7b"]) as fake:
        yield fake


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """The fake OpenAI endpoint, serving gpt-4.1."""
    async with FakeOpenAI(models=["gpt-4.1"]) as fake:
        yield fake


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER, bot_id=BOT_ID)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def bot_overrides() -> dict[str, Any]:
    """Extra settings for `slack_bot`; a test module redefines this fixture to change them."""
    return {}


@pytest.fixture
async def slack_bot(
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    bot_overrides: dict[str, Any],
) -> AsyncIterator[SlackBotUnderTest]:
    """The bot serving HTTP on a free port, Slack in HTTP mode."""
    settings = slack_settings(fake_slack, fake_ollama, redis_url, database_url, **bot_overrides)
    async with running_bot(settings, fake_slack, fake_ollama) as bot:
        yield bot


def slack_settings(
    slack: FakeSlack, ollama: FakeOllama, redis_url: str, database_url: str, **overrides: Any
) -> Settings:
    """Settings for a bot on the fake Slack (HTTP mode) and the fake Ollama."""
    return bot_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        ollama_base_url=ollama.url,
        ollama_model="codellama:7b",
        redis_url=redis_url,
        database_url=database_url,
        **overrides,
    )


@asynccontextmanager
async def running_bot(
    settings: Settings, slack: FakeSlack, ollama: FakeOllama
) -> AsyncIterator[SlackBotUnderTest]:
    """Migrate, build and start the bot from ``settings`` and serve it on a free port."""
    await migrate(settings)
    runtime = await build_runtime(settings)
    # Rate limits count per clock minute: a test must not straddle two minutes.
    frozen = time.time() // 60 * 60 + 1
    runtime.rate_limiter.clock = lambda: frozen  # type: ignore[union-attr]
    runtime.start()
    server = TestServer(build_web_app(runtime), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    try:
        yield SlackBotUnderTest(runtime, server, http, slack, ollama)
    finally:
        await http.close()
        await runtime.tracker.drain(5)
        await server.close()
        await runtime.close()
        await asyncio.sleep(0)


async def records_written(bot: SlackBotUnderTest, count: int = 1) -> list[UsageRecord]:
    """The ledger's records, newest first, once the usage writer has written ``count``
    (within 5 s)."""
    deadline = time.monotonic() + 5
    while len(records := await recorded(bot.runtime.engine)) < count:
        assert time.monotonic() < deadline, "no usage record written"
        await asyncio.sleep(0.02)
    return records
