"""`chatbot index` (index the team knowledge now) and `chatbot sources` (each source's last run)."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.app.knowledge import (
    JOBS_KEY,
    RESULT_KEY,
    KnowledgeService,
    report_from_json,
)
from adapters.app.settings import Settings
from bot.redact import describe_kinds
from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.indexer import SourceReport
from inference.knowledge.store import SourceStatus, StoreLocked
from inference.urls import public_url

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

MAX_SKIPPED_SHOWN = 20
# A handed-over job nobody takes within this long is withdrawn (no bot reads the queue).
HANDOVER_PICKUP_SECONDS = 15.0
HANDOVER_MAX_SECONDS = 6 * 3600.0
UPGRADED = (
    "{store} held an index of the old format (before Qdrant Edge): it was rebuilt, so every "
    "document was embedded once more this time (the next runs embed only what changed)."
)
NO_SOURCES = "KNOWLEDGE_SOURCES is empty: there is nothing to index (README, Team knowledge)."


def _locked_help(settings: Settings) -> str:
    return (
        f"The embedded store {settings.knowledge_store} is in use by another process, "
        "probably a running `chatbot serve` (it re-indexes every "
        f"{settings.knowledge_refresh_minutes:g} minutes by itself). To index now: stop it, "
        "run `chatbot index`, start it again; or give both Redis (REDIS_URL), so "
        "`chatbot index` hands the job to the running bot; or use a Qdrant server "
        "(KNOWLEDGE_STORE=http://host:6333), which any number of processes can share."
    )


# -- index ---------------------------------------------------------------------------------


class _Display:
    """A progress display: rich on a terminal, a plain line now and then otherwise."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._rich = out.isatty()
        self._last: dict[str, float] = {}
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Display:
        if self._rich:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(file=self._out),
                transient=False,
            )
            progress.start()
            self._progress = progress
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, source: str, documents: int, chunks: int) -> None:
        detail = f"{documents} documents read, {chunks} chunks embedded"
        if self._progress is not None:
            progress = self._progress
            if source not in self._tasks:
                self._tasks[source] = progress.add_task(
                    public_url(source), total=None, detail=detail
                )
            progress.update(self._tasks[source], detail=detail)
            return
        now = time.monotonic()
        if now - self._last.get(source, 0.0) >= 2.0:
            self._last[source] = now
            print(f"{public_url(source)}: {detail}", file=self._out, flush=True)


INTERRUPTED = (
    "chatbot index: interrupted; what was embedded so far stays in the index, "
    "and the next run goes on from there"
)


def format_report(report: SourceReport) -> list[str]:
    """The summary of one source."""
    name = public_url(report.source)
    if report.gone:
        return [
            f"{name}: no longer in KNOWLEDGE_SOURCES: its {report.documents_removed} documents "
            f"({report.chunks_removed} chunks) were removed from the index"
        ]
    if not report.ok:
        lines = [f"{name}: FAILED: {report.error}"]
    else:
        lines = [
            f"{name}: indexed in {report.seconds:.1f} s "
            f"({report.documents} documents, {report.chunks} chunks in the index)",
            f"  documents: {report.documents_added} added, {report.documents_changed} changed, "
            f"{report.documents_unchanged} unchanged, {report.documents_removed} removed",
            f"  chunks: {report.chunks_added} added, {report.chunks_changed} changed, "
            f"{report.chunks_unchanged} unchanged, {report.chunks_removed} removed",
        ]
    if report.documents_redacted:
        lines.append(
            f"  secrets redacted before indexing in {report.documents_redacted} documents "
            f"({describe_kinds(report.secret_kinds)})"
        )
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)}:")
        for item in report.skipped[:MAX_SKIPPED_SHOWN]:
            lines.append(f"    {item.id}: {item.reason}")
        if len(report.skipped) > MAX_SKIPPED_SHOWN:
            lines.append(f"    ... and {len(report.skipped) - MAX_SKIPPED_SHOWN} more")
    return lines


