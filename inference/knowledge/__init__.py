"""Team knowledge: the interface the core retrieves through.

Indexing (sources -> load -> split -> embed -> upsert into Qdrant) and retrieval (hybrid
dense + keyword search, filtered by ``?only=`` ids in the store query) live in this package;
the core sees only ``Knowledge`` and the values below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from inference.base import InferenceError


def is_embedded_store(location: str) -> bool:
    """Whether ``KNOWLEDGE_STORE`` names a directory (Qdrant's embedded mode, which one
    process at a time can open) rather than a server."""
    return not location.startswith(("http://", "https://"))


class KnowledgeError(InferenceError):
    """Root of knowledge errors."""


class KnowledgeUnavailable(KnowledgeError):
    """The vector store or the embedding model could not be reached."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved passage (neighbouring chunks of one document already merged)."""

    source: str  # the source as configured, without its ``?only=`` part
    document: str  # a stable id of the document within its source (path or URL)
    title: str  # the document's title
    heading: str  # the heading path inside the document ("Deploy > Rollback"), or ""
    url: str  # a link a person can open (web URL at the indexed commit, page URL, or path)
    text: str
    score: float  # higher is better; only passages above the relevance floor are returned


class Knowledge(Protocol):
    """Searches the indexed team knowledge."""

    async def retrieve(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """The best passages for a question, best first, for the prompt.

        ``scope`` holds the ids of where the question was asked (workspace, channel, tenant,
        conversation): restricted sources are matched against them in the store query.
        Hybrid (dense + keyword, fused), above a relevance floor, neighbouring chunks of a
        document merged, several documents preferred over many chunks of one.
        Raises ``KnowledgeUnavailable`` when the store or the embedding model is down.
        """
        ...

    async def search(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        """The best-matching documents (one passage each) for ``/search``; no chat model call."""
        ...
