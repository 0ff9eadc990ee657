"""Retrieval: the ``Knowledge`` implementation over the Qdrant store.

One store query per question: a dense and a sparse (keyword) prefetch, each with its
relevance floor and the ``?only=`` visibility filter, fused by reciprocal rank. Then each
chunk's fused score is adjusted (``rank``): raised where it holds an identifier the question
names, damped for pages that list changes or define every term and for very long documents
(changelogs, release notes and glossaries mention everything once), and raised a little by
another chunk of its document that both searches found; neighbouring chunks of one
document are merged and several documents preferred over many chunks of one.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from inference.knowledge import Passage
from inference.knowledge.embeddings import OllamaEmbeddings
from inference.knowledge.sparse import identifiers, query_vector
from inference.knowledge.store import RRF_K, Active, CollectionGone, KnowledgeStore

# Cosine similarity below which a dense match is not relevant, by embedding model family.
DENSE_FLOORS = {"nomic-embed-text": 0.45, "all-minilm": 0.25, "mxbai-embed-large": 0.45}
DEFAULT_DENSE_FLOOR = 0.35
# IDF-weighted keyword score below which a keyword match is not relevant: at least one term
# must not be in most chunks (a term in half the chunks weighs ln 2 = 0.69).
DEFAULT_SPARSE_FLOOR = 0.5
MAX_PER_DOCUMENT = 2
ACTIVE_CACHE_SECONDS = 30.0
EXCERPT_CHARS = 300
# Ranking (chosen on the Flask and SQLAlchemy labelled sets of bench/knowledge_quality.py and
# checked on its held-out pytest set; weighing the question's keywords in titles and
# headings was measured too, and did not help there):
LONG_DOCUMENT_CHUNKS = 60  # longer documents are damped by the log of how much longer
LENGTH_DAMPING = 0.5
# The keyword terms of an identifier include its words (``TRUSTED_HOSTS``: ``trusted``,
# ``hosts``), and fusion by rank cannot tell a chunk with the identifier from one with its
# words: a chunk holding every identifier the question names, whole, gains what a first
# rank in a third list of the reciprocal-rank fusion adds.
EXACT_NAME_BONUS = 1 / (RRF_K + 1)
# The store fuses by reciprocal rank with k RRF_K (60) on both backends: one list gives a
# chunk at most 1/RRF_K, so a fused score above that means both lists found it (the scores
# are float32: a server's first place in one list reads 0.016666668, above 1/60 in float64;
# the least both lists give, 2/(RRF_K + candidates), is far above the margin).
ONE_LIST_MOST = 1 / RRF_K + 1e-6
# A chunk gains this share of the best other chunk of its document found by both lists.
SUPPORT_WEIGHT = 0.1
# Pages that list changes (changelogs, release notes, migration notes) or define every term
# (a glossary) mention everything once: their chunks count this much of their score.
DIGEST_WEIGHT = 0.7
_DIGEST = re.compile(
    r"^(?:change[ _-]?log|changes|release[ _-]?notes|releases|announce(?:ments)?|what'?s[ _-]?new"
    r"|whatsnew|news|history)"
    r"(?![a-z])|^(?:migration|upgrading|upgrade)[ _-]?(?:notes|guide|v?[0-9])"
    r"|^(?:glossary|terminology)(?![a-z])",
    re.IGNORECASE,
)


def dense_floor(model: str) -> float:
    """The default relevance floor for ``model``'s cosine similarities."""
    base = model.rsplit("/", 1)[-1].split(":", 1)[0]
    return DENSE_FLOORS.get(base, DEFAULT_DENSE_FLOOR)


@dataclass(frozen=True, slots=True)
class _Hit:
    source: str
    document: str
    chunk: int
    title: str
    heading: str
    url: str
    text: str
    score: float
    chunks: int = 1  # how many chunks its document has

    @classmethod
    def of(cls, payload: dict[str, Any], score: float) -> _Hit:
        return cls(
            source=str(payload.get("source", "")),
            document=str(payload.get("document", "")),
            chunk=int(payload.get("chunk") or 0),
            title=str(payload.get("title", "")),
            heading=str(payload.get("heading", "")),
            url=str(payload.get("url", "")),
            text=str(payload.get("text", "")),
            score=score,
            chunks=int(payload.get("chunks") or 1),
        )


