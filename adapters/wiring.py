"""The composition root: reads settings and builds every part of the bot, once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from redis.asyncio import Redis
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.settings import Settings
from adapters.slack.app import SlackBot, SlackHttpEndpoint
from bot import database
from bot.assistant import Assistant, Premium
from bot.database import DatabaseError
from bot.errors import StateUnavailable
from bot.ledger import Ledger
from bot.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from bot.state import ConversationState, LocalState, RedisState
from bot.tasks import TaskTracker
from inference.base import InferenceError
from inference.ollama import OllamaChatModel
from inference.pool import ModelPool

log = logging.getLogger(__name__)

LOCAL_MEMORY_NOTICE = (
    "No Redis answers on localhost and REDIS_URL is not set: keeping conversation memory in "
    "this process only (one process, lost on restart). Set REDIS_URL to use Redis."
)


# A server that refuses connections is skipped within this long.
CONNECT_TIMEOUT_SECONDS = 2.0
# A server that accepted the question but shows no text this long is given up on (model
# loading on a CPU server can take tens of seconds).
FIRST_TOKEN_TIMEOUT_SECONDS = 60.0
MAX_WAITING_PER_SERVER = 100
HEALTH_CHECK_INTERVAL_SECONDS = 10.0


@dataclass
class Runtime:
    """Everything the bot runs on, built once per process."""

    settings: Settings
    state: ConversationState
    memory: Literal["redis", "local"]
    redis: Redis | None
    engine: AsyncEngine
    ledger: Ledger
    ollama: list[OllamaChatModel]
    pool: ModelPool
    assistant: Assistant
    tracker: TaskTracker
    http: aiohttp.ClientSession
    slack: SlackBot | None = None
    slack_endpoint: SlackHttpEndpoint | None = None
    closers: list[object] = field(default_factory=list)

    async def readiness(self) -> dict[str, object]:
        """Check Redis, the database and every Ollama server concurrently."""

        async def check(coro: object) -> str:
            try:
                await asyncio.wait_for(coro, timeout=5)  # type: ignore[arg-type]
            except (StateUnavailable, DatabaseError, InferenceError, TimeoutError) as exc:
                return f"down: {type(exc).__name__}"
            return "ok"

        results = await asyncio.gather(
            check(self.state.ping()),
            check(self.ledger.ping()),
            *(check(m.ping()) for m in self.ollama),
        )
        ollama = {m.base_url: r for m, r in zip(self.ollama, results[2:], strict=True)}
        down = [name for name, r in (("redis", results[0]), ("database", results[1])) if r != "ok"]
        if not any(r == "ok" for r in ollama.values()):
            down.append("ollama")
        return {"redis": results[0], "database": results[1], "ollama": ollama, "down": down}

    async def close(self) -> None:
        """Release connections (after the answers in flight were drained)."""
        await self.http.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


async def connect_state(settings: Settings) -> tuple[ConversationState, Redis | None]:
    """Redis when configured or found on localhost; else memory inside this process."""
    redis = Redis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
    )
    state = RedisState(redis=redis, ttl_seconds=settings.memory_ttl_seconds)
    if settings.redis_url is not None:
        return state, redis  # required: an outage shows in /readyz, never silently local
    try:
        await asyncio.wait_for(redis.ping(), timeout=1)
    except Exception:
        await redis.aclose()
        log.warning(LOCAL_MEMORY_NOTICE)
        return LocalState(ttl_seconds=settings.memory_ttl_seconds), None
    return state, redis


def build_ollama(settings: Settings) -> list[OllamaChatModel]:
    """One client per configured Ollama server, in failover order."""
    return [
        OllamaChatModel(
            base_url=url,
            model=settings.ollama_model,
            num_ctx=settings.ollama_num_ctx,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        for url in settings.ollama_urls
    ]


async def build_runtime(settings: Settings) -> Runtime:
    """Build the bot from settings: stores, models, core and the enabled adapters."""
    state, redis = await connect_state(settings)
    engine = database.create_engine(settings.database_url)
    ledger = Ledger(engine=engine)
    ollama = build_ollama(settings)
    pool = ModelPool(
        servers=ollama,
        max_concurrency=settings.ollama_max_concurrency,
        max_waiting=MAX_WAITING_PER_SERVER,
        first_token_timeout=FIRST_TOKEN_TIMEOUT_SECONDS,
    )
    premium: Premium | None = None  # the OpenAI route arrives with /premium support
    rate_limiter: RateLimiter = (
        RedisRateLimiter(
            redis=redis,
            per_minute=settings.rate_limit_per_minute,
            per_day=settings.rate_limit_per_day,
        )
        if redis is not None
        else LocalRateLimiter(
            per_minute=settings.rate_limit_per_minute, per_day=settings.rate_limit_per_day
        )
    )
    assistant = Assistant(
        state=state,
        local_model=pool,
        premium=premium,
        premium_model_name=settings.premium_model,
        ledger=ledger,
        system_prompt=settings.system_prompt,
        max_input_chars=settings.max_input_chars,
        rate_limiter=rate_limiter,
    )
    tracker = TaskTracker()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    runtime = Runtime(
        settings=settings,
        state=state,
        memory="redis" if redis is not None else "local",
        redis=redis,
        engine=engine,
        ledger=ledger,
        ollama=ollama,
        pool=pool,
        assistant=assistant,
        tracker=tracker,
        http=http,
    )
    if settings.slack_bot_token is not None:
        base_url = (
            settings.slack_api_url
            if settings.slack_api_url.endswith("/")
            else settings.slack_api_url + "/"
        )
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=base_url,
            session=http,  # one connection pool for every Slack call
            timeout=30,
            retry_handlers=[
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
            ],
        )
        runtime.slack = SlackBot(client=client, assistant=assistant, tracker=tracker)
        secret = settings.slack_signing_secret
        runtime.slack_endpoint = SlackHttpEndpoint(
            app=runtime.slack.app, signing_secret=secret.get_secret_value() if secret else None
        )
        if secret is None and settings.slack_app_token is None:
            log.warning("SLACK_SIGNING_SECRET is not set: every request to /slack/events gets 401")
    return runtime
