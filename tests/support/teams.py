"""The running Teams bot for tests: activities shaped like Microsoft's samples, posted to
/api/messages of the real aiohttp app through botbuilder's real authentication, answered
through a fake Bot Connector. Fixtures: `connector`, `login`, `teams_bot`, `dev_bot`."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from botframework.connector.auth import AuthenticationConstants

from adapters.app.server import build_web_app, migrate
from adapters.app.wiring import Runtime, build_runtime
from adapters.teams.app import TeamsBot
from adapters.teams.sink import ReplyOptions
from tests.fakes.ollama import FakeOllama
from tests.fakes.teams import FakeBotConnector, FakeBotFrameworkLogin
from tests.support import FIXTURES as ALL_FIXTURES
from tests.support.harness import bot_settings

FIXTURES = ALL_FIXTURES / "teams"
APP_ID = "c9e8c047-2a74-40a2-b28a-b162d5f5327c"
APP_PASSWORD = "fake~client~secret"
# Tests where the database plays no part run on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FAST = ReplyOptions(
    stream_interval=0.02,
    stream_budget=100.0,
    typing_delay=0.0,
    typing_interval=0.05,
    retry_base_delay=0.01,
    retry_max_delay=0.05,
)


def activity(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture activity, with top-level fields replaced."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return {**copy.deepcopy(data), **changes}


@dataclass
class TeamsBotUnderTest:
    """The running bot and its fake neighbours."""

    runtime: Runtime
    server: TestServer
    http: aiohttp.ClientSession
    connector: FakeBotConnector
    login: FakeBotFrameworkLogin | None
    ollama: FakeOllama

    @property
    def teams(self) -> TeamsBot:
        assert self.runtime.teams is not None
        return self.runtime.teams

    def message(self, name: str, text: str | None = None, **changes: Any) -> dict[str, Any]:
        """A fixture activity whose serviceUrl is the fake connector."""
        data = activity(name, **{"serviceUrl": self.connector.service_url, **changes})
        if text is not None:
            mention = "<at>Code Helper</at> " if "mention" in name else ""
            data["text"] = mention + text
        return data

    async def post(
        self,
        body: dict[str, Any] | str | bytes,
        *,
        token: str | None = "valid",
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST an activity as the Bot Connector does, signed unless told otherwise."""
        raw = body if isinstance(body, str | bytes) else json.dumps(body)
        all_headers = {"Content-Type": "application/json"}
        if token == "valid":
            assert self.login is not None
            service_url = body.get("serviceUrl", "") if isinstance(body, dict) else ""
            token = self.login.channel_token(service_url)
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers |= headers or {}
        async with self.http.post(
            str(self.server.make_url("/api/messages")), data=raw, headers=all_headers
        ) as resp:
            await resp.read()
            return resp

    async def settle(self, timeout: float = 10) -> None:
        assert await self.runtime.settle(timeout), "answers still running"

    def question(self, index: int = -1) -> str:
        """The last user turn the model received in one request."""
        return str(self.ollama.requests[index]["messages"][-1]["content"])


@pytest.fixture
async def connector() -> AsyncIterator[FakeBotConnector]:
    fake = FakeBotConnector()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def login(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotFrameworkLogin]:
    """The fake Bot Framework login; botframework-connector's URL constants point at it."""
    fake = FakeBotFrameworkLogin(app_id=APP_ID, app_password=APP_PASSWORD)
    await fake.start()
    monkeypatch.setattr(
        AuthenticationConstants, "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL", fake.metadata_url
    )
    monkeypatch.setattr(
        AuthenticationConstants, "TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX", fake.login_prefix
    )
    yield fake
    await fake.stop()


async def running_teams_bot(
    settings_overrides: dict[str, Any],
    connector: FakeBotConnector,
    login: FakeBotFrameworkLogin | None,
    ollama: FakeOllama,
    redis_url: str,
    database_url: str,
) -> AsyncIterator[TeamsBotUnderTest]:
    settings = bot_settings(
        ollama_base_url=ollama.url,
        ollama_model="codellama:7b",
        redis_url=redis_url,
        database_url=database_url,
        **settings_overrides,
    )
    await migrate(settings)
    runtime = await build_runtime(settings)
    runtime.start()
    if runtime.teams is not None:
        runtime.teams.options = copy.copy(FAST)
    server = TestServer(build_web_app(runtime), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    try:
        yield TeamsBotUnderTest(runtime, server, http, connector, login, ollama)
    finally:
        await http.close()
        await runtime.tracker.drain(5)
        await server.close()
        await runtime.close()


@pytest.fixture
async def teams_bot(
    connector: FakeBotConnector,
    login: FakeBotFrameworkLogin,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
) -> AsyncIterator[TeamsBotUnderTest]:
    """The bot with a Teams app id and secret: every request is authenticated, every reply
    carries a token from the (fake) Entra ID endpoint."""
    connector.accepted_tokens = lambda: login.issued_tokens
    overrides = {"microsoft_app_id": APP_ID, "microsoft_app_password": APP_PASSWORD}
    async for bot in running_teams_bot(
        overrides, connector, login, fake_ollama, redis_url, database_url
    ):
        yield bot


@pytest.fixture
async def dev_bot(
    connector: FakeBotConnector, fake_ollama: FakeOllama, redis_url: str, database_url: str
) -> AsyncIterator[TeamsBotUnderTest]:
    """The bot without an app id, in the local-testing mode."""
    overrides = {"teams_allow_unauthenticated": True}
    async for bot in running_teams_bot(
        overrides, connector, None, fake_ollama, redis_url, database_url
    ):
        yield bot


CHANNEL_THREAD = "19:d3e5ad0a4cba4ba7a8c5c2a8f1d2a3b4@thread.tacv2;messageid=1730825891594"
PERSONAL = (
    "a:1pL6i0Y8Hq2KJbw3d_cKQzA7MNIKxzOQZMh1u1xK2Q5pZs8RTzWbS7jV0bZcFpLhK4xQkR7nF2uD3yWvT9mOa1gJ"
)
GROUP = "19:0b2c6e8a1f3d4c5b9a7e6d2f1c0b3a4e@thread.v2"
