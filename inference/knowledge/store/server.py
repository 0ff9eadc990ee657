"""The store on a Qdrant server or cluster, through ``AsyncQdrantClient`` (``KNOWLEDGE_STORE``
= an http(s) URL).

One collection per (embedding model, dimension) holds a dense and a sparse (IDF) vector per
chunk, the model and dimension in its metadata; the alias ``knowledge`` names the collection
answers are served from, and moves when a new model's collection is complete. Source
statuses live in the ``knowledge_sources`` collection, readable from any machine.

The tests run this code on qdrant-client's local mode (``location=":memory:"``), which
speaks the same client API without a server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ApiException, UnexpectedResponse

from inference.knowledge.store.records import (
    DENSE,
    HIT_PAYLOAD,
    INDEXED_FIELDS,
    INDEXED_PAYLOAD,
    RRF_K,
    SPARSE,
    Active,
    ChunkRecord,
    CollectionGone,
    Indexed,
    SourceStatus,
    StoredHit,
    collection_name,
    held_documents,
    in_batches,
    point_id,
    sources_of,
    unavailable,
)

ALIAS = "knowledge"
STATUS_COLLECTION = "knowledge_sources"
SCROLL_PAGE = 10_000
# What a failed exchange with a Qdrant server surfaces as: the API's errors (a status the
# client did not expect, a response it cannot read) and httpx's transport errors.
SERVER_ERRORS: tuple[type[Exception], ...] = (ApiException, httpx.HTTPError)
# qdrant-client's local mode (the tests' stand-in for a server) has no exception type of
# its own: a missing collection is a ValueError there, and only there is it caught.
LOCAL_MODE_ERRORS: tuple[type[Exception], ...] = (*SERVER_ERRORS, ValueError)


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


def _missing_collection(exc: Exception) -> bool:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    return isinstance(exc, ValueError) and "not found" in str(exc)  # the local mode


class ServerStore:
    """The knowledge store on a Qdrant server (see ``inference.knowledge.store``)."""

    local = False
    old_format = False

    def __init__(
        self, *, location: str, timeout: float = 10.0, client: AsyncQdrantClient | None = None
    ) -> None:
        """``client``: an already made client (the tests pass qdrant-client's local mode)."""
        self.location = location
        self._timeout = timeout
        self._given = client
        self._client: AsyncQdrantClient | None = client
        self._errors = SERVER_ERRORS if client is None else LOCAL_MODE_ERRORS
        self._payload_indexes = client is None  # the local mode has none (it scans)

    def describe(self) -> str:
        """Where the store is, for messages."""
        return f"Qdrant at {self.location}"

    @contextmanager
    def _guard(self, collection: str | None = None) -> Iterator[None]:
        """The one place a client error becomes ``KnowledgeUnavailable`` (or
        ``CollectionGone`` where ``collection`` is missing)."""
        try:
            yield
        except self._errors as exc:
            if collection is not None and _missing_collection(exc):
                raise CollectionGone(f"{self.describe()}: no collection {collection}") from exc
            raise unavailable(self.describe(), exc) from exc

    async def open(self) -> None:
        """Make the client (no network call: the first request connects)."""
        self._api()

    def _api(self) -> AsyncQdrantClient:
        if self._client is None:
            self._client = AsyncQdrantClient(
                url=self.location, timeout=int(self._timeout), check_compatibility=False
            )
        return self._client

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            client, self._client = self._client, None
            with self._guard():
                await client.close()

    async def ping(self) -> float:
        """Seconds one round trip to the store takes."""
        started = time.perf_counter()
        with self._guard():
            await self._api().get_collections()
        return time.perf_counter() - started

    # -- collections ----------------------------------------------------------------------

    async def active(self) -> Active | None:
        """The collection answers are served from, or None (nothing indexed)."""
        with self._guard():
            aliases = await self._api().get_aliases()
            target = next(
                (a.collection_name for a in aliases.aliases if a.alias_name == ALIAS), None
            )
            return None if target is None else await self._described(target)

    async def _described(self, name: str) -> Active:
        info = await self._api().get_collection(name)
        meta = info.config.metadata or {}
        return Active(name, str(meta.get("embedding_model", "")), int(meta.get("dimension") or 0))

    async def find(self, model: str) -> Active | None:
        """A collection already holding (part of) an index built with ``model``."""
        with self._guard():
            listed = await self._api().get_collections()
            for description in listed.collections:
                name = description.name
                if name.startswith("knowledge_") and name != STATUS_COLLECTION:
                    found = await self._described(name)
                    if found.model == model:
                        return found
        return None

    async def create(self, model: str, dimension: int) -> str:
        """Create (if missing) the collection for ``model`` at ``dimension``."""
        name = collection_name(model, dimension)
        client = self._api()
        with self._guard():
            if await client.collection_exists(name):
                return name
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
            if self._payload_indexes:
                for key in INDEXED_FIELDS:
                    schema = (
                        models.PayloadSchemaType.INTEGER
                        if key == "chunk"
                        else models.PayloadSchemaType.KEYWORD
                    )
                    await client.create_payload_index(name, key, field_schema=schema)
        return name

    async def switch(self, name: str) -> str | None:
        """Point the alias at ``name``; returns the collection it pointed at before."""
        before = await self.active()
        if before is not None and before.collection == name:
            return None
        operations: list[models.AliasOperations] = []
        if before is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=ALIAS))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=ALIAS)
            )
        )
        with self._guard():
            await self._api().update_collection_aliases(change_aliases_operations=operations)
        return None if before is None else before.collection

    async def drop(self, name: str) -> None:
        """Delete a collection (an old model's, after the switch)."""
        with self._guard():
            await self._api().delete_collection(name)

    async def build_index(self, collection: str) -> None:
        """Nothing to do: the server builds its indexes in the background."""

    # -- documents ------------------------------------------------------------------------

    async def _scroll(
        self, collection: str, flt: models.Filter | None, fields: list[str] | bool
    ) -> AsyncIterator[dict[str, Any]]:
        """The payloads of every point matching ``flt``, page by page."""
        offset: Any = None
        while True:
            with self._guard(collection):
                points, offset = await self._api().scroll(
                    collection,
                    scroll_filter=flt,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=fields,
                    with_vectors=False,
                )
            for point in points:
                yield point.payload or {}
            if offset is None:
                return

    async def indexed(self, collection: str, source: str) -> dict[str, Indexed]:
        """Every document of ``source`` in ``collection`` with its content hash."""
        flt = models.Filter(must=[_match("source", source), _match("chunk", 0)])
        return held_documents([p async for p in self._scroll(collection, flt, INDEXED_PAYLOAD)])

    async def sources(self, collection: str) -> set[str]:
        """The sources with chunks in ``collection``."""
        flt = models.Filter(must=[_match("chunk", 0)])
        return sources_of([p async for p in self._scroll(collection, flt, ["source"])])

    async def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        """Store chunks (replacing those with the same source, document and number)."""
        if not records:
            return
        points = [
            models.PointStruct(
                id=r.id,
                vector={
                    DENSE: r.dense,
                    SPARSE: models.SparseVector(indices=r.sparse[0], values=r.sparse[1]),
                },
                payload=r.payload(),
            )
            for r in records
        ]
        with self._guard(collection):
            await self._api().upsert(collection, points=points, wait=True)

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
        for batch in in_batches(documents):
            flt = models.Filter(
                must=[
                    _match("source", source),
                    models.FieldCondition(key="document", match=models.MatchAny(any=batch)),
                ]
            )
            await self._delete(collection, flt)

    async def delete_source(self, collection: str, source: str) -> None:
        """Delete every chunk of a source (no longer configured)."""
        await self._delete(collection, models.Filter(must=[_match("source", source)]))

    async def _delete(self, collection: str, flt: models.Filter) -> None:
        with self._guard(collection):
            await self._api().delete(collection, points_selector=models.FilterSelector(filter=flt))

    async def restrict(self, collection: str, source: str, only: tuple[str, ...]) -> None:
        """Set the ``only`` ids of every chunk of a source (its restriction changed)."""
        with self._guard(collection):
            await self._api().set_payload(
                collection,
                payload={"only": list(only)},
                points=models.Filter(must=[_match("source", source)]),
            )

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
    ) -> list[StoredHit]:
        """One hybrid query: a dense and a sparse prefetch, each above its relevance floor,
        fused by reciprocal rank; the scope's visibility filter is the query's, which Qdrant
        applies inside both prefetches."""
        prefetch = [
            models.Prefetch(query=dense, using=DENSE, limit=limit, score_threshold=min_dense)
        ]
        if sparse[0]:
            vector = models.SparseVector(indices=sparse[0], values=sparse[1])
            prefetch.append(
                models.Prefetch(query=vector, using=SPARSE, limit=limit, score_threshold=min_sparse)
            )
        with self._guard(collection):
            response = await self._api().query_points(
                collection,
                prefetch=prefetch,
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                query_filter=visible_to(scope),
                limit=limit,
                with_payload=HIT_PAYLOAD,
                with_vectors=False,
            )
        return [StoredHit(p.payload or {}, p.score) for p in response.points]

    # -- statuses -------------------------------------------------------------------------

    async def save_status(self, status: SourceStatus) -> None:
        """Record a source's status."""
        client = self._api()
        point = models.PointStruct(
            id=point_id(status.source, "", -1), vector={}, payload=status.payload()
        )
        with self._guard():
            if not await client.collection_exists(STATUS_COLLECTION):
                await client.create_collection(STATUS_COLLECTION, vectors_config={})
            await client.upsert(STATUS_COLLECTION, points=[point], wait=True)

    async def statuses(self) -> dict[str, SourceStatus]:
        """Every recorded source status, by source."""
        with self._guard():
            if not await self._api().collection_exists(STATUS_COLLECTION):
                return {}
        found = [
            SourceStatus.from_payload(p) async for p in self._scroll(STATUS_COLLECTION, None, True)
        ]
        return {s.source: s for s in found}

    async def saved_statuses(self) -> dict[str, SourceStatus]:
        """The same as ``statuses`` (a server is never held by one process)."""
        return await self.statuses()

    async def forget_status(self, source: str) -> None:
        """Drop the recorded status of a source no longer configured."""
        client = self._api()
        with self._guard():
            if await client.collection_exists(STATUS_COLLECTION):
                await client.delete(
                    STATUS_COLLECTION,
                    points_selector=models.PointIdsList(points=[point_id(source, "", -1)]),
                )
