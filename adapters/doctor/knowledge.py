"""`chatbot doctor`'s team knowledge checks: the store (reachable, embedding model and
dimension match the index), the embedding model (pulled), each source (reachable), each
source apart and within its own time (one that hangs hides none of the others)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.app.knowledge import KnowledgeService
from adapters.app.settings import Settings
from adapters.doctor.report import Check
from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.embeddings import ModelNotPulled
from inference.knowledge.loaders import LoadOptions, SourceFailed, run_git
from inference.knowledge.loaders.web import probe
from inference.knowledge.sources import Source
from inference.knowledge.store import Active, StoreLocked
from inference.urls import public_url

TIMEOUT_SECONDS = 5.0


async def check_knowledge(settings: Settings) -> list[Check]:
    """Every team knowledge check (none without KNOWLEDGE_SOURCES)."""
    service = KnowledgeService.from_settings(settings)
    if service is None:
        return []

    async def store_and_model() -> list[Check]:
        store = await _check_store(service, settings)
        return [*store[0], *await _check_model(service, settings, store)]

    try:
        first, sources = await asyncio.gather(
            store_and_model(),
            asyncio.gather(*(_check_source(s, service.options) for s in service.sources)),
        )
        return [*first, *sources]
    finally:
        await service.aclose()


async def _check_store(
    service: KnowledgeService, settings: Settings
) -> tuple[list[Check], Active | None]:
    store = service.store
    where = store.describe() if store.local else f"Qdrant at {public_url(store.location)}"
    try:
        active = await store.active()
    except StoreLocked:
        line = (
            f"{where} is held by a running bot: a second process (`chatbot chat` beside "
            "`chatbot serve`) answers without team knowledge"
        )
        fix = "stop the other process, or share a Qdrant server (KNOWLEDGE_STORE=http://...)"
        return [Check("WARN", "knowledge", line, fix)], None
    except KnowledgeUnavailable as exc:
        fix = (
            "start Qdrant (`docker compose up -d qdrant`) or correct KNOWLEDGE_STORE"
            if not store.local
            else "check KNOWLEDGE_STORE names a writable directory"
        )
        return [Check("FAIL", "knowledge", f"{where} cannot be used: {exc}", fix)], None
    if active is None and store.old_format:
        line = (
            f"{where} holds an index of the old format (before Qdrant Edge): answers find "
            "nothing in it"
        )
        fix = "run `chatbot index`: it rebuilds the index (every document embedded once)"
        return [Check("WARN", "knowledge", line, fix)], None
    if active is None:
        return [
            Check(
                "WARN",
                "knowledge",
                f"{where} answers but nothing is indexed yet",
                "run `chatbot index` (or wait for `chatbot serve`'s first refresh)",
            )
        ], None
    line = (
        f"{where} answers; the index was built with {active.model} ({active.dimension} dimensions)"
    )
    return [Check("OK", "knowledge", line)], active


async def _check_model(
    service: KnowledgeService, settings: Settings, store: tuple[list[Check], Active | None]
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
    if active is not None:
        built_with, dimension = active.model, active.dimension
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


async def _check_source(source: Source, options: LoadOptions) -> Check:
    name = public_url(source.name)
    seconds = TIMEOUT_SECONDS * 2
    try:
        async with asyncio.timeout(seconds + 1):
            if source.kind == "directory":
                if not await asyncio.to_thread(Path(source.location).is_dir):
                    raise SourceFailed(f"{source.location} is not a directory")
            elif source.kind == "git":
                await run_git(
                    "ls-remote", "--", source.location, timeout=seconds, location=source.location
                )
            else:
                await probe(source, options.allow_private, timeout=TIMEOUT_SECONDS)
    except (SourceFailed, TimeoutError) as exc:
        detail = str(exc) or f"no answer within {seconds:g} s"
        return Check(
            "WARN",
            "knowledge",
            f"source {name} cannot be read: {public_url(detail)}",
            "correct it in KNOWLEDGE_SOURCES (the other sources are still indexed)",
        )
    return Check("OK", "knowledge", f"source {name} is reachable")
