"""The Qdrant store, through ``AsyncQdrantClient`` only: a directory = embedded local mode,
an http(s) URL = a server or cluster, the same code.

Layout: one collection per (embedding model, dimension) holding a dense and a sparse (IDF)
vector per chunk, the model and dimension recorded in its metadata; the alias ``knowledge``
names the collection answers are served from. A new model fills a new collection and the
alias moves when it is complete. Per-source status lives in the ``knowledge_sources``
collection, so ``chatbot sources`` reads it from any machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

from inference.knowledge import KnowledgeUnavailable, is_embedded_store

ALIAS = "knowledge"
STATUS_COLLECTION = "knowledge_sources"
DENSE = "dense"
SPARSE = "sparse"
# Scroll pages: large, since the embedded mode evaluates the filter over every point per page.
SCROLL_PAGE = 50_000
_NAMESPACE = uuid.UUID("6f1c8f0e-5a8e-4d57-9c1f-2b0c4bd0a6e1")
# What a failed exchange with the store surfaces as: the API's errors, transport errors,
# the local mode's ValueError/RuntimeError (missing collection, folder locked or closed).
STORE_ERRORS: tuple[type[Exception], ...] = (
    ApiException,
    httpx.HTTPError,
    OSError,
    RuntimeError,
    ValueError,
)


class _OffLoop:
    """The embedded client with every call run in one worker thread of its own.

    The embedded mode's ``async`` methods compute in Python (filters, distances, SQLite
    writes) without ever awaiting: run on the event loop they would stall every answer. One
    thread keeps its calls in order, as on the loop; they hold no loop-bound state.
    """

    def __init__(self, client: AsyncQdrantClient) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, lambda: asyncio.run(method(*args, **kwargs))
            )

        return call

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, lambda: asyncio.run(self._client.close()))
        self._executor.shutdown(wait=False)


class StoreLocked(KnowledgeUnavailable):
    """The embedded store's folder is held by another process (e.g. ``chatbot serve``)."""


class CollectionGone(KnowledgeUnavailable):
    """The collection asked for does not exist (any more: a new embedding model's index
    replaced it)."""


def _missing_collection(exc: Exception) -> bool:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    return isinstance(exc, ValueError) and "not found" in str(exc)  # the embedded mode


def point_id(source: str, document: str, chunk: int) -> str:
    """The stable id of one chunk."""
    return str(uuid.uuid5(_NAMESPACE, f"{source}\x00{document}\x00{chunk}"))


