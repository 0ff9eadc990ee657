"""Prometheus metrics: the core's telemetry as counters and histograms, the model server
pool read at scrape time, all in one registry per runtime (served at `GET /metrics`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bot.telemetry import EventName
from bot.usage import UsageRecord
from inference.pool import ModelPool
from inference.urls import public_url

if TYPE_CHECKING:  # qdrant-client is imported only when team knowledge is on
    from inference.knowledge.store import SourceStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST
SHARED_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes(directory: str) -> None:
    """Keep the counters and histograms of every process started from here on in files in
    ``directory``, summed at each scrape: for `chatbot serve --workers`, whose scrapes any
    worker may answer. Call before the workers build their metrics."""
    os.environ[SHARED_METRICS_ENV] = directory
    # prometheus_client picks its value store when imported; pick again for the workers.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


# Answers take 2-90 s on a model server; the default buckets (max 10 s) would put most of
# them in +Inf.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 300.0)
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)

# Messages that asked no model, as (route, outcome) labels of chatbot_requests_total.
NO_MODEL_LABELS: dict[str, tuple[str, str]] = {
    "command": ("command", "ok"),
    "refused": ("none", "refused"),
    "store_unavailable": ("none", "store_unavailable"),
    "error": ("none", "error"),
}


class PoolCollector(Collector):
    """Queue depth and backend health of the Ollama pool, read when Prometheus scrapes."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "chatbot_queue_depth",
            "Questions waiting for a free generation slot, over all Ollama servers.",
            value=self._pool.queue_depth(),
        )
        up = GaugeMetricFamily(
            "chatbot_backend_up",
            "1 while questions are sent to this Ollama server, 0 while its circuit "
            "breaker keeps it out (it failed; health checks bring it back).",
            labels=["url"],
        )
        for url, available in self._pool.health().items():
            up.add_metric([public_url(url)], 1.0 if available else 0.0)
        return [depth, up]

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would call collect() at registration, before the
        # pool is in use; the names are fixed, so describe them without reading it.
        return [
            GaugeMetricFamily("chatbot_queue_depth", "queue depth"),
            GaugeMetricFamily("chatbot_backend_up", "backend up", labels=["url"]),
        ]


class KnowledgeView(Protocol):
    """What the knowledge collector reads (adapters.app.knowledge.KnowledgeService)."""

    @property
    def statuses(self) -> Mapping[str, SourceStatus]: ...

    @property
    def index_errors(self) -> int: ...


class KnowledgeCollector(Collector):
    """Documents and chunks per source, last successful index time and index errors, read
    from the status the indexer keeps (no store call at scrape time)."""

    def __init__(self, knowledge: KnowledgeView) -> None:
        self._knowledge = knowledge

    def collect(self) -> Iterable[Metric]:
        documents = GaugeMetricFamily(
            "chatbot_knowledge_documents", "Documents indexed, per source.", labels=["source"]
        )
        chunks = GaugeMetricFamily(
            "chatbot_knowledge_chunks", "Chunks indexed, per source.", labels=["source"]
        )
        success = GaugeMetricFamily(
            "chatbot_knowledge_last_success_timestamp_seconds",
            "When each source was last indexed without error (Unix time).",
            labels=["source"],
        )
        for name, status in sorted(self._knowledge.statuses.items()):
            label = public_url(name)
            documents.add_metric([label], status.documents)
            chunks.add_metric([label], status.chunks)
            if status.last_success is not None:
                success.add_metric([label], status.last_success)
        errors = CounterMetricFamily(
            "chatbot_knowledge_index_errors",
            "Index runs of a source that failed (and runs that could not reach the store).",
            value=self._knowledge.index_errors,
        )
        return [documents, chunks, success, errors]

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("chatbot_knowledge_documents", "d", labels=["source"]),
            GaugeMetricFamily("chatbot_knowledge_chunks", "c", labels=["source"]),
            GaugeMetricFamily(
                "chatbot_knowledge_last_success_timestamp_seconds", "s", labels=["source"]
            ),
            CounterMetricFamily("chatbot_knowledge_index_errors", "e"),
        ]


