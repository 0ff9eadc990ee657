"""Team knowledge in the running bot: builds the store, embeddings, indexer and retrieval
from settings; re-indexes every KNOWLEDGE_REFRESH_MINUTES (one replica at a time); takes
`chatbot index` jobs handed over through Redis while it holds an embedded store.

Imported only when KNOWLEDGE_SOURCES is set, so the bot starts fast without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.app.settings import Settings
from bot.redact import redact
from bot.tasks import raise_if_cancelled
from inference.knowledge import KnowledgeUnavailable, Passage
from inference.knowledge.embeddings import OllamaEmbeddings
from inference.knowledge.indexer import Indexer, Progress, SourceReport
from inference.knowledge.loaders import LoadOptions, Skipped, parse_allow_private
from inference.knowledge.retrieval import QdrantKnowledge
from inference.knowledge.sources import Source, parse_sources
from inference.knowledge.store import KnowledgeStore, SourceStatus, StoreLocked, open_store

log = logging.getLogger(__name__)

REFRESH_LOCK_KEY = "chatbot:knowledge:refresh"
JOBS_KEY = "chatbot:knowledge:jobs"
RESULT_KEY = "chatbot:knowledge:result:"
# While answers are running, indexing waits before each embedding batch, this long at most.
MAX_YIELD_SECONDS = 10.0
HELD_ELSEWHERE = (
    "team knowledge is off in this process: {error}. Answers go without it until that "
    "process stops (it is retried at each question). To use both at once, share a Qdrant "
    "server: KNOWLEDGE_STORE=http://host:6333 (README, Team knowledge)."
)


def git_cache_dir() -> Path:
    """Where git sources are checked out (kept between runs, fetched again on refresh)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chatbot" / "git"


