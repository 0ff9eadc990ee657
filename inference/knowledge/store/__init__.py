"""The vector store behind team knowledge: one interface, two backends.

- ``KNOWLEDGE_STORE`` = a directory: ``EdgeStore``, Qdrant's engine in this process
  (Qdrant Edge), one process at a time;
- ``KNOWLEDGE_STORE`` = an http(s) URL: ``ServerStore``, a Qdrant server or cluster through
  qdrant-client's async client, shared by any number of processes.

The rest of the knowledge code sees only ``KnowledgeStore``; every call raises
``KnowledgeUnavailable`` (``StoreLocked``, ``CollectionGone``) when the store cannot serve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from inference.knowledge import is_embedded_store
from inference.knowledge.store.records import (
    RRF_K,
    Active,
    ChunkRecord,
    CollectionGone,
    Indexed,
    SourceStatus,
    StoredHit,
    StoreLocked,
    collection_name,
    point_id,
)

__all__ = [
    "RRF_K",
    "Active",
    "ChunkRecord",
    "CollectionGone",
    "Indexed",
    "KnowledgeStore",
    "SourceStatus",
    "StoreLocked",
    "StoredHit",
    "collection_name",
    "open_store",
    "point_id",
]


class KnowledgeStore(Protocol):
    """What the indexer, retrieval, the CLI and doctor use of the store."""

    location: str
    local: bool  # embedded: one process at a time holds it
    old_format: bool  # an embedded store of the old format, found on open (rebuilt by index)

    def describe(self) -> str:
        """Where the store is, for messages."""
        ...

    async def open(self) -> None:
        """Connect or take the directory (``StoreLocked`` when another process holds it)."""
        ...

    async def aclose(self) -> None:
        """Release it; never hangs (calls in flight are waited for a bounded while)."""
        ...

    async def ping(self) -> float:
        """Seconds one round trip takes."""
        ...

    async def active(self) -> Active | None:
        """The index answers are served from, or None (nothing indexed)."""
        ...

    async def find(self, model: str) -> Active | None:
        """An index already holding (part of) what ``model`` embedded."""
        ...

    async def create(self, model: str, dimension: int) -> str:
        """Create (if missing) the index for ``model`` at ``dimension``; its name."""
        ...

    async def switch(self, name: str) -> str | None:
        """Serve answers from ``name`` (atomically); the one served before."""
        ...

    async def drop(self, name: str) -> None:
        """Delete an index (an old model's, after the switch)."""
        ...

    async def build_index(self, collection: str) -> None:
        """Build the vector index after a run, where the backend does not by itself."""
        ...

    async def indexed(self, collection: str, source: str) -> dict[str, Indexed]:
        """Every document of ``source`` with its content hash."""
        ...

    async def sources(self, collection: str) -> set[str]:
        """The sources with chunks in ``collection``."""
        ...

    async def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        """Store chunks (replacing those with the same source, document and number)."""
        ...

    async def delete_chunks(
        self, collection: str, source: str, document: str, *, from_chunk: int = 0
    ) -> None:
        """Delete the chunks of one document numbered ``from_chunk`` and up."""
        ...

    async def delete_documents(
        self, collection: str, source: str, documents: Iterable[str]
    ) -> None:
        """Delete every chunk of these documents."""
        ...

    async def delete_source(self, collection: str, source: str) -> None:
        """Delete every chunk of a source."""
        ...

    async def restrict(self, collection: str, source: str, only: tuple[str, ...]) -> None:
        """Set the ``only`` ids of every chunk of a source."""
        ...

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
        """One hybrid query (dense and keyword prefetches above their floors, visible to
        ``scope``, fused by reciprocal rank), best first."""
        ...

    async def save_status(self, status: SourceStatus) -> None:
        """Record a source's status."""
        ...

    async def statuses(self) -> dict[str, SourceStatus]:
        """Every recorded source status."""
        ...

    async def saved_statuses(self) -> dict[str, SourceStatus]:
        """The statuses, readable while another process holds an embedded store."""
        ...

    async def forget_status(self, source: str) -> None:
        """Drop the status of a source no longer configured."""
        ...


def open_store(location: str, *, timeout: float = 10.0) -> KnowledgeStore:
    """The store ``KNOWLEDGE_STORE`` names (nothing is opened until first use)."""
    if is_embedded_store(location):
        from inference.knowledge.store.edge import EdgeStore

        return EdgeStore(location=location)
    from inference.knowledge.store.server import ServerStore

    return ServerStore(location=location, timeout=timeout)