async def _hand_over(
    settings: Settings, selected: Sequence[str] | None, full: bool, out: IO[str]
) -> list[SourceReport] | None:
    """Give the job to the bot holding the store, through Redis; None if no bot takes it."""
    redis = Redis.from_url(settings.effective_redis_url, socket_connect_timeout=2)
    job = json.dumps({"id": secrets.token_hex(8), "full": full, "sources": selected})
    job_id = json.loads(job)["id"]
    try:
        await asyncio.wait_for(redis.ping(), 3)
        await redis.rpush(JOBS_KEY, job)
        print("The store is held by the running bot: the job was handed to it.", file=out)
        started = time.monotonic()
        while time.monotonic() - started < HANDOVER_MAX_SECONDS:
            result = await redis.blpop([RESULT_KEY + job_id], timeout=5)
            if result is not None:
                data = json.loads(result[1])
                if "error" in data:
                    raise KnowledgeUnavailable(str(data["error"]))
                return [report_from_json(r) for r in data["reports"]]
            if time.monotonic() - started > HANDOVER_PICKUP_SECONDS and await redis.lrem(
                JOBS_KEY, 0, job
            ):
                return None  # nobody took it: withdrawn
    except (RedisError, OSError, TimeoutError):
        return None
    finally:
        await redis.aclose()
    return None


async def run_index(
    settings: Settings, names: Sequence[str], *, full: bool, out: IO[str] = sys.stdout
) -> int:
    """`chatbot index`: 0 when every source was indexed, 1 when any failed."""
    service = KnowledgeService.from_settings(settings)
    if service is None:
        print(NO_SOURCES, file=sys.stderr)
        return 1
    try:
        return await _index(settings, service, names, full=full, out=out)
    finally:
        await service.aclose()


async def _index(
    settings: Settings,
    service: KnowledgeService,
    names: Sequence[str],
    *,
    full: bool,
    out: IO[str],
) -> int:
    try:
        selected = service.resolve(names) if names else None
    except ValueError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 2
    reports: list[SourceReport] | None
    upgrading = False
    try:
        await service.store.open()
        upgrading = service.store.old_format
        with _Display(out) as display:
            reports = await service.index(selected=selected, full=full, progress=display)
    except StoreLocked:
        try:
            reports = await _hand_over(settings, selected, full, out)
        except KnowledgeUnavailable as exc:  # the bot could not run the job
            return _cannot_index(exc)
        if reports is None:
            print(f"chatbot: {_locked_help(settings)}", file=sys.stderr)
            return 1
    except KnowledgeUnavailable as exc:
        return _cannot_index(exc)
    if upgrading:
        print(UPGRADED.format(store=settings.knowledge_store), file=out)
    for report in reports:
        print("\n".join(format_report(report)), file=out)
    failed = [r for r in reports if not r.ok]
    if failed:
        indexed = [r for r in reports if not r.gone]
        print(f"{len(failed)} of {len(indexed)} sources failed.", file=out)
    return 1 if failed else 0


def _cannot_index(exc: KnowledgeUnavailable) -> int:
    print(f"chatbot: cannot index: {exc}", file=sys.stderr)
    return 1


# -- sources -------------------------------------------------------------------------------


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_sources(service: KnowledgeService, statuses: dict[str, SourceStatus]) -> list[str]:
    """One block per configured source."""
    lines = []
    for source in service.sources:
        status = statuses.get(source.name) or SourceStatus(source=source.name)
        only = f" (only {', '.join(source.only)})" if source.only else ""
        lines.append(f"{public_url(source.name)}{only}")
        lines.append(
            f"  last indexed: {_when(status.last_success)}; "
            f"{status.documents} documents, {status.chunks} chunks"
        )
        if status.last_error:
            lines.append(f"  last error ({_when(status.last_run)}): {status.last_error}")
        if status.skipped:
            lines.append(f"  skipped at the last run: {len(status.skipped)} (first ones):")
            lines.extend(f"    {s}" for s in status.skipped[:MAX_SKIPPED_SHOWN])
    return lines


async def run_sources(settings: Settings, *, out: IO[str] = sys.stdout) -> int:
    """`chatbot sources`: each source, when last indexed, its counts and last error."""
    service = KnowledgeService.from_settings(settings)
    if service is None:
        print(NO_SOURCES, file=sys.stderr)
        return 1
    try:
        try:
            statuses = await service.store.statuses()
        except StoreLocked:
            statuses = await service.store.saved_statuses()
            print(
                "(read from the status file: another chatbot process, serve or chat, holds "
                "the store)",
                file=out,
            )
        except KnowledgeUnavailable as exc:
            print(f"chatbot: cannot read the knowledge store: {exc}", file=sys.stderr)
            return 1
        print("\n".join(format_sources(service, statuses)), file=out)
        return 0
    finally:
        await service.aclose()
