"""Shared pieces of the team knowledge tests: the stack over either store backend (Qdrant
Edge in a directory; the server code path on qdrant-client's local mode standing in for a
Qdrant server) and the fake Ollama's /api/embed."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import AsyncQdrantClient

from inference.knowledge.embeddings import OllamaEmbeddings
from inference.knowledge.indexer import Indexer, SourceReport
from inference.knowledge.retrieval import QdrantKnowledge
from inference.knowledge.sources import parse_sources
from inference.knowledge.store import KnowledgeStore, open_store
from inference.knowledge.store.server import ServerStore
from tests.fakes.ollama import FakeOllama

MODEL = "nomic-embed-text"
BACKENDS = ("edge", "server")


def make_store(
    tmp_path: Path, backend: str = "edge", location: str | None = None
) -> KnowledgeStore:
    """A store of ``backend`` kept under ``tmp_path`` (reopened by a later call)."""
    if backend == "server":
        path = tmp_path / "server"
        return ServerStore(
            location=f"(local mode) {path}", client=AsyncQdrantClient(path=str(path))
        )
    return open_store(location or str(tmp_path / "store"))


@dataclass
class Stack:
    store: KnowledgeStore
    embeddings: OllamaEmbeddings
    indexer: Indexer
    knowledge: QdrantKnowledge

    async def index(self, sources: str, *, full: bool = False) -> list[SourceReport]:
        reports = await self.indexer.run(parse_sources(sources), full=full)
        self.knowledge.forget_active()
        return reports


@asynccontextmanager
async def stack(
    tmp_path: Path,
    fake: FakeOllama,
    *,
    model: str = MODEL,
    store: str | None = None,
    backend: str = "edge",
) -> AsyncIterator[Stack]:
    kstore = make_store(tmp_path, backend, store)
    embeddings = OllamaEmbeddings(base_urls=[fake.url], model=model)
    try:
        yield Stack(
            store=kstore,
            embeddings=embeddings,
            indexer=Indexer(store=kstore, embeddings=embeddings, git_cache=tmp_path / "git"),
            knowledge=QdrantKnowledge(store=kstore, embeddings=embeddings),
        )
    finally:
        await embeddings.aclose()
        await kstore.aclose()


def useless_vector(text: str, dimension: int = 64) -> list[float]:
    """A deterministic vector that says nothing about the text's meaning."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    return [rng.uniform(-1, 1) for _ in range(dimension)]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return root
