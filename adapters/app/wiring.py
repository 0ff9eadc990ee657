"""The composition root: reads settings and builds every part of the bot, once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

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

from adapters.api.routes import Models, TeamApi
from adapters.app.metrics import Metrics
from adapters.app.settings import Settings
from adapters.console.chat import PLATFORM as CONSOLE
from adapters.slack.app import SlackBot, SlackHttpEndpoint
from adapters.slack.budget import SlackBudget
from adapters.slack.sink import StreamingSupport
from adapters.teams.config import TeamsCredentials
from bot import database
from bot.admin import AdminSignIn, DatabaseSignInStore, RedisSignInStore, SignInStore
from bot.analytics import AnalyticsReader
from bot.assistant import Assistant, Premium
from bot.budget import Budgets, Price, price_for
from bot.database import DatabaseError
from bot.dispatch import Dispatcher, JobRouter, LocalDispatcher
from bot.errors import StateUnavailable
from bot.ledger import Ledger
from bot.model_line import RedisModelLine
from bot.ratelimit import (
    LocalCallPacer,
    LocalRateLimiter,
    RateLimiter,
    RedisCallPacer,
    RedisRateLimiter,
)
from bot.redis_batch import RedisBatch
from bot.replies import ProviderNames
from bot.retrieval import Retriever
from bot.state import ConversationState, local_state, redis_state
from bot.tasks import TaskTracker
from bot.tokens import TokenCommand, TokenStore
from bot.usage_writer import UsageWriter
from bot.workqueue import WorkQueue
from inference.base import InferenceError
from inference.ollama import OllamaChatModel
from inference.pool import FifoSlots, ModelPool, ServerModel, SlotLine
from inference.urls import public_url

if TYPE_CHECKING:  # botbuilder, openai and the knowledge stack are imported only when configured
    from adapters.app.knowledge import KnowledgeService
    from adapters.slack.socket_mode import SocketMode
    from adapters.teams.app import TeamsBot
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
HEALTH_CHECK_INTERVAL_SECONDS = 10.0


@dataclass
class Runtime:
    """Everything the bot runs on, built once per process."""

    settings: Settings
    state: ConversationState
    memory: Literal["redis", "local"]
    redis: Redis | None
    batch: RedisBatch | None
    engine: AsyncEngine
    ledger: Ledger
    ollama: list[OllamaChatModel]
    pool: ModelPool
    assistant: Assistant
    tracker: TaskTracker
    http: aiohttp.ClientSession
    slack: SlackBot | None = None
    slack_endpoint: SlackHttpEndpoint | None = None
    teams: TeamsBot | None = None
    socket_mode: SocketMode | None = None
    metrics: Metrics = field(default_factory=Metrics)
    router: JobRouter = field(default_factory=JobRouter)
    rate_limiter: RateLimiter | None = None
    work_queue: WorkQueue | None = None
    knowledge: KnowledgeService | None = None  # team knowledge (None without sources)
    api: TeamApi | None = None  # the team API (OpenAI's Chat Completions, MCP)
    admin: AdminSignIn | None = None  # the analytics page's sign-in (`/admin`)
    analytics: AnalyticsReader | None = None  # the analytics page's figures
    background: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, *, answers: bool = True) -> None:
        """Start the background loops: Ollama health checks, the work queue consumer and,
        with team knowledge, its refresh and the `chatbot index` jobs handed to this bot.
        ``answers=False`` (the ingress process of `serve --workers`): none of them, the
        answer workers run them; team knowledge only opens and keeps its status current."""
        if self.metrics.shared:
            self.background.append(
                asyncio.create_task(self.metrics.share_pool_loop(), name="pool-metrics")
            )
        if not answers:
            if self.knowledge is not None:
                self.background.append(
                    asyncio.create_task(self._watch_knowledge(self.knowledge), name="knowledge")
                )
            return
        self.background.append(
            asyncio.create_task(
                self.pool.run_health_checks(HEALTH_CHECK_INTERVAL_SECONDS), name="ollama-health"
            )
        )
        if self.work_queue is not None:
            self.background.append(asyncio.create_task(self.work_queue.run(), name="work-queue"))
        if self.knowledge is not None:
            self.background.append(
                asyncio.create_task(self._run_knowledge(self.knowledge), name="knowledge")
            )

    async def _watch_knowledge(self, knowledge: KnowledgeService) -> None:
        await knowledge.open()
        while True:  # the answer workers index; read their result for /metrics
            await asyncio.sleep(60.0)
            await knowledge.load_statuses()

    async def _run_knowledge(self, knowledge: KnowledgeService) -> None:
        await knowledge.open()  # an embedded store is held by this process from now on
        loops = []
        if knowledge.refresh_minutes > 0:
            loops.append(knowledge.refresh_loop(self.redis))
        if self.redis is not None and knowledge.store.local:
            loops.append(knowledge.serve_jobs(self.redis))
        await asyncio.gather(*loops)

    def stop_taking_work(self) -> None:
        """Read no more work; what is left stays queued for other replicas."""
        if self.work_queue is not None:
            self.work_queue.stop()

    async def settle(self, timeout: float = 10.0) -> bool:
        """Wait until queued work is answered and no background answer runs (tests, drain)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self.tracker.wait_idle(remaining):
                return False
            try:
                backlog = 0 if self.work_queue is None else await self.work_queue.backlog()
            except StateUnavailable:
                backlog = 0  # Redis is down: nothing can be queued
            if backlog == 0:
                await asyncio.sleep(0)
                if not len(self.tracker):
                    return True
            else:
                await asyncio.sleep(0.01)

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
        ollama = {public_url(m.base_url): r for m, r in zip(self.ollama, results[2:], strict=True)}
        down = [name for name, r in (("redis", results[0]), ("database", results[1])) if r != "ok"]
        if not any(r == "ok" for r in ollama.values()):
            down.append("ollama")
        report: dict[str, object] = {"redis": results[0], "database": results[1], "ollama": ollama}
        if self.socket_mode is not None:
            slack_up = await self.socket_mode.connected()
            report["slack"] = "ok" if slack_up else "down: Socket Mode not connected"
            if not slack_up:
                down.append("slack")
        if self.knowledge is not None:  # answers go on without it: not a reason to be unready
            degraded = self.knowledge.degraded
            report["knowledge"] = f"degraded: {degraded}" if degraded else "ok"
        report["down"] = down
        return report

    async def close(self) -> None:
        """Release connections (after the answers in flight were drained)."""
        self.stop_taking_work()
        if self.api is not None:
            await self.api.mcp.close()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await asyncio.gather(*(m.aclose() for m in self.ollama), return_exceptions=True)
        if self.knowledge is not None:
            await self.knowledge.aclose()
        await self.http.close()
        if self.batch is not None:
            await self.batch.close()  # what the last answers deferred
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


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


