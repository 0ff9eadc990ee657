"""Team knowledge: incremental indexing into an embedded Qdrant store and hybrid retrieval
(real qdrant-client, a fake Ollama /api/embed counting calls)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.retrieval import _Hit, diversify, merge_neighbours, rank
from inference.knowledge.sparse import identifiers
from tests.fakes.ollama import FakeOllama
from tests.support.knowledge_helpers import MODEL, stack, useless_vector, write
from tests.support.processes import free_port

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


async def test_a_restructuredtext_passage_carries_its_section_heading(
    tmp_path: Path, fake: FakeOllama
) -> None:
    rst = (
        "=================\nConnection Pooling\n=================\n\n"
        "A pool keeps connections open for reuse.\n\n"
        "Dealing with Disconnects\n------------------------\n\n"
        "Intro to stale connections.\n\n"
        "Pessimistic\n~~~~~~~~~~~\n\n"
        "Set ``pool_pre_ping`` to test each connection when it is checked out.\n\n"
        "Events\n------\n\nListen for checkout events.\n\n"
        "::\n\n    ----------\n    a literal block, not a title\n"
    )
    docs = write(tmp_path / "docs", {"pooling.rst": rst})
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        [passage, *_] = await s.knowledge.retrieve("what does pool_pre_ping do?", scope=[])
        assert passage.title == "Connection Pooling"
        assert passage.heading == "Connection Pooling > Dealing with Disconnects > Pessimistic"
        assert "checked out" in passage.text
        [events, *_] = await s.knowledge.retrieve("checkout events literal block", scope=[])
        assert events.heading == "Connection Pooling > Events"


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


async def test_a_question_with_a_random_hex_id_about_nothing_indexed_finds_nothing(
    tmp_path: Path, fake: FakeOllama
) -> None:
    rng = random.Random(23)
    changelog = "# Changelog\n\n" + "\n".join(
        f"- {v // 10}.{v % 10}.{rng.randrange(10)}: fixed {rng.randrange(1, 999)} issues "
        f"in commit {rng.getrandbits(28):07x}, see #{rng.randrange(10, 9999)}."
        for v in range(10, 60)
    )
    docs = write(tmp_path / "docs", {**DOCS, "CHANGES.md": changelog})
    # The vectors say the questions are unrelated (below the dense floor), as a real model's
    # would: only keyword evidence could lift a document, and a hex id carries none.
    fake.embed_fn = lambda text: [1.0, 0.0] if text.startswith("search_query") else [0.0, 1.0]
    fake.embed_dimension = 2
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        for _ in range(60):
            hex_id = f"{rng.getrandbits(32):08x}"
            question = rng.choice(
                [
                    f"what is ref{hex_id}?",
                    f"why was payment {hex_id[:7]} refused?",
                    f"status of ticket {hex_id}-{rng.getrandbits(16):04x} please",
                    f"who approved invoice {uuid.UUID(int=rng.getrandbits(128))}?",
                ]
            )
            assert await s.knowledge.retrieve(question, scope=[]) == [], question
            assert await s.knowledge.search(question, scope=[]) == [], question
        # Keyword evidence that means something still counts.
        found = await s.knowledge.retrieve("what does ConnectionPool acquire do?", scope=[])
        assert found and found[0].document == "src/pool.py"


def test_pages_that_list_changes_and_very_long_pages_rank_below_the_page_that_explains() -> None:
    def hit(document: str, title: str, score: float, chunks: int) -> _Hit:
        return _Hit("s", document, 0, title, "", "u", "text", score, chunks)

    explains = hit("guide/pool.md", "Connection pool", 0.0320, 12)
    ranked = rank(
        [
            hit("CHANGES.md", "Changelog", 0.0328, 40),  # a changelog's best chunk
            hit("doc/changelog_14.rst", "1.4 Changelog", 0.0325, 30),
            hit("notes/whatsnew_20.rst", "What's New in 2.0?", 0.0324, 20),
            hit("migration_12.rst", "Migration notes", 0.0323, 20),
            hit("glossary.rst", "Glossary", 0.0326, 50),  # defines every term in a line
            hit("releases/4.2.txt", "4.2 notes", 0.0326, 30),  # in a folder of release notes
            hit("announce/release-8.0.rst", "pytest-8.0", 0.0326, 3),
            hit("reference/everything.md", "Reference", 0.0327, 900),  # matches everything
            explains,
            hit("guide/migrations.md", "Database migrations", 0.0100, 5),  # explains a thing
        ]
    )
    assert ranked[0].document == "guide/pool.md" and ranked[0].score == explains.score
    assert ranked[-1].document == "guide/migrations.md" and ranked[-1].score == 0.0100


async def test_embeddings_written_as_whole_numbers_are_read_and_others_are_refused(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    # A server may write 1 for 1.0: the vectors are still numbers.
    fake.embed_fn = lambda text: [1 if i == len(text) % 64 else 0 for i in range(64)]
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(str(docs))
        assert report.ok and report.documents_added == 3
        assert all(isinstance(x, float) for x in await s.embeddings.embed_query("roll back"))
        fake.embed_fn = lambda text: [None] * 64  # not numbers
        with pytest.raises(KnowledgeUnavailable, match="unexpected response"):
            await s.embeddings.embed_query("roll back")


def test_a_chunk_holding_the_identifier_the_question_names_ranks_above_one_with_its_words() -> None:
    def hit(document: str, text: str, score: float) -> _Hit:
        return _Hit("s", document, 0, document, "", "u", text, score, 3)

    words = hit("deploy/nginx.md", "List the trusted hosts the proxy forwards to.", 0.0325)
    named = hit("config.md", "TRUSTED_HOSTS: the host names requests may carry.", 0.0164)
    longer = hit("api.md", "TRUSTED_HOSTS_EXTRA is not it, nor are trusted hosts.", 0.0320)
    assert [h.document for h in rank([words, named, longer], "What is TRUSTED_HOSTS?")] == [
        "config.md",
        "deploy/nginx.md",
        "api.md",
    ]
    # Without an identifier in the question, or one written as plain words, nothing moves.
    for question in ("What are trusted hosts?", "What is trusted-hosts?", ""):
        assert [h.document for h in rank([words, named, longer], question)] == [
            "deploy/nginx.md",
            "api.md",
            "config.md",
        ], question
    # Dotted and CamelCase names count whole; ids and hashes are no identifiers to match.
    assert identifiers("MetaData.reflect, ProxyFix, X-HTTP-Method-Override") == [
        "metadata.reflect",
        "proxyfix",
        "x-http-method-override",
    ]
    assert identifiers("ref1c387b9e 3f2a9c1e-7b4d-4c1a-9e2f-0123456789ab one-time v2") == []


def test_a_page_that_both_searches_find_in_two_places_ranks_above_one_found_once() -> None:
    def hit(document: str, chunk: int, score: float) -> _Hit:
        return _Hit("s", document, chunk, document, "", "u", "text", score, 10)

    # RRF with k 60: above 1/60 both the dense and the keyword search found the chunk.
    once = hit("faq.md", 0, 0.0300)
    ranked = rank([once, hit("guide.md", 3, 0.0298), hit("guide.md", 7, 0.0280)])
    assert list(dict.fromkeys(h.document for h in ranked)) == ["guide.md", "faq.md"]
    # A second chunk that only one search found adds nothing: a long page does not win by
    # matching many times.
    ranked = rank([once, hit("guide.md", 3, 0.0298), hit("guide.md", 7, 0.0160)])
    assert ranked[0] == once
    # Nor does one search's first place as a Qdrant server reports it (1/60 in float32).
    ranked = rank([once, hit("guide.md", 3, 0.0298), hit("guide.md", 7, 0.016666668)])
    assert ranked[0] == once