def collection_name(model: str, dimension: int) -> str:
    """The collection for one embedding model and dimension."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    return f"knowledge_{slug}_{dimension}"


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk to store."""

    source: str
    document: str
    chunk: int
    title: str
    heading: str
    url: str
    text: str
    content_hash: str  # of the whole document: unchanged documents are not re-embedded
    chunks: int  # how many chunks the document has
    only: tuple[str, ...]
    dense: list[float]
    sparse: tuple[list[int], list[float]]


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the store holds of one document."""

    content_hash: str
    chunks: int
    only: tuple[str, ...]


@dataclass(slots=True)
class SourceStatus:
    """What ``chatbot sources`` and ``/metrics`` show of one source."""

    source: str
    last_run: float | None = None  # epoch seconds
    last_success: float | None = None
    documents: int = 0
    chunks: int = 0
    last_error: str = ""
    skipped: list[str] = field(default_factory=list)  # "document: reason", the first few
    errors_total: int = 0

    def payload(self) -> dict[str, Any]:
        """As stored."""
        return {
            "source": self.source,
            "last_run": self.last_run,
            "last_success": self.last_success,
            "documents": self.documents,
            "chunks": self.chunks,
            "last_error": self.last_error,
            "skipped": self.skipped,
            "errors_total": self.errors_total,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SourceStatus:
        """From a stored payload."""
        return cls(
            source=str(payload.get("source", "")),
            last_run=payload.get("last_run"),
            last_success=payload.get("last_success"),
            documents=int(payload.get("documents") or 0),
            chunks=int(payload.get("chunks") or 0),
            last_error=str(payload.get("last_error") or ""),
            skipped=[str(s) for s in payload.get("skipped") or []],
            errors_total=int(payload.get("errors_total") or 0),
        )


def _match(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def visible_to(scope: Sequence[str]) -> models.Filter:
    """Passages of unrestricted sources, and of sources restricted to one of ``scope``."""
    should: list[models.Condition] = [
        models.IsEmptyCondition(is_empty=models.PayloadField(key="only"))
    ]
    ids = [s for s in scope if s]
    if ids:
        should.append(models.FieldCondition(key="only", match=models.MatchAny(any=ids)))
    return models.Filter(should=should)


class KnowledgeStore:
    """The vector store, opened once per process; every call raises ``KnowledgeUnavailable``
    when the store cannot be reached."""

    def __init__(self, *, location: str, timeout: float = 10.0) -> None:
        """Configure; ``open()`` connects (an embedded store is loaded off the event loop)."""
        self.location = location
        self.local = is_embedded_store(location)
        self._timeout = timeout
        self._client: AsyncQdrantClient | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """Where the store is, for messages."""
        return f"embedded store {self.location}" if self.local else f"Qdrant at {self.location}"

    async def client(self) -> AsyncQdrantClient:
        """The client, connected on first use."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> AsyncQdrantClient:
        if not self.local:
            return AsyncQdrantClient(
                url=self.location, timeout=int(self._timeout), check_compatibility=False
            )
        path = Path(self.location)
        try:
            # Loading an embedded store reads its files: keep that off the event loop.
            client = await asyncio.to_thread(AsyncQdrantClient, path=str(path))
            return cast(AsyncQdrantClient, _OffLoop(client))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLocked(
                    f"the embedded store {path} is in use by another process "
                    "(a running `chatbot serve`?)"
                ) from exc
            raise KnowledgeUnavailable(f"cannot open the embedded store {path}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise KnowledgeUnavailable(f"cannot open the embedded store {path}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the client (releases the embedded store's folder)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.close()
            except STORE_ERRORS:
                pass

    # -- collections ----------------------------------------------------------------------

    async def active(self) -> tuple[str, str, int] | None:
        """(collection, model, dimension) answers are served from, or None (nothing indexed)."""
        client = await self.client()
        try:
            aliases = await client.get_aliases()
            target = next(
                (a.collection_name for a in aliases.aliases if a.alias_name == ALIAS), None
            )
            if target is None:
                return None
            return await self._described(client, target)
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def _described(self, client: AsyncQdrantClient, name: str) -> tuple[str, str, int]:
        info = await client.get_collection(name)
        meta = info.config.metadata or {}
        return name, str(meta.get("embedding_model", "")), int(meta.get("dimension") or 0)

    async def find(self, model: str) -> tuple[str, str, int] | None:
        """A collection already holding (part of) an index built with ``model``."""
        client = await self.client()
        try:
            listed = await client.get_collections()
            for description in listed.collections:
                if description.name.startswith("knowledge_") and description.name != (
                    STATUS_COLLECTION
                ):
                    found = await self._described(client, description.name)
                    if found[1] == model:
                        return found
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc
        return None

    async def create(self, model: str, dimension: int) -> str:
        """Create (if missing) the collection for ``model`` at ``dimension``."""
        name = collection_name(model, dimension)
        client = await self.client()
        try:
            if not await client.collection_exists(name):
                await client.create_collection(
                    name,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                    metadata={"embedding_model": model, "dimension": dimension},
                )
                if not self.local:  # the local mode has no payload indexes (it scans)
                    for key, schema in (
                        ("source", models.PayloadSchemaType.KEYWORD),
                        ("document", models.PayloadSchemaType.KEYWORD),
                        ("only", models.PayloadSchemaType.KEYWORD),
                        ("chunk", models.PayloadSchemaType.INTEGER),
                    ):
                        await client.create_payload_index(name, key, field_schema=schema)
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc
        return name

    async def switch(self, name: str) -> str | None:
        """Point the alias at ``name``; returns the collection it pointed at before."""
        client = await self.client()
        try:
            before = await self.active()
            operations: list[models.AliasOperations] = []
            if before is not None:
                if before[0] == name:
                    return None
                operations.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=ALIAS))
                )
            operations.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=name, alias_name=ALIAS)
                )
            )
            await client.update_collection_aliases(change_aliases_operations=operations)
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc
        return None if before is None else before[0]

    async def drop(self, name: str) -> None:
        """Delete a collection (an old model's, after the switch)."""
        client = await self.client()
        try:
            await client.delete_collection(name)
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    # -- documents ------------------------------------------------------------------------

    async def indexed(self, collection: str, source: str) -> dict[str, Indexed]:
        """Every document of ``source`` in ``collection`` with its content hash."""
        client = await self.client()
        found: dict[str, Indexed] = {}
        flt = models.Filter(must=[_match("source", source), _match("chunk", 0)])
        offset: Any = None
        try:
            while True:
                points, offset = await client.scroll(
                    collection,
                    scroll_filter=flt,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=["document", "hash", "only", "chunks"],
                    with_vectors=False,
                )
                for p in points:
                    payload = p.payload or {}
                    found[str(payload.get("document"))] = Indexed(
                        content_hash=str(payload.get("hash")),
                        chunks=int(payload.get("chunks") or 1),
                        only=tuple(payload.get("only") or ()),
                    )
                if offset is None:
                    return found
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        """Store chunks (replacing those with the same source, document and number)."""
        if not records:
            return
        points = [
            models.PointStruct(
                id=point_id(r.source, r.document, r.chunk),
                vector={
                    DENSE: r.dense,
                    SPARSE: models.SparseVector(indices=r.sparse[0], values=r.sparse[1]),
                },
                payload={
                    "source": r.source,
                    "document": r.document,
                    "chunk": r.chunk,
                    "title": r.title,
                    "heading": r.heading,
                    "url": r.url,
                    "text": r.text,
                    "hash": r.content_hash,
                    "chunks": r.chunks,
                    "only": list(r.only),
                },
            )
            for r in records
        ]
        client = await self.client()
        try:
            await client.upsert(collection, points=points, wait=True)
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def delete_chunks(
        self, collection: str, source: str, document: str, *, from_chunk: int = 0
    ) -> None:
        """Delete the chunks of one document numbered ``from_chunk`` and up."""
        must: list[models.Condition] = [_match("source", source), _match("document", document)]
        if from_chunk:
            must.append(models.FieldCondition(key="chunk", range=models.Range(gte=from_chunk)))
        await self._delete(collection, models.Filter(must=must))

    async def delete_documents(
        self, collection: str, source: str, documents: Iterable[str]
    ) -> None:
        """Delete every chunk of these documents."""
        docs = list(documents)
        for start in range(0, len(docs), 500):
            flt = models.Filter(
                must=[
                    _match("source", source),
                    models.FieldCondition(
                        key="document", match=models.MatchAny(any=docs[start : start + 500])
                    ),
                ]
            )
            await self._delete(collection, flt)

    async def delete_source(self, collection: str, source: str) -> None:
        """Delete every chunk of a source (no longer configured)."""
        await self._delete(collection, models.Filter(must=[_match("source", source)]))

    async def _delete(self, collection: str, flt: models.Filter) -> None:
        client = await self.client()
        try:
            await client.delete(collection, points_selector=models.FilterSelector(filter=flt))
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def restrict(self, collection: str, source: str, only: tuple[str, ...]) -> None:
        """Set the ``only`` ids of every chunk of a source (its restriction changed)."""
        client = await self.client()
        try:
            await client.set_payload(
                collection,
                payload={"only": list(only)},
                points=models.Filter(must=[_match("source", source)]),
            )
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def forget_status(self, source: str) -> None:
        """Drop the recorded status of a source no longer configured."""
        client = await self.client()
        try:
            if await client.collection_exists(STATUS_COLLECTION):
                await client.delete(
                    STATUS_COLLECTION,
                    points_selector=models.PointIdsList(points=[point_id(source, "", -1)]),
                )
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def sources(self, collection: str) -> set[str]:
        """The sources with chunks in ``collection``."""
        client = await self.client()
        found: set[str] = set()
        offset: Any = None
        try:
            while True:
                points, offset = await client.scroll(
                    collection,
                    scroll_filter=models.Filter(must=[_match("chunk", 0)]),
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=["source"],
                    with_vectors=False,
                )
                found.update(str((p.payload or {}).get("source")) for p in points)
                if offset is None:
                    return found
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    # -- queries --------------------------------------------------------------------------

    async def query(
        self,
        *,
        dense: list[float],
        sparse: tuple[list[int], list[float]],
        scope: Sequence[str],
        limit: int,
        min_dense: float,
        min_sparse: float,
        collection: str = ALIAS,
    ) -> list[models.ScoredPoint]:
        """One hybrid query: a dense and a sparse prefetch, each above its relevance floor,
        fused by reciprocal rank; the scope's visibility filter is the query's, which Qdrant
        applies inside both prefetches."""
        flt = visible_to(scope)
        prefetch = [
            models.Prefetch(query=dense, using=DENSE, limit=limit, score_threshold=min_dense)
        ]
        if sparse[0]:
            prefetch.append(
                models.Prefetch(
                    query=models.SparseVector(indices=sparse[0], values=sparse[1]),
                    using=SPARSE,
                    limit=limit,
                    score_threshold=min_sparse,
                )
            )
        client = await self.client()
        try:
            response = await client.query_points(
                collection,
                prefetch=prefetch,
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                query_filter=flt,
                limit=limit,
                with_payload=True,
                with_vectors=False,
            )
        except STORE_ERRORS as exc:
            if _missing_collection(exc):
                raise CollectionGone(f"{self.describe()}: no collection {collection}") from exc
            raise _unavailable(self, exc) from exc
        return response.points

    # -- status ---------------------------------------------------------------------------

    async def _status_collection(self, client: AsyncQdrantClient) -> None:
        if not await client.collection_exists(STATUS_COLLECTION):
            await client.create_collection(STATUS_COLLECTION, vectors_config={})

    @property
    def status_file(self) -> Path:
        """An embedded store's copy of the statuses, readable while another process holds the
        store (``chatbot sources`` while ``chatbot serve`` runs)."""
        return Path(self.location) / "chatbot-sources.json"

    async def save_status(self, status: SourceStatus) -> None:
        """Record a source's status."""
        client = await self.client()
        try:
            await self._status_collection(client)
            await client.upsert(
                STATUS_COLLECTION,
                points=[
                    models.PointStruct(
                        id=point_id(status.source, "", -1), vector={}, payload=status.payload()
                    )
                ],
                wait=True,
            )
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc
        if self.local:
            everything = await self.statuses()
            text = json.dumps([s.payload() for s in everything.values()], indent=1)
            await asyncio.to_thread(self.status_file.write_text, text, "utf-8")

    async def saved_statuses(self) -> dict[str, SourceStatus]:
        """The statuses from an embedded store's status file (without opening the store)."""
        try:
            text = await asyncio.to_thread(self.status_file.read_text, "utf-8")
            items = json.loads(text)
        except (OSError, ValueError):
            return {}
        found = [SourceStatus.from_payload(i) for i in items if isinstance(i, dict)]
        return {s.source: s for s in found}

    async def statuses(self) -> dict[str, SourceStatus]:
        """Every recorded source status, by source."""
        client = await self.client()
        found: dict[str, SourceStatus] = {}
        try:
            if not await client.collection_exists(STATUS_COLLECTION):
                return found
            offset: Any = None
            while True:
                points, offset = await client.scroll(
                    STATUS_COLLECTION, limit=1000, offset=offset, with_payload=True
                )
                for p in points:
                    status = SourceStatus.from_payload(p.payload or {})
                    found[status.source] = status
                if offset is None:
                    return found
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc

    async def ping(self) -> float:
        """Seconds one round trip to the store takes."""
        started = time.perf_counter()
        client = await self.client()
        try:
            await client.get_collections()
        except STORE_ERRORS as exc:
            raise _unavailable(self, exc) from exc
        return time.perf_counter() - started


def _unavailable(store: KnowledgeStore, exc: Exception) -> KnowledgeUnavailable:
    if isinstance(exc, KnowledgeUnavailable):
        return exc
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return KnowledgeUnavailable(f"{store.describe()}: {detail}")
