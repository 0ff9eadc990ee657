"""The two embedded backends the knowledge benchmarks compare, side by side:

- ``edge``: the store now (Qdrant Edge in this process, ``EdgeStore``);
- ``local``: the store before it, qdrant-client's local mode (pure Python, every point
  scored per query), driven through the same server code path (``ServerStore``).
"""

from __future__ import annotations

from pathlib import Path

from inference.knowledge.store import KnowledgeStore

BACKENDS = ("local", "edge")
LABELS = {"local": "before (qdrant-client local mode)", "edge": "now (Qdrant Edge)"}


def bench_store(backend: str, path: Path) -> KnowledgeStore:
    """A store of ``backend`` in ``path``."""
    if backend == "local":
        from qdrant_client import AsyncQdrantClient

        from inference.knowledge.store.server import ServerStore

        return ServerStore(location=str(path), client=AsyncQdrantClient(path=str(path)))
    from inference.knowledge.store.edge import EdgeStore

    return EdgeStore(location=str(path))