def rank(hits: Sequence[_Hit], question: str = "") -> list[_Hit]:
    """``hits`` with their fused scores adjusted, best first: a chunk that holds an identifier
    the question names, written whole, counts as if a third list had ranked it first; a page
    that lists changes or defines every term, or a document much longer than most, matches
    every question somewhere, and is damped; and a chunk gains a little of the best other
    chunk of its document that both the dense and the keyword search found (a page that
    answers tends to match in more than one place, and a page that only shares words or
    only sounds alike does not gain)."""
    named = identifiers(question)
    scored: list[tuple[_Hit, float]] = []
    twice: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for number, hit in enumerate(hits):
        score = hit.score
        if named:
            where = f"{hit.title}\n{hit.heading}\n{hit.text}".lower()
            score += EXACT_NAME_BONUS * sum(_holds(where, n) for n in named) / len(named)
        if _digest(hit.document, hit.title):
            score *= DIGEST_WEIGHT
        if hit.chunks > LONG_DOCUMENT_CHUNKS:
            score /= 1 + LENGTH_DAMPING * math.log(hit.chunks / LONG_DOCUMENT_CHUNKS)
        scored.append((hit, score))
        if hit.score > ONE_LIST_MOST:  # more than one list can give: both found it
            twice.setdefault((hit.source, hit.document), []).append((score, number))
    for found in twice.values():
        found.sort(reverse=True)
    ranked = []
    for number, (hit, score) in enumerate(scored):
        support = [s for s, n in twice.get((hit.source, hit.document), [])[:2] if n != number]
        ranked.append(replace(hit, score=score + SUPPORT_WEIGHT * support[0] if support else score))
    ranked.sort(key=lambda h: h.score, reverse=True)
    return ranked


@functools.lru_cache(maxsize=4096)
def _digest(document: str, title: str) -> bool:
    """Whether a document lists changes or defines every term, by its title, its file name
    or a folder it is in (``releases/4.2.txt``, ``announce/release-8.0.rst``)."""
    return bool(_DIGEST.search(title)) or any(_DIGEST.search(p) for p in document.split("/"))


