"""The embedded store on Qdrant Edge (``KNOWLEDGE_STORE`` = a directory): the server's own
engine (HNSW, sparse vectors with IDF, payload indexes, filtered prefetches fused by RRF)
in this process, one shard per embedding model, a pointer file naming the one answers use
(see ``layout``).

Edge's calls are synchronous (and qdrant-edge-py 0.9.0 holds the GIL throughout each):
they run in one small executor of this store's own, never on the event loop, one at a
time; the HNSW index is built in steps while an index run writes (``edge_engine``);
closing waits for the calls in flight (a bounded while) and then closes the shards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import qdrant_edge as q

from inference.knowledge.store.edge_engine import EdgeEngine, shard_config
from inference.knowledge.store.records import (
    DENSE,
    HIT_PAYLOAD,
    INDEXED_FIELDS,
    INDEXED_PAYLOAD,
    RRF_K,
    SPARSE,
    Active,
    ChunkRecord,
    Indexed,
    SourceStatus,
    StoredHit,
    collection_name,
    held_documents,
    in_batches,
    sources_of,
)

SCROLL_PAGE = 10_000
# The dense prefetch searches the int8 copies for twice the candidates it keeps and
# rescores them on the float32 vectors: it then returns what a search over the float32
# vectors returns (measured: the same 24 nearest neighbours, where one pass on int8 alone
# missed 5% of them).
RESCORED = q.SearchParams(quantization=q.QuantizationSearchParams(rescore=True, oversampling=2.0))


def _match(key: str, value: str | int) -> q.FieldCondition:
    return q.FieldCondition(key=key, match=q.MatchValue(value))


def visible_to(scope: Sequence[str]) -> q.Filter:
    """Passages of unrestricted sources, and of sources restricted to one of ``scope``."""
    should: list[Any] = [q.IsEmptyCondition(key="only")]
    ids = [s for s in scope if s]
    if ids:
        should.append(q.FieldCondition(key="only", match=q.MatchAny(any=ids)))
    return q.Filter(should=should)


class EdgeStore(EdgeEngine):
    """The knowledge store in this process (see ``inference.knowledge.store``)."""

    # -- collections (shards) -------------------------------------------------------------

    async def active(self) -> Active | None:
        """The shard answers are served from, or None (nothing indexed)."""

        def read() -> Active | None:
            name = self.layout.active_name()
            return None if name is None else self.layout.described(name)

        return await self._run(read)

    async def find(self, model: str) -> Active | None:
        """A shard already holding (part of) an index built with ``model``."""

        def read() -> Active | None:
            for name in self.layout.names():
                found = self.layout.described(name)
                if found is not None and found.model == model:
                    return found
            return None

        return await self._run(read)

    async def create(self, model: str, dimension: int) -> str:
        """Create (if missing) the shard for ``model`` at ``dimension``."""
        name = collection_name(model, dimension)

        def make() -> None:
            if self.layout.described(name) is not None:
                return
            self.layout.remove_shard(name)  # what a run stopped mid-create left
            shard = q.EdgeShard.create(str(self.layout.shard(name)), shard_config(dimension))
            for key in INDEXED_FIELDS:
                schema = (
                    q.PayloadSchemaType.Integer if key == "chunk" else q.PayloadSchemaType.Keyword
                )
                shard.update(q.UpdateOperation.create_field_index(key, schema))
            with self._shards_lock:
                self._shards[name] = shard
            self.layout.describe_shard(name, model, dimension)

        await self._run(make)
        return name

    async def switch(self, name: str) -> str | None:
        """Serve answers from ``name``; returns the shard served before."""

        def point() -> str | None:
            before = self.layout.active_name()
            if before == name:
                return None
            self.layout.point_at(name)
            if self.old_format:
                self.layout.remove_old_format()
                self.old_format = False
            return before

        return await self._run(point)

    async def drop(self, name: str) -> None:
        """Delete a shard (an old model's, after the switch)."""

        def remove() -> None:
            self._unbuilt.pop(name, None)
            self._reopen(name)  # closed; not opened again: its files go
            self.layout.remove_shard(name)

        await self._run(remove)

    async def build_index(self, collection: str) -> None:
        """Build the shard's indexes (HNSW) over the points written since the last build
        (``EdgeEngine._build``); answers meanwhile search those points exactly."""
        await self._run(self._build, collection)

    # -- documents ------------------------------------------------------------------------

    def _payloads(
        self, name: str, flt: q.Filter | None, fields: list[str] | bool
    ) -> list[dict[str, Any]]:
        """The payloads of every point matching ``flt``, page by page (in the thread)."""
        shard = self._shard(name)
        found: list[dict[str, Any]] = []
        offset: Any = None
        while True:
            request = q.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=fields, with_vector=False
            )
            records, offset = shard.scroll(request)
            found.extend(r.payload or {} for r in records)
            if offset is None:
                return found

    async def indexed(self, collection: str, source: str) -> dict[str, Indexed]:
        """Every document of ``source`` in ``collection`` with its content hash."""
        flt = q.Filter(must=[_match("source", source), _match("chunk", 0)])
        return held_documents(await self._run(self._payloads, collection, flt, INDEXED_PAYLOAD))

    async def sources(self, collection: str) -> set[str]:
        """The sources with chunks in ``collection``."""
        flt = q.Filter(must=[_match("chunk", 0)])
        return sources_of(await self._run(self._payloads, collection, flt, ["source"]))

    def _update(self, name: str, operation: q.UpdateOperation) -> None:
        self._shard(name).update(operation)

    async def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        """Store chunks (replacing those with the same source, document and number)."""
        if not records:
            return

        def write() -> None:
            points = [
                q.Point(
                    id=r.id,
                    vector={
                        DENSE: r.dense,
                        SPARSE: q.SparseVector(indices=r.sparse[0], values=r.sparse[1]),
                    },
                    payload=r.payload(),
                )
                for r in records
            ]
            self._update(collection, q.UpdateOperation.upsert_points(points))
            self._wrote(collection, len(points))

        await self._run(write)

    async def delete_chunks(
        self, collection: str, source: str, document: str, *, from_chunk: int = 0
    ) -> None:
        """Delete the chunks of one document numbered ``from_chunk`` and up."""
        must: list[Any] = [_match("source", source), _match("document", document)]
        if from_chunk:
            must.append(q.FieldCondition(key="chunk", range=q.RangeFloat(gte=from_chunk)))
        await self._delete(collection, q.Filter(must=must))

    async def delete_documents(
        self, collection: str, source: str, documents: Iterable[str]
    ) -> None:
        """Delete every chunk of these documents."""
        for batch in in_batches(documents):
            match = q.FieldCondition(key="document", match=q.MatchAny(any=batch))
            await self._delete(collection, q.Filter(must=[_match("source", source), match]))

    async def delete_source(self, collection: str, source: str) -> None:
        """Delete every chunk of a source (no longer configured)."""
        await self._delete(collection, q.Filter(must=[_match("source", source)]))

    async def _delete(self, collection: str, flt: q.Filter) -> None:
        await self._run(self._update, collection, q.UpdateOperation.delete_points_by_filter(flt))

    async def restrict(self, collection: str, source: str, only: tuple[str, ...]) -> None:
        """Set the ``only`` ids of every chunk of a source (its restriction changed)."""
        flt = q.Filter(must=[_match("source", source)])
        operation = q.UpdateOperation.set_payload_by_filter(flt, {"only": list(only)})
        await self._run(self._update, collection, operation)

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
        collection: str,
    ) -> list[StoredHit]:
        """One hybrid query: a dense and a sparse prefetch, each above its relevance floor
        and filtered by the scope's visibility, fused by reciprocal rank."""
        flt = visible_to(scope)
        prefetches = [
            q.Prefetch(
                query=q.Query.Nearest(dense, using=DENSE),
                limit=limit,
                filter=flt,
                score_threshold=min_dense,
                params=RESCORED,
            )
        ]
        if sparse[0]:
            vector = q.SparseVector(indices=sparse[0], values=sparse[1])
            prefetches.append(
                q.Prefetch(
                    query=q.Query.Nearest(vector, using=SPARSE),
                    limit=limit,
                    filter=flt,
                    score_threshold=min_sparse,
                )
            )
        request = q.QueryRequest(
            prefetches=prefetches,
            query=q.Fusion.Rrf(RRF_K),  # type: ignore[arg-type]  # a Fusion; the stub types it apart
            limit=limit,
            with_payload=HIT_PAYLOAD,
        )
        points = await self._run(lambda: self._shard(collection).query(request))
        return [StoredHit(dict(p.payload or {}), p.score) for p in points]

    # -- statuses (a file: ``chatbot sources`` reads it while a bot holds the store) -----

    async def save_status(self, status: SourceStatus) -> None:
        """Record a source's status."""

        def save() -> None:
            statuses = self.layout.statuses()
            statuses[status.source] = status
            self.layout.save_statuses(statuses)

        await self._run(save)

    async def forget_status(self, source: str) -> None:
        """Drop the recorded status of a source no longer configured."""

        def forget() -> None:
            statuses = self.layout.statuses()
            if statuses.pop(source, None) is not None:
                self.layout.save_statuses(statuses)

        await self._run(forget)

    async def statuses(self) -> dict[str, SourceStatus]:
        """Every recorded source status, by source (read without taking the store)."""
        return await asyncio.to_thread(self.layout.statuses)

    async def saved_statuses(self) -> dict[str, SourceStatus]:
        """The same as ``statuses``."""
        return await self.statuses()
