"""The builders of the composition root: one part of the bot each, from settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.app.settings import Settings
from adapters.teams.config import TeamsCredentials
from bot.admin import AdminSignIn, DatabaseSignInStore, RedisSignInStore, SignInStore
from bot.analytics import AnalyticsReader
from bot.budget import Budgets, Price, price_for
from bot.model_line import RedisModelLine
from bot.premium import Premium
from bot.redis_batch import RedisBatch
from bot.replies import ProviderNames
from bot.state import ConversationState, local_state, redis_state
from bot.tasks import TaskTracker
from inference.ollama import OllamaChatModel
from inference.pool import FifoSlots, ServerModel, SlotLine

if TYPE_CHECKING:  # botbuilder, openai and the knowledge stack are imported only when configured
    from adapters.app.knowledge import KnowledgeService
    from inference.openai import OpenAIChatModel

log = logging.getLogger(__name__)

# How the core's replies name our providers and the settings an admin changes.
PROVIDER_NAMES = ProviderNames(
    local="self-hosted Ollama",
    premium="OpenAI",
    premium_key="`OPENAI_API_KEY`",
    premium_users="`PREMIUM_USERS`",
    premium_model="`PREMIUM_MODEL` (and `OPENAI_BASE_URL`)",
    install="install it with `ollama pull {model}`",
)

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


def build_redis(settings: Settings) -> Redis:
    """The Redis client (REDIS_URL, else localhost); ValueError for a URL that is not Redis."""
    return Redis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        # A restarted Redis leaves pooled connections dead: check idle ones before use and
        # retry a command once on a fresh connection.
        health_check_interval=2,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def slack_api_url(settings: Settings) -> str:
    """SLACK_API_URL with the trailing slash the Slack SDK joins method names to."""
    url = settings.slack_api_url
    return url if url.endswith("/") else url + "/"


def build_slack_client(
    settings: Settings, *, session: aiohttp.ClientSession | None = None, timeout: int = 30
) -> AsyncWebClient:
    """The Slack Web API client for SLACK_BOT_TOKEN (which must be set)."""
    assert settings.slack_bot_token is not None
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=slack_api_url(settings),
        session=session,  # one connection pool for every Slack call
        timeout=timeout,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def teams_credentials(settings: Settings) -> TeamsCredentials:
    """MICROSOFT_APP_* as plain values for the Teams adapter (and doctor)."""
    password = settings.microsoft_app_password
    return TeamsCredentials(
        app_id=settings.microsoft_app_id,
        app_password=password.get_secret_value() if password is not None else None,
        app_type=settings.microsoft_app_type,
        tenant_id=settings.microsoft_app_tenant_id,
    )


def build_openai(settings: Settings) -> OpenAIChatModel | None:
    """The premium model's client, or None without OPENAI_API_KEY."""
    if settings.openai_api_key is None:
        return None
    from inference.openai import OpenAIChatModel  # half a second of imports: only when used

    return OpenAIChatModel(
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.premium_model,
        base_url=settings.openai_base_url,
    )


async def connect_state(
    settings: Settings,
) -> tuple[ConversationState, Redis | None, RedisBatch | None]:
    """Redis when configured or found on localhost; else memory inside this process. The
    batch: the round trips every Redis store of this process shares."""
    redis = build_redis(settings)
    batch = RedisBatch(redis=redis)
    state = redis_state(
        redis=redis,
        batch=batch,
        ttl_seconds=settings.memory_ttl_seconds,
        lock_ttl_seconds=settings.work_reclaim_seconds,
    )
    if settings.redis_url is not None:
        return state, redis, batch  # required: an outage shows in /readyz, never local
    try:
        await asyncio.wait_for(redis.ping(), timeout=1)
    except Exception:
        await redis.aclose()
        log.warning(LOCAL_MEMORY_NOTICE)
        return local_state(ttl_seconds=settings.memory_ttl_seconds), None, None
    return state, redis, batch


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


def build_premium(settings: Settings) -> Premium | None:
    """The premium route (OpenAI, built once), or None without OPENAI_API_KEY."""
    model = build_openai(settings)
    if model is None:
        return None
    table = {name: Price(*prices) for name, prices in settings.premium_prices.items()}
    price = price_for(settings.premium_model, table)
    if price is None:
        # Budgets must hold for a model we know no price of: assume the dearest known one.
        price = max(table.values(), key=lambda p: p.input_per_mtok + p.output_per_mtok)
        log.warning(
            "no price known for PREMIUM_MODEL=%s; costing it at $%g/$%g per million tokens "
            "(set PREMIUM_PRICES_USD to the real price)",
            settings.premium_model,
            price.input_per_mtok,
            price.output_per_mtok,
        )
    return Premium(
        model=model,
        allowed_users=settings.premium_allowlist,
        price=price,
        budgets=Budgets(
            user_usd=settings.premium_monthly_budget_usd,
            workspace_usd=settings.premium_workspace_monthly_budget_usd,
        ),
    )


def build_knowledge(
    settings: Settings, tracker: TaskTracker | None = None
) -> KnowledgeService | None:
    """Team knowledge (store, embeddings, indexer, retrieval), or None when
    KNOWLEDGE_SOURCES is empty; imported only then, to keep start-up fast."""
    if not settings.knowledge_sources.strip():
        return None
    from adapters.app.knowledge import build_knowledge as build

    return build(settings, wait_idle=tracker.wait_idle if tracker is not None else None)


def redis_expected(settings: Settings) -> bool:
    """Whether `connect_state` will use Redis: REDIS_URL is set, or Redis answers on
    localhost (blocking, at most a second: for `chatbot serve` before its workers start)."""
    if settings.redis_url is not None:
        return True
    import redis

    client = redis.Redis.from_url(settings.effective_redis_url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def build_analytics(
    settings: Settings, redis: Redis | None, engine: AsyncEngine
) -> tuple[AdminSignIn, AnalyticsReader]:
    """The analytics page's sign-in (codes and session key in Redis, else the database)
    and the reader of its figures."""
    store: SignInStore = (
        RedisSignInStore(redis=redis) if redis is not None else DatabaseSignInStore(engine=engine)
    )
    admin = AdminSignIn(
        admins=settings.admin_user_ids, store=store, public_url=settings.effective_public_url
    )
    budgets = Budgets(
        user_usd=settings.premium_monthly_budget_usd,
        workspace_usd=settings.premium_workspace_monthly_budget_usd,
    )
    reader = AnalyticsReader(
        engine=engine, budgets=budgets, show_questions=settings.analytics_show_questions
    )
    return admin, reader


def fleet_line(
    redis: Redis, batch: RedisBatch, settings: Settings, share: int
) -> Callable[[ServerModel], SlotLine]:
    """Each model server's line, shared by the fleet in Redis (``share``: this process's
    part of the limit while Redis is down)."""

    def line(server: ServerModel) -> SlotLine:
        return RedisModelLine(
            redis=redis,
            server=server.base_url,
            limit=settings.ollama_max_concurrency,
            max_waiting=MAX_WAITING_PER_SERVER,
            fallback=FifoSlots(limit=share, max_waiting=MAX_WAITING_PER_SERVER),
            batch=batch,  # a freed slot rides with the answer's last writes
            # A dead replica's slot is free well before its work is taken over.
            lease_seconds=settings.work_reclaim_seconds / 3,
        )

    return line