async def build_runtime(settings: Settings, *, model_slots: int | None = None) -> Runtime:
    """Build the bot from settings: stores, models, core and the enabled adapters.
    ``model_slots``: generations at once per Ollama server in this process (default
    OLLAMA_MAX_CONCURRENCY; a worker of several takes its share)."""
    state, redis, batch = await connect_state(settings)
    engine = database.create_engine(settings.effective_database_url)
    ledger = Ledger(engine=engine)
    tokens = TokenStore(engine=engine, lifetime_days=settings.api_token_days)
    ollama = build_ollama(settings)
    pool = ModelPool(
        servers=ollama,
        max_concurrency=model_slots or settings.ollama_max_concurrency,
        max_waiting=MAX_WAITING_PER_SERVER,
        first_token_timeout=FIRST_TOKEN_TIMEOUT_SECONDS,
        # With Redis, one line per server for every replica and worker.
        line=fleet_line(redis, batch, settings, model_slots or settings.ollama_max_concurrency)
        if redis is not None and batch is not None
        else None,
    )
    premium = build_premium(settings)
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
    tracker = TaskTracker()
    metrics = Metrics(pool=pool)
    knowledge = build_knowledge(settings, tracker)
    admin, analytics = build_analytics(settings, redis, engine)
    assistant = Assistant(
        state=state,
        local_model=pool,
        premium=premium,
        premium_model_name=settings.premium_model,
        ledger=ledger,
        system_prompt=settings.system_prompt,
        max_input_chars=settings.max_input_chars,
        rate_limiter=rate_limiter,
        usage_writer=UsageWriter(ledger=ledger, tracker=tracker),
        telemetry=metrics,
        retriever=Retriever(knowledge=knowledge) if knowledge is not None else None,
        tokens=TokenCommand(store=tokens, api_url=settings.effective_public_url),
        names=PROVIDER_NAMES,
        terminals=frozenset({CONSOLE}),
        admin=admin,
        record_questions=settings.analytics_show_questions,
    )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    runtime = Runtime(
        settings=settings,
        state=state,
        memory="redis" if redis is not None else "local",
        redis=redis,
        batch=batch,
        engine=engine,
        ledger=ledger,
        ollama=ollama,
        pool=pool,
        assistant=assistant,
        tracker=tracker,
        http=http,
        metrics=metrics,
        rate_limiter=rate_limiter,
        knowledge=knowledge,
        admin=admin,
        analytics=analytics,
    )
    runtime.api = TeamApi(
        assistant=assistant,
        tokens=tokens,
        models=Models(
            local=settings.ollama_model,
            premium=settings.premium_model if premium is not None else None,
            premium_allows=premium.allows if premium is not None else lambda user: False,
        ),
        knowledge=knowledge,
    )
    if runtime.knowledge is not None:
        metrics.watch_knowledge(runtime.knowledge)
    # Accepted work goes into a Redis Stream (crash-safe, shared by replicas); without Redis
    # it is answered in this process.
    dispatcher: Dispatcher
    if redis is not None:
        runtime.work_queue = WorkQueue(
            redis=redis,
            batch=batch,
            tracker=tracker,
            handler=runtime.router,
            teller=runtime.router.tell,
            telemetry=metrics,
            reclaim_idle_seconds=settings.work_reclaim_seconds,
            heartbeat_seconds=settings.work_reclaim_seconds / 4,
        )
        dispatcher = runtime.work_queue
    else:
        dispatcher = LocalDispatcher(
            tracker=tracker, handler=runtime.router, teller=runtime.router.tell, telemetry=metrics
        )
    if settings.slack_bot_token is not None:
        client = build_slack_client(settings, session=http)
        secret = settings.slack_signing_secret
        signing_secret = secret.get_secret_value() if secret else None
        runtime.slack = SlackBot(
            client=client,
            assistant=assistant,
            dispatcher=dispatcher,
            tracker=tracker,
            suggested_prompts=settings.suggested_prompts,
            # Slack's rate limits hold per workspace: every answer, in every replica, shares
            # one budget of calls (kept in Redis when there is one).
            streaming=StreamingSupport(
                budget=SlackBudget(
                    pacer=RedisCallPacer(redis=redis, batch=batch)
                    if redis is not None
                    else LocalCallPacer()
                )
            ),
        )
        runtime.router.register("slack", runtime.slack.handle_job, runtime.slack.tell)
        runtime.slack_endpoint = SlackHttpEndpoint(
            app=runtime.slack.app, signing_secret=signing_secret
        )
        if secret is None and settings.slack_app_token is None:
            log.warning("SLACK_SIGNING_SECRET is not set: every request to /slack/events gets 401")
    if settings.microsoft_app_id or settings.teams_allow_unauthenticated:
        from adapters.teams.app import build_teams_bot

        runtime.teams = build_teams_bot(
            credentials=teams_credentials(settings),
            allow_unauthenticated=settings.teams_allow_unauthenticated,
            assistant=assistant,
            tracker=tracker,
            dispatcher=dispatcher,
        )
        if runtime.teams is not None:
            runtime.router.register("teams", runtime.teams.handle_job, runtime.teams.tell)
    return runtime
