"""The composition root: reads settings and builds every part of the bot, once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.api.routes import Models, TeamApi
from adapters.app.builders import (
    FIRST_TOKEN_TIMEOUT_SECONDS,
    MAX_WAITING_PER_SERVER,
    PROVIDER_NAMES,
    build_analytics,
    build_knowledge,
    build_ollama,
    build_premium,
    build_slack_client,
    connect_state,
    fleet_line,
    teams_credentials,
)
from adapters.app.metrics import Metrics
from adapters.app.settings import Settings
from adapters.console.chat import PLATFORM as CONSOLE
from adapters.slack.app import SlackBot, SlackHttpEndpoint
from adapters.slack.call_slots import SlackCallSlots
from adapters.slack.sink import StreamingSupport
from bot import database
from bot.admin import AdminSignIn
from bot.analytics import AnalyticsReader
from bot.assistant import Assistant
from bot.database import DatabaseError, SchemaBehind, check_schema
from bot.dispatch import Dispatcher, JobRouter, LocalDispatcher
from bot.errors import StateUnavailable
from bot.ledger import Ledger
from bot.ratelimit import (
    LocalCallPacer,
    LocalRateLimiter,
    RateLimiter,
    RedisCallPacer,
    RedisRateLimiter,
)
from bot.redis_batch import RedisBatch
from bot.retrieval import Retriever
from bot.state import ConversationState
from bot.tasks import TaskTracker, raise_if_cancelled
from bot.tokens import TokenCommand, TokenStore
from bot.usage_writer import UsageWriter
from bot.workqueue import WorkQueue
from inference.base import InferenceError
from inference.ollama import OllamaChatModel
from inference.pool import ModelPool
from inference.urls import public_url

if TYPE_CHECKING:  # botbuilder, openai and the knowledge stack are imported only when configured
    from adapters.app.knowledge import KnowledgeService
    from adapters.slack.socket_mode import SocketMode
    from adapters.teams.app import TeamsBot

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class Runtime:
    """Everything the bot runs on, built once per process and not changed after."""

    settings: Settings
    state: ConversationState
    memory_backend: Literal["redis", "local"]  # where `state` keeps conversations
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
            raise_if_cancelled()
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
            except SchemaBehind as exc:
                return f"down: {exc}"
            except (StateUnavailable, DatabaseError, InferenceError, TimeoutError) as exc:
                return f"down: {type(exc).__name__}"
            return "ok"

        results = await asyncio.gather(
            check(self.state.ping()),
            check(check_schema(self.engine, timeout=5)),  # answers, and is this release's
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
            await self.api.close()
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


async def build_runtime(
    settings: Settings, *, model_slots: int | None = None, socket_mode: bool = False
) -> Runtime:
    """Build the bot from settings: stores, models, core and the enabled adapters.
    ``model_slots``: generations at once per Ollama server in this process (default
    OLLAMA_MAX_CONCURRENCY; a worker of several takes its share). ``socket_mode``: this
    process holds Slack's Socket Mode connection (the one that accepts), when configured."""
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
    api = TeamApi(
        assistant=assistant,
        tokens=tokens,
        models=Models(
            local=settings.ollama_model,
            premium=settings.premium_model if premium is not None else None,
            premium_allows=premium.allows if premium is not None else lambda user: False,
        ),
        tracker=tracker,
        knowledge=knowledge,
    )
    if knowledge is not None:
        metrics.watch_knowledge(knowledge)
    # Accepted work goes into a Redis Stream (crash-safe, shared by replicas); without Redis
    # it is answered in this process.
    router = JobRouter()
    dispatcher: Dispatcher
    work_queue: WorkQueue | None = None
    if redis is not None:
        work_queue = WorkQueue(
            redis=redis,
            batch=batch,
            tracker=tracker,
            handler=router,
            teller=router.tell,
            telemetry=metrics,
            reclaim_idle_seconds=settings.work_reclaim_seconds,
            heartbeat_seconds=settings.work_reclaim_seconds / 4,
        )
        dispatcher = work_queue
    else:
        dispatcher = LocalDispatcher(
            tracker=tracker, handler=router, teller=router.tell, telemetry=metrics
        )
    slack = slack_endpoint = teams = connection = None
    if settings.slack_bot_token is not None:
        client = build_slack_client(settings, session=http)
        secret = settings.slack_signing_secret
        signing_secret = secret.get_secret_value() if secret else None
        slack = SlackBot(
            client=client,
            assistant=assistant,
            dispatcher=dispatcher,
            tracker=tracker,
            suggested_prompts=settings.suggested_prompts,
            # Slack's rate limits hold per workspace: every answer, in every replica, shares
            # one set of slots for calls (kept in Redis when there is one).
            streaming=StreamingSupport(
                slots=SlackCallSlots(
                    pacer=RedisCallPacer(redis=redis, batch=batch)
                    if redis is not None
                    else LocalCallPacer()
                )
            ),
        )
        router.register("slack", slack.handle_job, slack.tell)
        slack_endpoint = SlackHttpEndpoint(app=slack.app, signing_secret=signing_secret)
        if secret is None and settings.slack_app_token is None:
            log.warning("SLACK_SIGNING_SECRET is not set: every request to /slack/events gets 401")
        if socket_mode and settings.slack_app_token is not None:
            from adapters.slack.socket_mode import SocketMode

            connection = SocketMode(
                app=slack.app,
                app_token=settings.slack_app_token.get_secret_value(),
                api_url=settings.slack_api_url,
            )
    if settings.microsoft_app_id or settings.teams_allow_unauthenticated:
        from adapters.teams.app import build_teams_bot

        teams = build_teams_bot(
            credentials=teams_credentials(settings),
            allow_unauthenticated=settings.teams_allow_unauthenticated,
            assistant=assistant,
            tracker=tracker,
            dispatcher=dispatcher,
        )
        if teams is not None:
            router.register("teams", teams.handle_job, teams.tell)
    return Runtime(
        settings=settings,
        state=state,
        memory_backend="redis" if redis is not None else "local",
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
        router=router,
        rate_limiter=rate_limiter,
        work_queue=work_queue,
        knowledge=knowledge,
        admin=admin,
        analytics=analytics,
        api=api,
        slack=slack,
        slack_endpoint=slack_endpoint,
        teams=teams,
        socket_mode=connection,
    )
