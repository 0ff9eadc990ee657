"""Shared pieces of the team knowledge tests: the stack over either store backend (Qdrant
Edge in a directory; the server code path on qdrant-client's local mode standing in for a
Qdrant server) and the fake Ollama's /api/embed."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import AsyncQdrantClient

from bot.redact import redact
from inference.knowledge.embeddings import OllamaEmbeddings
from inference.knowledge.indexer import Indexer, SourceReport
from inference.knowledge.loaders import (
    Document,
    LoadItem,
    LoadOptions,
    Skipped,
    parse_allow_private,
)
from inference.knowledge.retrieval import QdrantKnowledge
from inference.knowledge.sources import parse_sources
from inference.knowledge.store import KnowledgeStore, open_store
from inference.knowledge.store.server import ServerStore
from tests.fakes.ollama import FakeOllama
from tests.support import REPO

MODEL = "nomic-embed-text"
REPO = REPO

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
    allow_private: str = "127.0.0.1",
    backend: str = "edge",
) -> AsyncIterator[Stack]:
    """The knowledge stack over a store in ``tmp_path``; website sources may reach
    ``allow_private`` (the tests' local servers)."""
    kstore = make_store(tmp_path, backend, store)
    embeddings = OllamaEmbeddings(base_urls=[fake.url], model=model)
    try:
        yield Stack(
            store=kstore,
            embeddings=embeddings,
            indexer=Indexer(
                store=kstore,
                embeddings=embeddings,
                git_cache=tmp_path / "git",
                redact=redact,
                options=LoadOptions(allow_private=parse_allow_private(allow_private)),
            ),
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


async def collect(items: AsyncIterator[LoadItem]) -> tuple[dict[str, Document], dict[str, str]]:
    """What a loader yielded: documents by id, and the reasons of what it skipped."""
    docs: dict[str, Document] = {}
    skipped: dict[str, str] = {}
    async for item in items:
        if isinstance(item, Skipped):
            skipped[item.id] = item.reason
        else:
            docs[item.id] = item
    return docs, skipped


def index_environment(
    tmp_path: Path, fake: FakeOllama, sources: str, **extra: str
) -> dict[str, str]:
    """The environment of a `chatbot` process indexing ``sources`` into a store in
    ``tmp_path`` with the fake Ollama (no Redis reachable unless ``extra`` names one)."""
    from tests.support.processes import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWLEDGE_", "REDIS_"))}
    env.update(
        PYTHONPATH=str(REPO),
        KNOWLEDGE_SOURCES=sources,
        KNOWLEDGE_STORE=str(tmp_path / "store"),
        OLLAMA_BASE_URL=fake.url,
        EMBEDDING_MODEL=MODEL,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env