class Metrics:
    """The bot's Prometheus metrics in a registry of their own (several runtimes in one
    process, as in tests, never clash). Implements ``bot.telemetry.Telemetry``."""

    def __init__(self, *, pool: ModelPool | None = None, process: bool = True) -> None:
        # A `*_created` gauge beside every counter and histogram doubles the series for
        # nothing Prometheus' text format uses; the switch is process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "chatbot_requests",
            "Messages handled, by platform, route (local, premium; command or none when no "
            "model was asked) and outcome.",
            ["platform", "route", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "chatbot_answer_latency_seconds",
            "From receiving a question to the end of its answer.",
            ["platform", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._first_token = Histogram(
            "chatbot_time_to_first_token_seconds",
            "From receiving a question to the first text of its answer.",
            ["platform", "route"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self._prompt_tokens = Counter(
            "chatbot_prompt_tokens",
            "Prompt tokens sent to models, as the model servers counted them.",
            ["route", "model"],
            registry=self.registry,
        )
        self._completion_tokens = Counter(
            "chatbot_completion_tokens",
            "Completion tokens generated by models, as the model servers counted them.",
            ["route", "model"],
            registry=self.registry,
        )
        self._cost = Counter(
            "chatbot_premium_cost_usd",
            "What premium answers cost, in US dollars (tokens times the model's price).",
            ["model"],
            registry=self.registry,
        )
        self._retrieval = Histogram(
            "chatbot_retrieval_latency_seconds",
            "Time spent searching the team knowledge index for a question.",
            ["platform"],
            buckets=RETRIEVAL_BUCKETS,
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "chatbot_rate_limited",
            "Questions refused by the per-user rate limits.",
            ["platform"],
            registry=self.registry,
        )
        self._dedupe_hits = Counter(
            "chatbot_dedupe_hits",
            "Messages not answered again: redelivered events, or one mention sent twice.",
            ["platform"],
            registry=self.registry,
        )
        self._reclaimed = Counter(
            "chatbot_reclaimed_work",
            "Questions another replica accepted but did not finish, answered here.",
            registry=self.registry,
        )
        self._set_aside = Counter(
            "chatbot_set_aside_work",
            "Questions not tried again (failed on every try, or unreadable after an upgrade); "
            "their askers were told. `chatbot doctor` lists them.",
            ["platform"],
            registry=self.registry,
        )
        self._votes = Counter(
            "chatbot_votes",
            "Feedback votes on answers (feedback buttons), by platform and vote (up, down).",
            ["platform", "vote"],
            registry=self.registry,
        )
        # With `chatbot serve --workers`, counters and histograms live in files shared by
        # the processes, and a scrape (answered by the ingress process) sums them all; the
        # pool's gauges are copied there every second (queue depth summed over the answer
        # workers, a server up only if up in every one); the live collectors below
        # (process, knowledge) describe the process answering the scrape.
        shared = os.environ.get(SHARED_METRICS_ENV)
        self._exposed = self.registry
        self._pool = pool
        self._queue_depth: Gauge | None = None
        self._backend_up: Gauge | None = None
        if shared:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=shared)  # type: ignore[no-untyped-call]
        if process:
            self._live(ProcessCollector(registry=None))
        if pool is not None and shared:
            self._queue_depth = Gauge(
                "chatbot_queue_depth",
                "Questions waiting for a free generation slot, over all Ollama servers "
                "(summed over the processes).",
                registry=self.registry,
                multiprocess_mode="livesum",
            )
            self._backend_up = Gauge(
                "chatbot_backend_up",
                "1 while questions are sent to this Ollama server, 0 while the circuit "
                "breaker of any worker keeps it out (it failed; health checks bring it back).",
                ["url"],
                registry=self.registry,
                multiprocess_mode="livemin",
            )
        elif pool is not None:
            self._live(PoolCollector(pool))

    @property
    def shared(self) -> bool:
        """Whether the pool's gauges must be copied to the shared files (`share_pool_loop`)."""
        return self._queue_depth is not None

    def share_pool(self) -> None:
        """Copy this process's queue depth and backend health to the shared files."""
        if self._pool is None or self._queue_depth is None or self._backend_up is None:
            return
        self._queue_depth.set(self._pool.queue_depth())
        for url, available in self._pool.health().items():
            self._backend_up.labels(public_url(url)).set(1.0 if available else 0.0)

    async def share_pool_loop(self, interval: float = 1.0) -> None:
        """`share_pool` every ``interval`` seconds (cancel to stop)."""
        while True:
            self.share_pool()
            await asyncio.sleep(interval)

    def _live(self, collector: Collector) -> None:
        """A collector read at scrape time from this process."""
        self.registry.register(collector)
        if self._exposed is not self.registry:
            self._exposed.register(collector)

    # -- bot.telemetry.Telemetry ------------------------------------------------------

    def usage(self, record: UsageRecord) -> None:
        """Count one model request: outcome, latency, tokens and cost (the request last, so
        a scrape in between more often sees none of it than part of it)."""
        self._latency.labels(record.platform, record.route).observe(record.latency_ms / 1000)
        if record.first_token_ms is not None:
            self._first_token.labels(record.platform, record.route).observe(
                record.first_token_ms / 1000
            )
        self._prompt_tokens.labels(record.route, record.model).inc(record.prompt_tokens)
        self._completion_tokens.labels(record.route, record.model).inc(record.completion_tokens)
        if record.cost_usd > 0:
            self._cost.labels(record.model).inc(record.cost_usd)
        if record.retrieval_ms is not None:
            self._retrieval.labels(record.platform).observe(record.retrieval_ms / 1000)
        self._requests.labels(record.platform, record.route, record.outcome).inc()

    def event(self, name: EventName, platform: str) -> None:
        """Count what happened to a message that asked no model, or on the way."""
        if name == "dedupe_hit":
            self._dedupe_hits.labels(platform).inc()
        elif name == "rate_limited":
            self._rate_limited.labels(platform).inc()
        elif name == "reclaimed":
            self._reclaimed.inc()
        elif name == "set_aside":
            self._set_aside.labels(platform).inc()
        elif name in ("vote_up", "vote_down"):
            self._votes.labels(platform, name.removeprefix("vote_")).inc()
        else:
            route, outcome = NO_MODEL_LABELS.get(name, ("none", name))
            self._requests.labels(platform, route, outcome).inc()

    def watch_knowledge(self, knowledge: KnowledgeView) -> None:
        """Expose team knowledge's per-source figures."""
        self._live(KnowledgeCollector(knowledge))

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in Prometheus text format (``CONTENT_TYPE``): with workers, the sums
        over every process of the same `chatbot serve`."""
        return generate_latest(self._exposed)
