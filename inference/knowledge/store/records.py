"""What the store keeps and answers, the same for both backends: chunk records, what is
indexed of a document, the collection answers use, a scored hit, source statuses, errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from inference.knowledge import KnowledgeUnavailable

DENSE = "dense"
SPARSE = "sparse"
# Payload fields with an index (keyword, except ``chunk``, an integer).
INDEXED_FIELDS = ("source", "document", "only", "chunk")
_NAMESPACE = uuid.UUID("6f1c8f0e-5a8e-4d57-9c1f-2b0c4bd0a6e1")


class StoreLocked(KnowledgeUnavailable):
    """The embedded store's folder is held by another process (e.g. ``chatbot serve``)."""


class CollectionGone(KnowledgeUnavailable):
    """The collection asked for does not exist (any more: a new embedding model's index
    replaced it)."""


def point_id(source: str, document: str, chunk: int) -> str:
    """The stable id of one chunk."""
    return str(uuid.uuid5(_NAMESPACE, f"{source}\x00{document}\x00{chunk}"))


def collection_name(model: str, dimension: int) -> str:
    """The collection (server) or shard (embedded) for one embedding model and dimension."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    return f"knowledge_{slug}_{dimension}"


@dataclass(frozen=True, slots=True)
class Active:
    """The index answers are served from (read by name: ``active.collection``)."""

    collection: str
    model: str  # the embedding model it was built with
    dimension: int


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

    @property
    def id(self) -> str:
        """The point id."""
        return point_id(self.source, self.document, self.chunk)

    def payload(self) -> dict[str, Any]:
        """As stored."""
        return {
            "source": self.source,
            "document": self.document,
            "chunk": self.chunk,
            "title": self.title,
            "heading": self.heading,
            "url": self.url,
            "text": self.text,
            "hash": self.content_hash,
            "chunks": self.chunks,
            "only": list(self.only),
        }


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the store holds of one document."""

    content_hash: str
    chunks: int
    only: tuple[str, ...]

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Indexed:
        """From the payload of a document's first chunk."""
        return cls(
            content_hash=str(payload.get("hash")),
            chunks=int(payload.get("chunks") or 1),
            only=tuple(payload.get("only") or ()),
        )


# The dense and keyword lists of a query are fused by reciprocal rank with this constant on
# both backends (a chunk ranked r-th in a list gains about 1/(RRF_K + r)): the ranking's
# weights are set against it. A Qdrant server's default is 2, which lets one list's first
# place outweigh a chunk that both lists found.
RRF_K = 60

# The payload fields ``Indexed.of`` reads.
INDEXED_PAYLOAD = ["document", "hash", "only", "chunks"]
# The payload fields a query returns (what a passage shows; not the hash, not ``only``).
HIT_PAYLOAD = ["source", "document", "chunk", "title", "heading", "url", "text", "chunks"]
DELETE_BATCH = 500  # documents deleted by one filter


def held_documents(first_chunks: Iterable[dict[str, Any]]) -> dict[str, Indexed]:
    """What the store holds of each document, from the payloads of the documents' first
    chunks (both backends scroll them with ``INDEXED_PAYLOAD``)."""
    return {str(p.get("document")): Indexed.of(p) for p in first_chunks}


def sources_of(first_chunks: Iterable[dict[str, Any]]) -> set[str]:
    """The sources named by the payloads of first chunks."""
    return {str(p.get("source")) for p in first_chunks}


def in_batches(items: Iterable[str], size: int = DELETE_BATCH) -> Iterator[list[str]]:
    """``items`` in lists of at most ``size`` (one delete filter each)."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class StoredHit:
    """One chunk a query found: its payload and its fused score (higher is better)."""

    payload: dict[str, Any]
    score: float


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


def unavailable(where: str, exc: BaseException) -> KnowledgeUnavailable:
    """``exc`` (a library's error) as the ``KnowledgeUnavailable`` callers handle."""
    if isinstance(exc, KnowledgeUnavailable):
        return exc
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return KnowledgeUnavailable(f"{where}: {detail}")
