"""The store contract: every behaviour the knowledge code relies on, run on both backends
(Qdrant Edge in a directory; the server code path on qdrant-client's local mode standing in
for a Qdrant server), with the embedded store's own cases after them: one process at a
time, closing mid-query and mid-index, the old format's upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.knowledge import KnowledgeUnavailable
from inference.knowledge.retrieval import QdrantKnowledge
from inference.knowledge.sources import parse_sources
from inference.knowledge.sparse import query_vector
from inference.knowledge.store import RRF_K, open_store
from tests.fakes.ollama import FakeOllama
from tests.support.knowledge_helpers import BACKENDS, MODEL, stack, write

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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_unchanged_sources_cost_no_embedding_call_and_edits_replace_only_their_chunks(
    tmp_path: Path, fake: FakeOllama, backend: str
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake, backend=backend) as s:
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


async def test_restricted_sources_are_stored_with_their_ids_and_seen_only_in_scope(
    tmp_path: Path, fake: FakeOllama, backend: str
) -> None:
    public = write(tmp_path / "public", {"faq.md": "# FAQ\n\nThe wifi password is on the wall.\n"})
    secret = write(
        tmp_path / "secret",
        {"payroll.md": "# Payroll\n\nPayroll runs on the wifi of the finance office.\n"},
    )
    async with stack(tmp_path, fake, backend=backend) as s:
        reports = await s.index(f"{public},{secret}?only=C_FIN+T_ACME")
        assert all(r.ok for r in reports)
        active = await s.store.active()
        assert active is not None
        stored = await s.store.indexed(active.collection, str(secret))
        assert stored["payroll.md"].only == ("C_FIN", "T_ACME")
        assert (await s.store.indexed(active.collection, str(public)))["faq.md"].only == ()

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


async def test_an_empty_index_finds_nothing(tmp_path: Path, fake: FakeOllama, backend: str) -> None:
    async with stack(tmp_path, fake, backend=backend) as s:
        assert await s.knowledge.retrieve("anything at all", scope=[]) == []
        assert await s.knowledge.search("anything at all", scope=["C1"]) == []


async def test_both_searches_are_fused_by_reciprocal_rank_with_the_same_constant(
    tmp_path: Path, fake: FakeOllama, backend: str
) -> None:
    """The ranking's weights assume RRF_K: a chunk first in both lists scores about
    2/RRF_K, one list's first place about 1/RRF_K (a Qdrant server's default k of 2 would
    give 1/2 and more, and change which document comes first)."""
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake, backend=backend) as s:
        await s.index(str(docs))
        active = await s.store.active()
        assert active is not None
        question = "roll back a release with make rollback"
        hits = await s.store.query(
            dense=await s.embeddings.embed_query(question),
            sparse=query_vector(question),
            scope=[],
            limit=10,
            min_dense=-1.0,
            min_sparse=0.0,
            collection=active.collection,
        )
    assert hits and hits[0].payload["document"] == "deploy.md"
    most = 2 / RRF_K + 1e-6  # scores are float32
    assert 2 / (RRF_K + 2) <= hits[0].score <= most  # first (or second) in both lists
    assert all(h.score <= most for h in hits)


async def test_a_new_embedding_model_fills_a_new_collection_then_switches(
    tmp_path: Path, fake: FakeOllama, backend: str
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake, backend=backend) as s:
        await s.index(str(docs))
        before = await s.store.active()
    fake.embed_dimensions["all-minilm"] = 32
    held = fake.embed_held["all-minilm"] = asyncio.Event()
    async with stack(tmp_path, fake, model="all-minilm", backend=backend) as s:
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
        assert (after.model, after.dimension) == ("all-minilm", 32)
        assert (before.model, before.dimension) == (MODEL, 64)
        assert after.collection != before.collection
        assert await s.store.find(MODEL) is None  # the old one is dropped
        # The same reader (as in a process that did not index, whose cached view is the
        # old collection, now dropped) finds the switch on its next question.
        found = await knowledge.retrieve("roll back a release", scope=[])
        assert found and found[0].document == "deploy.md"


async def test_one_failing_source_does_not_stop_the_others(
    tmp_path: Path, fake: FakeOllama, backend: str
) -> None:
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake, backend=backend) as s:
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
        assert await s.store.sources(active.collection) == {str(docs)}


# -- the embedded store (Qdrant Edge) ------------------------------------------------------


async def test_the_embedded_store_is_held_by_one_process(tmp_path: Path) -> None:
    first = open_store(str(tmp_path / "store"))
    second = open_store(str(tmp_path / "store"))
    try:
        await first.ping()
        with pytest.raises(KnowledgeUnavailable, match="in use by another process"):
            await second.ping()
    finally:
        await first.aclose()
        await second.aclose()
    third = open_store(str(tmp_path / "store"))
    await third.ping()  # released on close: another one can open it now
    await third.aclose()


def _corpus(root: Path, documents: int) -> Path:
    return write(
        root,
        {
            f"team/doc{i:03d}.md": f"# Runbook {i}\n\n"
            + "\n\n".join(
                f"## Step {s}\n\nRestart worker {i} after step {s}. " * 8 for s in range(4)
            )
            for i in range(documents)
        },
    )


async def test_closing_mid_query_returns_promptly(tmp_path: Path, fake: FakeOllama) -> None:
    docs = _corpus(tmp_path / "docs", 40)
    async with stack(tmp_path, fake) as s:
        await s.index(str(docs))
        queries = [
            asyncio.create_task(s.knowledge.retrieve(f"restart worker {i}", scope=[]))
            for i in range(40)
        ]
        async with asyncio.timeout(10):
            while not any(q.done() for q in queries):  # noqa: ASYNC110 (some are in flight)
                await asyncio.sleep(0.001)
            await s.store.aclose()
            results = await asyncio.gather(*queries, return_exceptions=True)
        # Each one answered, or failed as an outage (never a hang, never a bug's error).
        for result in results:
            assert isinstance(result, list | KnowledgeUnavailable), repr(result)
        assert any(isinstance(r, list) and r for r in results)
        with pytest.raises(KnowledgeUnavailable, match="closed"):
            await s.knowledge.retrieve("restart worker 3 after step 2", scope=[])
    async with stack(tmp_path, fake) as s:  # the directory was released
        assert await s.knowledge.retrieve("restart worker 3 after step 2", scope=[])


async def test_closing_mid_index_returns_promptly_and_a_later_run_completes_it(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = _corpus(tmp_path / "docs", 120)
    written = asyncio.Event()

    def progress(source: str, documents: int, chunks: int) -> None:
        if chunks:
            written.set()

    async with stack(tmp_path, fake) as s:
        s.embeddings.batch_size = 16
        run = asyncio.create_task(s.indexer.run(parse_sources(str(docs)), progress=progress))
        async with asyncio.timeout(10):
            await written.wait()
            await s.store.aclose()  # while the run goes on writing
            reports = await asyncio.gather(run, return_exceptions=True)
        for report in reports:  # the run stopped with the store, as an outage
            assert isinstance(report, KnowledgeUnavailable) or not report[0].ok, repr(report)
    written.clear()
    (docs / "team" / "doc000.md").write_text("# Runbook 0\n\nChanged.\n")
    async with stack(tmp_path, fake) as s:  # as a stopping bot: cancel the run, then close
        s.embeddings.batch_size = 16
        run = asyncio.create_task(s.indexer.run(parse_sources(str(docs)), progress=progress))
        async with asyncio.timeout(10):
            await written.wait()
            run.cancel()
            await s.store.aclose()
            await asyncio.gather(run, return_exceptions=True)
    async with stack(tmp_path, fake) as s:
        [report] = await s.index(str(docs))
        assert report.ok and report.documents == 120
        active = await s.store.active()
        assert active is not None
        assert len(await s.store.indexed(active.collection, str(docs))) == 120
        calls = fake.embed_calls
        [again] = await s.index(str(docs))  # what the stopped runs wrote is consistent
        assert again.documents_unchanged == 120 and fake.embed_calls == calls


async def test_an_old_format_store_is_detected_answers_nothing_and_is_rebuilt_by_index(
    tmp_path: Path, fake: FakeOllama
) -> None:
    from qdrant_client import AsyncQdrantClient, models

    old = AsyncQdrantClient(path=str(tmp_path / "store"))  # the store before Qdrant Edge
    await old.create_collection(
        "knowledge_nomic_embed_text_64",
        vectors_config={"dense": models.VectorParams(size=64, distance=models.Distance.COSINE)},
    )
    await old.close()
    assert (tmp_path / "store" / "meta.json").is_file()
    docs = write(tmp_path / "docs", DOCS)
    async with stack(tmp_path, fake) as s:
        assert await s.store.active() is None and s.store.old_format
        assert await s.knowledge.retrieve("roll back a release", scope=[]) == []
        [report] = await s.index(str(docs))
        assert report.ok and report.documents_added == 3
        assert not s.store.old_format
        assert not (tmp_path / "store" / "meta.json").exists()
        assert not (tmp_path / "store" / "collection").exists()
        found = await s.knowledge.retrieve("roll back a release", scope=[])
        assert found and found[0].document == "deploy.md"


async def test_a_shard_of_the_previous_configuration_takes_on_the_current_one_unembedded(
    tmp_path: Path, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import qdrant_edge as q

    from inference.knowledge.store import edge
    from inference.knowledge.store.layout import Layout
    from inference.knowledge.store.records import DENSE, SPARSE

    def previous(dimension: int) -> q.EdgeConfig:
        # What the previous version created: float32 vectors only, no quantization, the
        # default optimizers.
        return q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine,
                                               on_disk=True)},
            sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            on_disk_payload=True,
        )  # fmt: skip

    docs = write(tmp_path / "docs", DOCS)
    with monkeypatch.context() as patch:
        patch.setattr(edge, "shard_config", previous)
        async with stack(tmp_path, fake) as s:
            await s.index(str(docs))
            active = await s.store.active()
            assert active is not None
    path = Layout(tmp_path / "store").shard(active.collection)
    assert "quantization_config" not in json.loads((path / "edge_config.json").read_text())

    async with stack(tmp_path, fake) as s:
        found = await s.knowledge.retrieve("roll back a release", scope=[])
        assert found and found[0].document == "deploy.md"  # answers as before
        calls = fake.embed_calls
        [again] = await s.index(str(docs))
        assert again.ok and again.documents_unchanged == 3 and fake.embed_calls == calls
    config = json.loads((path / "edge_config.json").read_text())
    assert config["quantization_config"]["scalar"]["type"] == "int8"
    assert config["optimizers"]["max_segment_size"]


async def test_questions_asked_while_a_run_builds_its_index_in_steps_are_answered(
    tmp_path: Path, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference.knowledge.store import edge_engine

    # Steps of a few points (8,000 in use) so a small run builds and reopens the shard
    # many times while questions keep coming.
    monkeypatch.setattr(edge_engine, "BUILD_EVERY", 16)
    monkeypatch.setattr(edge_engine, "REOPEN_AFTER", 1)
    docs = _corpus(tmp_path / "docs", 60)
    async with stack(tmp_path, fake) as s:
        s.embeddings.batch_size = 16
        await s.index(str(_corpus(tmp_path / "first", 2)))  # something to answer from
        run = asyncio.create_task(s.indexer.run(parse_sources(str(docs))))
        answers: list[object] = []
        async with asyncio.timeout(60):
            while not run.done():
                try:
                    answers.append(await s.knowledge.retrieve("restart worker 1", scope=[]))
                except KnowledgeUnavailable as exc:  # pragma: no cover (the failure shown)
                    answers.append(exc)
            report, gone = await run  # the run's source, and the first one's removal
        assert report.ok and report.documents == 60 and gone.gone
        assert answers and all(isinstance(a, list) for a in answers), answers
        s.knowledge.forget_active()
        calls = fake.embed_calls
        [again] = await s.index(str(docs))
        assert again.documents_unchanged == 60 and fake.embed_calls == calls
        found = await s.knowledge.retrieve("restart worker 42 after step 3", scope=[])
        assert found and found[0].document == "team/doc042.md"