@dataclass
class KnowledgeService:
    """Everything team knowledge runs on, built once per process. Implements
    ``inference.knowledge.Knowledge`` (``retrieve``, ``search``) for the core."""

    sources: list[Source]
    store: KnowledgeStore
    embeddings: OllamaEmbeddings
    retrieval: QdrantKnowledge
    refresh_minutes: float
    git_cache: Path
    # How sources are reached (KNOWLEDGE_ALLOW_PRIVATE).
    options: LoadOptions = field(default_factory=LoadOptions)
    # Waits (at most the given seconds) until no answer is running: indexing yields to them.
    wait_idle: Callable[[float], Awaitable[object]] | None = None
    statuses: dict[str, SourceStatus] = field(default_factory=dict)
    index_errors: int = 0
    indexer: Indexer = field(init=False)
    _held: str = field(init=False, default="")  # the store is another process's

    def __post_init__(self) -> None:
        self.indexer = Indexer(
            store=self.store,
            embeddings=self.embeddings,
            git_cache=self.git_cache,
            redact=redact,
            options=self.options,
            pause=self._yield_to_answers,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, wait_idle: Callable[[float], Awaitable[object]] | None = None
    ) -> KnowledgeService | None:
        """The knowledge stack from settings, or None when KNOWLEDGE_SOURCES is empty.

        Raises ValueError for a source that cannot be understood. Makes no network call.
        """
        sources = parse_sources(settings.knowledge_sources)
        if not sources:
            return None
        store = open_store(settings.knowledge_store)
        embeddings = OllamaEmbeddings(
            base_urls=settings.ollama_urls, model=settings.embedding_model
        )
        return cls(
            sources=sources,
            store=store,
            embeddings=embeddings,
            retrieval=QdrantKnowledge(store=store, embeddings=embeddings),
            refresh_minutes=settings.knowledge_refresh_minutes,
            git_cache=git_cache_dir(),
            options=LoadOptions(
                allow_private=parse_allow_private(settings.knowledge_allow_private)
            ),
            wait_idle=wait_idle,
        )

    # -- Knowledge -------------------------------------------------------------------------

    async def retrieve(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """See ``inference.knowledge.Knowledge.retrieve``."""
        try:
            found = await self.retrieval.retrieve(query, scope=scope, limit=limit)
        except StoreLocked as exc:
            self._held_elsewhere(exc)
            raise
        self._held = ""
        return found

    async def search(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """See ``inference.knowledge.Knowledge.search``."""
        try:
            found = await self.retrieval.search(query, scope=scope, limit=limit)
        except StoreLocked as exc:
            self._held_elsewhere(exc)
            raise
        self._held = ""
        return found

    def _held_elsewhere(self, exc: StoreLocked) -> None:
        if not self._held:  # said once, not at every question
            log.error(HELD_ELSEWHERE.format(error=exc))
        self._held = "the embedded store is held by another process"

    @property
    def degraded(self) -> str:
        """Why answers go without team knowledge ("" while it serves), for /readyz."""
        if self._held:
            return self._held
        if self.store.old_format:
            return "the index is of the old format: run `chatbot index` to rebuild it"
        return ""

    # -- indexing --------------------------------------------------------------------------

    def resolve(self, names: Sequence[str]) -> list[str]:
        """The configured source names matching ``names`` (with or without ``?only=``);
        raises ValueError naming those that are not configured."""
        chosen, unknown = [], []
        for name in names:
            plain = name.split("?only=", 1)[0].strip()
            match = next((s.name for s in self.sources if s.name == plain), None)
            if match is None:
                unknown.append(name)
            elif match not in chosen:
                chosen.append(match)
        if unknown:
            raise ValueError(f"not in KNOWLEDGE_SOURCES: {', '.join(unknown)}")
        return chosen

    async def index(
        self,
        *,
        selected: Sequence[str] | None = None,
        full: bool = False,
        progress: Progress | None = None,
    ) -> list[SourceReport]:
        """Index now (all sources or the selected names); raises KnowledgeUnavailable."""
        try:
            reports = await self.indexer.run(
                self.sources, selected=selected, full=full, progress=progress
            )
        except KnowledgeUnavailable:
            self.index_errors += 1
            raise
        self.index_errors += sum(1 for r in reports if not r.ok)
        self.retrieval.forget_active()
        await self.load_statuses()
        return reports

    async def load_statuses(self) -> None:
        """Refresh the per-source status kept for ``/metrics``."""
        try:
            self.statuses = await self.store.statuses()
        except KnowledgeUnavailable as exc:
            log.warning("cannot read the knowledge status: %s", exc)

    async def _yield_to_answers(self) -> None:
        if self.wait_idle is not None:
            await self.wait_idle(MAX_YIELD_SECONDS)

    # -- background ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store now (an embedded one is then held by this process)."""
        try:
            await self.store.open()
        except StoreLocked as exc:
            self._held_elsewhere(exc)
            return
        except KnowledgeUnavailable as exc:
            log.error("team knowledge is unavailable: %s", exc)
            return
        if self.store.old_format:
            log.error("team knowledge: %s (%s)", self.degraded, self.store.describe())
        await self.load_statuses()

    async def refresh_loop(self, redis: Redis | None) -> None:
        """Re-index every ``refresh_minutes``; with Redis, one replica per interval."""
        interval = self.refresh_minutes * 60
        await asyncio.sleep(min(30.0, interval))  # let the bot settle after start
        while True:
            raise_if_cancelled()
            if await self._claim(redis, interval):
                await self._refresh_once()
            else:
                await self.load_statuses()  # another replica indexed: keep /metrics current
            await asyncio.sleep(interval)

    async def _claim(self, redis: Redis | None, interval: float) -> bool:
        if redis is None:
            return True
        try:
            # Held for the interval: the other replicas skip this round.
            return bool(
                await redis.set(
                    REFRESH_LOCK_KEY, secrets.token_hex(8), nx=True, ex=max(1, int(interval))
                )
            )
        except RedisError as exc:
            log.warning("cannot claim the knowledge refresh (Redis: %s); refreshing here", exc)
            return True

    async def _refresh_once(self) -> list[SourceReport]:
        started = time.perf_counter()
        try:
            reports = await self.index()
        except KnowledgeUnavailable as exc:
            log.error("knowledge refresh failed: %s", exc)
            return []
        for report in reports:
            if report.ok:
                log.info("indexed %s: %s", report.source, summary_line(report))
            else:
                log.error("indexing %s failed: %s", report.source, report.error)
        log.info("knowledge refresh took %.1f s", time.perf_counter() - started)
        return reports

    async def serve_jobs(self, redis: Redis) -> None:
        """Run `chatbot index` jobs handed over through Redis (this process holds the
        embedded store, so the command cannot open it)."""
        while True:
            raise_if_cancelled()
            try:
                item = await redis.blpop([JOBS_KEY], timeout=5)
            except RedisError as exc:
                log.warning("cannot read knowledge jobs from Redis: %s", exc)
                await asyncio.sleep(5)
                continue
            if item is None:
                continue
            try:
                job = json.loads(item[1])
                job_id = str(job["id"])
                selected = job.get("sources")
                full = bool(job.get("full"))
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed knowledge job")
                continue
            try:
                reports = await self.index(selected=selected, full=full)
                result: dict[str, Any] = {"reports": [report_to_json(r) for r in reports]}
            except KnowledgeUnavailable as exc:
                result = {"error": str(exc)}
            try:
                await redis.rpush(RESULT_KEY + job_id, json.dumps(result))
                await redis.expire(RESULT_KEY + job_id, 3600)
            except RedisError as exc:
                log.warning("cannot return a knowledge job's result: %s", exc)

    async def aclose(self) -> None:
        """Release the store and the embedding clients."""
        await self.retrieval.aclose()
        await self.embeddings.aclose()
        await self.store.aclose()


def report_to_json(report: SourceReport) -> dict[str, Any]:
    """A report as JSON (for a handed-over job)."""
    data = asdict(report)
    data["skipped"] = [[s.id, s.reason, s.keep] for s in report.skipped]
    return data


def report_from_json(data: dict[str, Any]) -> SourceReport:
    """A report from JSON."""
    skipped = [Skipped(str(i), str(r), bool(k)) for i, r, k in data.pop("skipped", [])]
    return SourceReport(**data, skipped=skipped)


def summary_line(report: SourceReport) -> str:
    """One line: documents and chunks added, changed, unchanged, removed; skipped."""
    return (
        f"documents {report.documents_added} added, {report.documents_changed} changed, "
        f"{report.documents_unchanged} unchanged, {report.documents_removed} removed; "
        f"chunks {report.chunks_added} added, {report.chunks_changed} changed, "
        f"{report.chunks_unchanged} unchanged, {report.chunks_removed} removed; "
        f"{len(report.skipped)} skipped"
    )
