"""Team knowledge: incremental indexing into an embedded Qdrant store and hybrid retrieval
(real qdrant-client, a fake Ollama /api/embed counting calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.retrieval import QdrantKnowledge, _Hit, diversify, merge_neighbours
from inference.knowledge.store import ALIAS, KnowledgeStore
from tests.fakes.ollama import FakeOllama
from tests.knowledge_helpers import MODEL, stack, useless_vector, write
from tests.processes import free_port

DOCS = {
    "deploy.md": "# Deploy runbook\n\n## Rollback\n\nTo roll back a release run "
    "`make rollback` and watch the canary dashboards.\n",
    "oncall.md": "# On-call\n\nPage the primary through the pager rotation; escalate "
    "after fifteen minutes.\n",
    "src/pool.py": "class ConnectionPool:\n    def acquire(self):\n        return None\n",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL, "all-minilm"]) as server:
        yield server


async def test_unchanged_sources_cost_no_embedding_call_and_edits_replace_only_their_chunks(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        [first] = await s.index(str(docs))
        assert first.ok and first.documents_added == 3 and first.chunks_added >= 3
        assert first.documents == 3
        calls = fake.embed_calls

        [again] = await s.index(str(docs))
        assert fake.embed_calls == calls  # nothing changed: no embedding call at all
        assert again.documents_unchanged == 3 and again.documents_added == 0
        assert again.chunks_unchanged == first.chunks_added

        (docs / "oncall.md").write_text("# On-call\n\nEscalate to the incident commander.\n")
        texts_before = len(fake.embedded_texts)
        [edited] = await s.index(str(docs))
        new_texts = fake.embedded_texts[texts_before:]
        assert edited.documents_changed == 1 and edited.documents_unchanged == 2
        assert new_texts and all("incident commander" in t for t in new_texts)
        hits = await s.knowledge.search("incident commander escalate", scope=[])
        assert hits[0].document == "oncall.md" and "incident commander" in hits[0].text
        assert not any("fifteen minutes" in h.text for h in hits)  # the old chunk is gone

        (docs / "deploy.md").unlink()
        [removed] = await s.index(str(docs))
        assert removed.documents_removed == 1 and removed.documents == 2
        found = await s.knowledge.retrieve("roll back a release", scope=[])
        assert all(p.document != "deploy.md" for p in found)

        calls = fake.embed_calls
        [full] = await s.index(str(docs), full=True)
        # --full embeds everything again, yet reports unchanged documents as unchanged.
        assert full.documents_unchanged == 2 and full.documents_changed == 0
        assert fake.embed_calls > calls


async def test_a_passage_keeps_what_a_citation_needs(tmp_path: Path, fake: FakeOllama) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        [passage, *_] = await s.knowledge.retrieve("how do I roll back a release?", scope=[])
    assert passage.document == "deploy.md"
    assert passage.title == "Deploy runbook"
    assert passage.heading == "Deploy runbook > Rollback"
    assert passage.url == str((docs / "deploy.md").resolve()) or passage.url.endswith("deploy.md")
    assert passage.source == str(docs)
    assert "make rollback" in passage.text and passage.score > 0


async def test_restricted_sources_are_stored_with_their_ids_and_seen_only_in_scope(
    tmp_path: Path, fake: FakeOllama
) -> None:
    public = write(tmp_path / "public", {"faq.md": "# FAQ\n\nThe wifi password is on the wall.\n"})
    secret = write(
        tmp_path / "secret",
        {"payroll.md": "# Payroll\n\nPayroll runs on the wifi of the finance office.\n"},
    )
    async with stack(tmp_path, fake) as s:
        reports = await s.index(f"{public},{secret}?only=C_FIN+T_ACME")
        assert all(r.ok for r in reports)
        active = await s.store.active()
        assert active is not None
        stored = await s.store.indexed(active[0], str(secret))
        assert stored["payroll.md"].only == ("C_FIN", "T_ACME")
        assert (await s.store.indexed(active[0], str(public)))["faq.md"].only == ()

        for scope in ([], ["W1", "C_GENERAL"], ["C_FINANCE"]):
            for method in (s.knowledge.retrieve, s.knowledge.search):
                found = await method("wifi password wall payroll finance", scope=scope)
                assert found and all(p.document != "payroll.md" for p in found), scope
        for scope in (["W1", "C_FIN"], ["T_ACME", "19:abc@thread.tacv2"]):
            found = await s.knowledge.search("wifi password wall payroll finance", scope=scope)
            assert {p.document for p in found} == {"payroll.md", "faq.md"}

        # Narrowing the restriction re-labels the stored chunks without re-embedding.
        calls = fake.embed_calls
        await s.index(f"{public},{secret}?only=C_OTHER")
        assert fake.embed_calls == calls
        found = await s.knowledge.retrieve("payroll finance office", scope=["C_FIN"])
        assert all(p.document != "payroll.md" for p in found)


async def test_an_exact_identifier_is_found_by_keywords_when_vectors_say_nothing(
    tmp_path: Path, fake: FakeOllama
) -> None:
    files = {
        f"service{i}.md": f"# Service {i}\n\nService {i} logs errors and retries on failure.\n"
        for i in range(12)
    }
    files["service7.md"] += "\nERR_DB_042 means the connection pool is exhausted.\n"
    docs = write(tmp_path / "docs", files)
    fake.embed_fn = useless_vector
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        found = await s.knowledge.retrieve("what does ERR_DB_042 mean?", scope=[])
        assert found and found[0].document == "service7.md"
        # Its parts match too, and CamelCase / dotted / snake_case names are split.
        found = await s.knowledge.retrieve("err db 042", scope=[])
        assert found and found[0].document == "service7.md"
        # Below the relevance floor nothing is returned: useless vectors, no rare word.
        assert await s.knowledge.retrieve("tell me a story about dragons", scope=[]) == []


async def test_several_documents_are_preferred_and_neighbouring_chunks_merged(
    tmp_path: Path, fake: FakeOllama
) -> None:
    long = "# Kafka guide\n\n" + "\n\n".join(
        f"## Part {i}\n\n" + ("Kafka topic partition consumer offsets. " * 30) for i in range(8)
    )
    docs = write(
        tmp_path / "docs",
        {
            "kafka.md": long,
            "kafka-ops.md": "# Kafka operations\n\nKafka topic partition consumer lag alerts.\n",
            "kafka-faq.md": "# Kafka FAQ\n\nKafka topic partition consumer group questions.\n",
        },
    )
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(str(docs))
        assert report.chunks_added >= 10
        found = await s.knowledge.retrieve("kafka topic partition consumer", scope=[], limit=4)
    documents = [p.document for p in found]
    assert {"kafka-ops.md", "kafka-faq.md"} <= set(documents)
    assert documents.count("kafka.md") <= 2


def test_neighbouring_chunks_merge_into_one_passage() -> None:
    def hit(doc: str, chunk: int, score: float) -> _Hit:
        return _Hit("s", doc, chunk, doc.upper(), "", f"u/{doc}", f"{doc}{chunk}", score)

    passages = merge_neighbours(
        [hit("a", 3, 0.9), hit("a", 4, 0.5), hit("a", 9, 0.4), hit("b", 0, 0.8), hit("a", 2, 0.3)]
    )
    texts = [p.text for p in passages]
    assert texts == ["a2\n\na3\n\na4", "b0", "a9"]
    assert passages[0].score == 0.9
    many = merge_neighbours([hit("a", i * 2, 1 - i / 10) for i in range(5)] + [hit("b", 0, 0.1)])
    chosen = diversify(many, 3)
    assert [p.document for p in chosen] == ["a", "a", "b"]


async def test_store_or_embeddings_down_raise_knowledge_unavailable(
    tmp_path: Path, fake: FakeOllama
) -> None:
    async with stack(tmp_path, fake, store=f"http://127.0.0.1:{free_port()}") as s:
        with pytest.raises(KnowledgeUnavailable):
            await s.knowledge.retrieve("anything", scope=[])
        with pytest.raises(KnowledgeUnavailable):
            await s.index(str(tmp_path))
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        await fake.stop()
        with pytest.raises(KnowledgeUnavailable):
            await s.knowledge.retrieve("roll back", scope=[])
        await fake.start()
        assert await s.knowledge.retrieve("roll back a release", scope=[])


async def test_an_empty_index_finds_nothing(tmp_path: Path, fake: FakeOllama) -> None:
    async with stack(tmp_path, fake) as s:
        assert await s.knowledge.retrieve("anything at all", scope=[]) == []
        assert await s.knowledge.search("anything at all", scope=["C1"]) == []


async def test_a_new_embedding_model_fills_a_new_collection_then_switches(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        before = await s.store.active()
    fake.embed_dimensions["all-minilm"] = 32
    held = fake.embed_held["all-minilm"] = asyncio.Event()
    async with stack(tmp_path, fake, model="all-minilm") as s:
        knowledge = QdrantKnowledge(store=s.store, embeddings=s.embeddings)
        rebuild = asyncio.create_task(s.index(str(docs)))
        await asyncio.wait_for(fake.embed_holding.wait(), 10)
        # Mid-rebuild, questions are answered from the old collection, embedded with the
        # old model (the new one is held above).
        during = await asyncio.wait_for(knowledge.retrieve("roll back a release", scope=[]), 10)
        assert during and during[0].document == "deploy.md"
        assert not rebuild.done()
        held.set()
        [report] = await rebuild
        assert report.ok and report.documents_added == 3  # everything re-embedded
        after = await s.store.active()
        assert before is not None and after is not None
        assert after[1:] == ("all-minilm", 32) and before[1:] == (MODEL, 64)
        assert after[0] != before[0]
        client = await s.store.client()
        assert not await client.collection_exists(before[0])  # the old one is dropped
        assert (await client.get_aliases()).aliases[0].alias_name == ALIAS
        # The same reader (as in a process that did not index, whose cached view is the
        # old collection, now dropped) finds the switch on its next question.
        found = await knowledge.retrieve("roll back a release", scope=[])
        assert found and found[0].document == "deploy.md"


async def test_one_failing_source_does_not_stop_the_others(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        await s.index(f"{docs},{tmp_path / 'missing'}")
        reports = await s.index(f"{tmp_path / 'missing'},{docs}")
        assert [r.ok for r in reports] == [False, True]
        assert "not a directory" in reports[0].error
        statuses = await s.store.statuses()
        assert statuses[str(tmp_path / "missing")].last_error
        assert statuses[str(docs)].documents == 3 and statuses[str(docs)].last_success
        # A source no longer configured loses its chunks on a run over all sources.
        other = write(tmp_path / "other", {"x.md": "# X\n\nsomething else\n"})
        await s.index(f"{docs},{other}")
        await s.store.forget_status(str(other))  # as if its status could not be saved
        await s.index(str(docs))
        active = await s.store.active()
        assert active is not None
        assert await s.store.sources(active[0]) == {str(docs)}


async def test_the_embedded_store_is_held_by_one_process(tmp_path: Path) -> None:
    first = KnowledgeStore(location=str(tmp_path / "store"))
    second = KnowledgeStore(location=str(tmp_path / "store"))
    try:
        await first.ping()
        with pytest.raises(KnowledgeUnavailable, match="in use by another process"):
            await second.ping()
    finally:
        await first.aclose()
        await second.aclose()
