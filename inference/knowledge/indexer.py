"""The indexing pipeline: load -> split -> embed -> upsert, streamed, incremental.

The store's payload is the record of what is indexed (a content hash per document), so
there is no second bookkeeping that could drift from it: an unchanged document costs no
embedding call, a changed one replaces its chunks, a deleted one's chunks go. Secrets in
a document (what ``bot.redact`` recognises, handed in as ``redact``) are replaced before it
is split and embedded: no chunk, listing or prompt holds them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.embeddings import OllamaEmbeddings
from inference.knowledge.loaders import Document, LoadOptions, Skipped, SourceFailed, load
from inference.knowledge.sources import Source
from inference.knowledge.sparse import sparse_vector
from inference.knowledge.splitting import SPLIT_VERSION, Chunk, split
from inference.knowledge.store import ChunkRecord, Indexed, KnowledgeStore, SourceStatus

log = logging.getLogger(__name__)

MAX_SKIPPED_KEPT = 20
# Part of every stored content hash: documents indexed before redaction at indexing are
# embedded again (once) with their secrets redacted.
REDACTION_VERSION = "r1"


class Redacted(Protocol):
    """Text with its secrets replaced, and the kinds replaced (``bot.redact.Redaction``)."""

    @property
    def text(self) -> str: ...

    @property
    def kinds(self) -> tuple[str, ...]: ...


Redactor = Callable[[str], Redacted]


@dataclass(slots=True)
class SourceReport:
    """What one run did to one source."""

    source: str
    documents_added: int = 0
    documents_changed: int = 0
    documents_unchanged: int = 0
    documents_removed: int = 0
    chunks_added: int = 0
    chunks_changed: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    documents_redacted: int = 0  # documents whose secrets were replaced before embedding
    secret_kinds: list[str] = field(default_factory=list)  # the kinds replaced, once each
    gone: bool = False  # no longer in KNOWLEDGE_SOURCES: its chunks were removed
    error: str = ""
    documents: int = 0  # in the store after the run
    chunks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the source was indexed (skipped files do not make it fail)."""
        return not self.error


Progress = Callable[[str, int, int], None]  # (source, documents seen, chunks embedded)


@dataclass(slots=True)
class _Pending:
    document: Document
    content_hash: str
    chunks: list[Chunk]
    before: Indexed | None
    texts: list[str] = field(default_factory=list)  # what is embedded, one per chunk
    sparse: list[tuple[list[int], list[float]]] = field(default_factory=list)


async def _abandon(task: asyncio.Task[int], *, cancel: bool) -> None:
    """Wait for ``task`` to end (cancelled first if ``cancel``); its error, if any, is
    dropped (the run's own error is the one reported)."""
    if cancel:
        task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


