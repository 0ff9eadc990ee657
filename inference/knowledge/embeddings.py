"""Embeddings from Ollama's ``/api/embed``, batched, with failover over the servers of
``OLLAMA_BASE_URL`` and the prefixes the model expects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from inference.knowledge import KnowledgeUnavailable

BATCH_SIZE = 48
_FLOAT = frozenset({float})
# Prefixes the embedding models were trained with (document, query), by name prefix.
PREFIXES: dict[str, tuple[str, str]] = {
    "nomic-embed-text": ("search_document: ", "search_query: "),
    "mxbai-embed-large": ("", "Represent this sentence for searching relevant passages: "),
    "snowflake-arctic-embed": ("", "Represent this sentence for searching relevant passages: "),
}


def prefixes(model: str) -> tuple[str, str]:
    """(document prefix, query prefix) for ``model``; none for unknown models."""
    base = model.rsplit("/", 1)[-1].split(":", 1)[0]
    return PREFIXES.get(base, ("", ""))


class EmbeddingError(KnowledgeUnavailable):
    """No Ollama server could embed the texts."""


class ModelNotPulled(EmbeddingError):
    """The servers answer but lack the embedding model."""


class OllamaEmbeddings:
    """Embeds texts with one model on a list of Ollama servers (first that answers).

    The httpx client is built once and shared by every call.
    """

    def __init__(
        self,
        *,
        base_urls: Sequence[str],
        model: str,
        timeout: float = 120.0,
        connect_timeout: float = 3.0,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """Configure the client; makes no network call."""
        if not base_urls:
            raise ValueError("no Ollama server configured")
        self._urls = [u.rstrip("/") for u in base_urls]
        self.model = model
        self.batch_size = batch_size
        self._timeouts = (timeout, connect_timeout)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=connect_timeout))
        self._preferred = 0

    def with_model(self, model: str) -> OllamaEmbeddings:
        """The same servers with another model (a client of its own)."""
        return OllamaEmbeddings(
            base_urls=self._urls,
            model=model,
            timeout=self._timeouts[0],
            connect_timeout=self._timeouts[1],
            batch_size=self.batch_size,
        )

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of document chunks, in batches, with the model's document prefix."""
        doc, _ = prefixes(self.model)
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [doc + t for t in texts[start : start + self.batch_size]]
            out.extend(await self._embed(batch))
        return out

    async def embed_query(self, text: str) -> list[float]:
        """The vector of one question, with the model's query prefix."""
        _, query = prefixes(self.model)
        return (await self._embed([query + text]))[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        errors: list[str] = []
        missing = 0
        order = self._urls[self._preferred :] + self._urls[: self._preferred]
        for url in order:
            try:
                response = await self._client.post(
                    f"{url}/api/embed", json={"model": self.model, "input": texts}
                )
            except httpx.HTTPError as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            if response.status_code == 404 and "not found" in response.text.lower():
                missing += 1
                errors.append(f"{url}: model {self.model} not pulled")
                continue
            if response.status_code != 200:
                errors.append(f"{url}: HTTP {response.status_code}")
                continue
            vectors = _vectors(response, len(texts))
            if vectors is None:
                errors.append(f"{url}: unexpected response")
                continue
            self._preferred = self._urls.index(url)
            return vectors
        message = f"cannot embed with {self.model}: " + "; ".join(errors)
        if missing and missing == len(errors):
            raise ModelNotPulled(message + f" (run `ollama pull {self.model}`)")
        raise EmbeddingError(message)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _vectors(response: httpx.Response, count: int) -> list[list[float]] | None:
    """The vectors of an ``/api/embed`` response, None unless there are ``count`` lists of
    numbers of one length (orjson: the stdlib's json parses floats several times slower,
    and a batch of 48 vectors of 768 dimensions is 37,000 of them)."""
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    vectors = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(vectors, list) or len(vectors) != count:
        return None
    size = len(vectors[0]) if vectors and isinstance(vectors[0], list) else 0
    for i, vector in enumerate(vectors):
        if not isinstance(vector, list) or len(vector) != size:
            return None
        if not set(map(type, vector)) <= _FLOAT:  # e.g. an integral value written as 0 or 1
            try:
                vectors[i] = [float(x) for x in vector]
            except (TypeError, ValueError):
                return None
    return vectors