def _holds(text: str, name: str) -> bool:
    """Whether ``text`` holds ``name`` whole, not inside a longer name (``pool`` is not in
    ``pool_size``); both lower-cased."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def merge_neighbours(hits: Sequence[_Hit]) -> list[Passage]:
    """Runs of consecutive chunks of one document as one passage each, best first."""
    by_document: dict[tuple[str, str], list[_Hit]] = {}
    for hit in hits:
        by_document.setdefault((hit.source, hit.document), []).append(hit)
    passages: list[Passage] = []
    for group in by_document.values():
        group.sort(key=lambda h: h.chunk)
        run: list[_Hit] = []
        for hit in group:
            if run and hit.chunk != run[-1].chunk + 1:
                passages.append(_passage(run))
                run = []
            run.append(hit)
        passages.append(_passage(run))
    passages.sort(key=lambda p: p.score, reverse=True)
    return passages


def _passage(run: list[_Hit]) -> Passage:
    first = run[0]
    return Passage(
        source=first.source,
        document=first.document,
        title=first.title,
        heading=first.heading,
        url=first.url,
        text="\n\n".join(h.text for h in run),
        score=max(h.score for h in run),
    )


def diversify(passages: Sequence[Passage], limit: int) -> list[Passage]:
    """Up to ``limit`` passages: each document's best first, then second ones (at most
    ``MAX_PER_DOCUMENT`` per document), kept in score order."""
    chosen: list[Passage] = []
    taken: dict[tuple[str, str], int] = {}
    for round_ in range(MAX_PER_DOCUMENT):
        for passage in passages:
            key = (passage.source, passage.document)
            if len(chosen) >= limit:
                break
            if taken.get(key, 0) == round_ and passage not in chosen:
                chosen.append(passage)
                taken[key] = round_ + 1
    chosen.sort(key=lambda p: p.score, reverse=True)
    return chosen


@dataclass(frozen=True, slots=True)
class _ActiveRead:
    """The index answers use, as read from the store at ``read_at`` (monotonic seconds)."""

    read_at: float
    active: Active | None


class QdrantKnowledge:
    """``Knowledge`` over the Qdrant store (see ``inference.knowledge.Knowledge``)."""

    def __init__(
        self,
        *,
        store: KnowledgeStore,
        embeddings: OllamaEmbeddings,
        min_dense: float | None = None,
        min_sparse: float = DEFAULT_SPARSE_FLOOR,
        candidates: int = 24,
    ) -> None:
        """``embeddings`` is the configured model; while a new model's index is built the
        questions are embedded with the model of the collection answers still use."""
        self._store = store
        self._embeddings = embeddings
        self._others: dict[str, OllamaEmbeddings] = {}
        self._min_dense = min_dense
        self._min_sparse = min_sparse
        self._candidates = candidates
        self._active: _ActiveRead | None = None

    @property
    def store(self) -> KnowledgeStore:
        """The store searched."""
        return self._store

    async def retrieve(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """The best passages for a question, best first (see ``Knowledge.retrieve``)."""
        hits = await self._hits(query, scope=scope, candidates=max(self._candidates, limit * 4))
        return diversify(merge_neighbours(hits), limit)

    async def search(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """The best documents, one passage each with a short excerpt (``/search``)."""
        hits = await self._hits(query, scope=scope, candidates=max(self._candidates, limit * 4))
        best: dict[tuple[str, str], _Hit] = {}
        for hit in hits:
            key = (hit.source, hit.document)
            if key not in best or hit.score > best[key].score:
                best[key] = hit
        ranked = sorted(best.values(), key=lambda h: h.score, reverse=True)[:limit]
        return [
            Passage(
                source=h.source,
                document=h.document,
                title=h.title,
                heading=h.heading,
                url=h.url,
                text=_excerpt(h.text),
                score=h.score,
            )
            for h in ranked
        ]

    async def _hits(self, query: str, *, scope: Sequence[str], candidates: int) -> list[_Hit]:
        if not query.strip():
            return []
        active = await self._active_collection()
        if active is None:
            return []  # nothing indexed yet
        try:
            return await self._search(query, active, scope=scope, candidates=candidates)
        except CollectionGone:
            # Another process switched the index to a new embedding model since the active
            # collection was read, and dropped the old one: read it again.
            fresh = await self._store.active()
            self._active = _ActiveRead(time.monotonic(), fresh)
            if fresh is None or fresh == active:
                raise
            return await self._search(query, fresh, scope=scope, candidates=candidates)

    async def _search(
        self, query: str, active: Active, *, scope: Sequence[str], candidates: int
    ) -> list[_Hit]:
        model = active.model
        embeddings = self._embeddings_for(model)
        dense = await embeddings.embed_query(query)
        points = await self._store.query(
            dense=dense,
            sparse=query_vector(query),
            scope=scope,
            limit=candidates,
            min_dense=self._min_dense if self._min_dense is not None else dense_floor(model),
            min_sparse=self._min_sparse,
            collection=active.collection,
        )
        return rank([_Hit.of(p.payload, p.score) for p in points], query)

    async def _active_collection(self) -> Active | None:
        now = time.monotonic()
        if self._active is not None and now - self._active.read_at < ACTIVE_CACHE_SECONDS:
            return self._active.active
        active = await self._store.active()
        self._active = _ActiveRead(now, active)
        return active

    def forget_active(self) -> None:
        """Read the active collection again at the next question (after an index run)."""
        self._active = None

    def _embeddings_for(self, model: str) -> OllamaEmbeddings:
        if not model or model == self._embeddings.model:
            return self._embeddings
        if model not in self._others:
            self._others[model] = self._embeddings.with_model(model)
        return self._others[model]

    async def aclose(self) -> None:
        """Close the embedding clients made for an older model."""
        for other in self._others.values():
            await other.aclose()


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= EXCERPT_CHARS:
        return flat
    cut = flat[:EXCERPT_CHARS].rsplit(" ", 1)[0]
    return cut + "…"
