"""`chatbot doctor`'s team knowledge checks: the store (reachable, embedding model and
dimension match the index), the embedding model (pulled), each source (reachable)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from adapters.doctor import Check
from adapters.knowledge import KnowledgeService, build_knowledge
from adapters.metrics import public_url
from adapters.settings import Settings
from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.embeddings import ModelNotPulled
from inference.knowledge.loaders import SourceFailed, redact_url, run_git
from inference.knowledge.sources import Source

TIMEOUT_SECONDS = 5.0


async def check_knowledge(settings: Settings) -> list[Check]:
    """Every team knowledge check (none without KNOWLEDGE_SOURCES)."""
    service = build_knowledge(settings)
    if service is None:
        return []
    try:
        store = await _check_store(service, settings)
        model = await _check_model(service, settings, store)
        sources = await asyncio.gather(*(_check_source(s) for s in service.sources))
        return [*store[0], *model, *sources]
    finally:
        await service.aclose()


async def _check_store(
    service: KnowledgeService, settings: Settings
) -> tuple[list[Check], tuple[str, str, int] | None]:
    store = service.store
    where = store.describe() if store.local else f"Qdrant at {public_url(store.location)}"
    try:
        active = await store.active()
    except KnowledgeUnavailable as exc:
        if "in use by another process" in str(exc):
            return [
                Check(
                    "OK",
                    "knowledge",
                    f"{where} is held by another chatbot process (serve, or chat)",
                )
            ], None
        fix = (
            "start Qdrant (`docker compose up -d qdrant`) or correct KNOWLEDGE_STORE"
            if not store.local
            else "check KNOWLEDGE_STORE names a writable directory"
        )
        return [Check("FAIL", "knowledge", f"{where} cannot be used: {exc}", fix)], None
    if active is None:
        return [
            Check(
                "WARN",
                "knowledge",
                f"{where} answers but nothing is indexed yet",
                "run `chatbot index` (or wait for `chatbot serve`'s first refresh)",
            )
        ], None
    line = f"{where} answers; the index was built with {active[1]} ({active[2]} dimensions)"
    return [Check("OK", "knowledge", line)], active


async def _check_model(
    service: KnowledgeService, settings: Settings, store: tuple[list[Check], object]
) -> list[Check]:
    model = settings.embedding_model
    try:
        vector = await service.embeddings.embed_query("doctor")
    except ModelNotPulled:
        return [
            Check(
                "FAIL",
                "knowledge",
                f"no Ollama server of OLLAMA_BASE_URL has the embedding model {model}",
                f"run `ollama pull {model}` (or set EMBEDDING_MODEL to a pulled model)",
            )
        ]
    except KnowledgeUnavailable as exc:
        return [Check("FAIL", "knowledge", f"cannot embed with {model}: {exc}", "see ollama")]
    checks = [Check("OK", "knowledge", f"{model} embeds ({len(vector)} dimensions)")]
    active = store[1]
    if isinstance(active, tuple):
        _, built_with, dimension = active
        if built_with != model:
            checks.append(
                Check(
                    "WARN",
                    "knowledge",
                    f"answers use an index built with {built_with}; EMBEDDING_MODEL is {model}",
                    "run `chatbot index`: it builds the new index and switches when complete",
                )
            )
        elif dimension != len(vector):
            checks.append(
                Check(
                    "FAIL",
                    "knowledge",
                    f"{model} now gives {len(vector)} dimensions, the index has {dimension}",
                    "delete the index (KNOWLEDGE_STORE) and run `chatbot index`",
                )
            )
    return checks


async def _check_source(source: Source) -> Check:
    name = public_url(source.name)
    try:
        if source.kind == "directory":
            if not await asyncio.to_thread(Path(source.location).is_dir):
                raise SourceFailed(f"{source.location} is not a directory")
        elif source.kind == "git":
            await run_git("ls-remote", "--", source.location, timeout=TIMEOUT_SECONDS * 2)
        else:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
                response = await client.get(source.location)
            if response.status_code != 200:
                raise SourceFailed(f"HTTP {response.status_code}")
    except (SourceFailed, httpx.HTTPError) as exc:
        detail = str(exc) or type(exc).__name__
        return Check(
            "WARN",
            "knowledge",
            f"source {name} cannot be read: {redact_url(detail)}",
            "correct it in KNOWLEDGE_SOURCES (the other sources are still indexed)",
        )
    return Check("OK", "knowledge", f"source {name} is reachable")