class Indexer:
    """Indexes sources into the store with one embedding model."""

    def __init__(
        self,
        *,
        store: KnowledgeStore,
        embeddings: OllamaEmbeddings,
        git_cache: Path,
        redact: Redactor,
        options: LoadOptions | None = None,
        pause: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``redact`` replaces secrets in each document before it is split; ``options``
        say how sources are reached; ``pause`` is awaited before each embedding batch
        (indexing yields to answers)."""
        self._store = store
        self._embeddings = embeddings
        self._git_cache = git_cache
        self._redact = redact
        self._options = options or LoadOptions()
        self._pause = pause
        self._running = asyncio.Lock()

    async def run(
        self,
        sources: Sequence[Source],
        *,
        selected: Sequence[str] | None = None,
        full: bool = False,
        progress: Progress | None = None,
    ) -> list[SourceReport]:
        """Index ``sources`` (or the ``selected`` names among them); one report per source.

        Raises ``KnowledgeUnavailable`` when the store or the embedding model cannot be
        reached before any source is read.
        """
        async with self._running:
            return await self._run(sources, selected=selected, full=full, progress=progress)

    async def _run(
        self,
        sources: Sequence[Source],
        *,
        selected: Sequence[str] | None,
        full: bool,
        progress: Progress | None,
    ) -> list[SourceReport]:
        model = self._embeddings.model
        active = await self._store.active()
        if active is not None and active.model == model:
            collection = active.collection
        else:
            found = await self._store.find(model)
            if found is not None:
                collection = found.collection
            else:
                dimension = len(await self._embeddings.embed_query("dimension"))
                collection = await self._store.create(model, dimension)
            if active is None:
                await self._store.switch(collection)  # nothing to keep serving meanwhile
        switching = active is not None and active.collection != collection
        chosen = [s for s in sources if selected is None or s.name in selected]
        statuses = await self._store.statuses()
        reports = []
        for source in chosen:
            started = time.perf_counter()
            report = await self._index_source(collection, source, full=full, progress=progress)
            report.seconds = time.perf_counter() - started
            reports.append(report)
            await self._save_status(statuses.get(source.name), report)
        if selected is None:
            # Sources no longer configured go: their chunks (read from the collection
            # itself, even where a status could not be saved) and their statuses.
            configured = {s.name for s in sources}
            for gone in sorted(await self._store.sources(collection) - configured):
                log.info("removing the chunks of %s (no longer configured)", gone)
                held = await self._store.indexed(collection, gone)
                await self._store.delete_source(collection, gone)
                reports.append(
                    SourceReport(
                        source=gone,
                        gone=True,
                        documents_removed=len(held),
                        chunks_removed=sum(i.chunks for i in held.values()),
                    )
                )
            for gone in set(statuses) - configured:
                await self._store.forget_status(gone)
        await self._store.build_index(collection)
        if switching and selected is None and all(r.ok for r in reports):
            old = await self._store.switch(collection)
            log.info("answers now use %s (embedding model %s)", collection, model)
            if old is not None and old != collection:
                await self._store.drop(old)
        return reports

    async def _save_status(self, before: SourceStatus | None, report: SourceReport) -> None:
        now = time.time()
        status = before or SourceStatus(source=report.source)
        status.last_run = now
        if report.ok:
            status.last_success = now
            status.documents, status.chunks = report.documents, report.chunks
            status.last_error = ""
        else:
            status.last_error = report.error
            status.errors_total += 1
        status.skipped = [f"{s.id}: {s.reason}" for s in report.skipped[:MAX_SKIPPED_KEPT]]
        try:
            await self._store.save_status(status)
        except KnowledgeUnavailable as exc:
            log.warning("cannot record the status of %s: %s", report.source, exc)

    async def _index_source(
        self, collection: str, source: Source, *, full: bool, progress: Progress | None
    ) -> SourceReport:
        report = SourceReport(source=source.name)
        try:
            await self._index_documents(collection, source, report, full=full, progress=progress)
        except (SourceFailed, KnowledgeUnavailable) as exc:
            report.error = str(exc)
        except Exception as exc:  # a loader's or parser's bug must not stop the other sources
            log.exception("indexing %s failed", source.name)
            report.error = f"unexpected error: {type(exc).__name__}: {exc}"
        return report

    async def _index_documents(
        self,
        collection: str,
        source: Source,
        report: SourceReport,
        *,
        full: bool,
        progress: Progress | None,
    ) -> None:
        existing = await self._store.indexed(collection, source.name)
        if any(i.only != source.only for i in existing.values()):
            await self._store.restrict(collection, source.name, source.only)
        seen: set[str] = set()
        written: dict[str, int] = {}  # document -> chunks, of those (re)embedded in this run
        pending: list[_Pending] = []
        pending_chunks = 0
        documents = 0
        embedded = 0
        # One batch is embedded and written while the next is loaded and prepared: the
        # embedding server and this process work at the same time.
        flushing: asyncio.Task[int] | None = None
        try:
            async for item in load(source, git_cache=self._git_cache, options=self._options):
                if isinstance(item, Skipped):
                    report.skipped.append(item)
                    if item.keep:
                        seen.add(item.id)
                    continue
                if item.id in seen:
                    continue
                documents += 1
                content_hash = f"{item.content_hash}.{SPLIT_VERSION}.{REDACTION_VERSION}"
                before = existing.get(item.id)
                if before is not None and before.content_hash == content_hash and not full:
                    seen.add(item.id)
                    report.documents_unchanged += 1
                    report.chunks_unchanged += before.chunks
                    if progress is not None and documents % 50 == 0:
                        progress(source.name, documents, embedded)
                    continue
                prepared, kinds = await asyncio.to_thread(self._prepare, item)
                if kinds:
                    report.documents_redacted += 1
                    report.secret_kinds.extend(k for k in kinds if k not in report.secret_kinds)
                if not prepared.chunks:
                    report.skipped.append(Skipped(item.id, "no text"))
                    continue
                seen.add(item.id)
                written[item.id] = len(prepared.chunks)
                prepared.content_hash, prepared.before = content_hash, before
                pending.append(prepared)
                pending_chunks += len(prepared.chunks)
                if pending_chunks >= self._embeddings.batch_size:
                    if flushing is not None:
                        embedded += await flushing
                        flushing = None
                        if progress is not None:
                            progress(source.name, documents, embedded)
                    flushing = asyncio.create_task(self._flush(collection, source, pending, report))
                    pending, pending_chunks = [], 0
            if flushing is not None:
                embedded += await flushing
                flushing = None
            if pending:
                embedded += await self._flush(collection, source, pending, report)
        except asyncio.CancelledError:
            if flushing is not None:  # the run is stopped: stop writing with it
                await _abandon(flushing, cancel=True)
            raise
        except BaseException:
            if flushing is not None:  # a source failed: what was being written completes
                await _abandon(flushing, cancel=False)
            raise
        if progress is not None:
            progress(source.name, documents, embedded)
        removed = [d for d in existing if d not in seen]
        if removed:
            await self._store.delete_documents(collection, source.name, removed)
            report.documents_removed = len(removed)
            report.chunks_removed += sum(existing[d].chunks for d in removed)
        # What the store holds now: documents kept (passing failures too) and those written.
        kept = [existing[d] for d in seen if d in existing and d not in written]
        report.documents = len(kept) + len(written)
        report.chunks = sum(i.chunks for i in kept) + sum(written.values())

    def _prepare(self, document: Document) -> tuple[_Pending, tuple[str, ...]]:
        """The document with its secrets redacted, its chunks, the texts to embed and their
        keyword vectors (in a thread); and the kinds of secrets redacted."""
        text, title = self._redact(document.text), self._redact(document.title)
        kinds = tuple(dict.fromkeys((*text.kinds, *title.kinds)))
        if kinds:
            document = replace(document, text=text.text, title=title.text)
        chunks = split(document)
        texts = [c.embed_text(document.title) for c in chunks]
        prepared = _Pending(document, "", chunks, None, texts, [sparse_vector(t) for t in texts])
        return prepared, kinds

    async def _flush(
        self, collection: str, source: Source, pending: list[_Pending], report: SourceReport
    ) -> int:
        if self._pause is not None:
            await self._pause()
        vectors = await self._embeddings.embed_documents([t for p in pending for t in p.texts])
        records = []
        position = 0
        for p in pending:
            for number, (chunk, sparse) in enumerate(zip(p.chunks, p.sparse, strict=True)):
                records.append(
                    ChunkRecord(
                        source=source.name,
                        document=p.document.id,
                        chunk=number,
                        title=p.document.title,
                        heading=chunk.heading,
                        url=p.document.url,
                        text=chunk.text,
                        content_hash=p.content_hash,
                        chunks=len(p.chunks),
                        only=source.only,
                        dense=vectors[position],
                        sparse=sparse,
                    )
                )
                position += 1
        await self._store.upsert(collection, records)
        for p in pending:
            if p.before is None:
                report.documents_added += 1
                report.chunks_added += len(p.chunks)
                continue
            if p.before.content_hash == p.content_hash:  # --full re-embeds the unchanged
                report.documents_unchanged += 1
                report.chunks_unchanged += len(p.chunks)
            else:
                report.documents_changed += 1
                report.chunks_changed += len(p.chunks)
            if p.before.chunks > len(p.chunks):
                await self._store.delete_chunks(
                    collection, source.name, p.document.id, from_chunk=len(p.chunks)
                )
                report.chunks_removed += p.before.chunks - len(p.chunks)
        return len(records)
