"""`chatbot index` and `chatbot sources` as an operator runs them (the real console script
in a subprocess), an embedded store held by a running bot, and the /metrics figures."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.app.builders import build_knowledge
from adapters.app.knowledge import KnowledgeService
from adapters.app.metrics import Metrics
from adapters.app.settings import Settings
from adapters.cli import main
from tests.fakes.ollama import FakeOllama
from tests.support import REPO
from tests.support.knowledge_helpers import MODEL, index_environment, write
from tests.support.processes import free_port

REPO = REPO


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as server:
        yield server


def environment(tmp_path: Path, fake: FakeOllama, sources: str, **extra: str) -> dict[str, str]:
    return index_environment(tmp_path, fake, sources, **extra)


async def chatbot(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_index_prints_the_summary_and_exits_1_when_a_source_fails(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n", "b.md": "# B\n\nbeta\n"})
    (docs / "blob.txt").write_bytes(b"\x00\x00binary")
    env = environment(tmp_path, fake, str(docs))
    code, out, err = await chatbot(env, tmp_path, "index")
    assert code == 0, err
    assert f"{docs}: indexed in" in out
    assert "documents: 2 added, 0 changed, 0 unchanged, 0 removed" in out
    assert "skipped 1:" in out and "blob.txt: binary content" in out
    assert "Traceback" not in out + err

    env["KNOWLEDGE_SOURCES"] = f"{docs},{tmp_path / 'gone'}"
    calls = fake.embed_calls
    code, out, err = await chatbot(env, tmp_path, "index")
    assert code == 1
    assert "documents: 0 added, 0 changed, 2 unchanged, 0 removed" in out
    assert f"{tmp_path / 'gone'}: FAILED:" in out and "1 of 2 sources failed." in out
    assert fake.embed_calls == calls


def test_bad_sources_unknown_names_and_no_sources_are_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KNOWLEDGE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("KNOWLEDGE_SOURCES", "ftp://x/y")
    assert main(["index"]) == 2
    err = capsys.readouterr().err
    assert "ftp://x/y" in err and "Traceback" not in err
    monkeypatch.setenv("KNOWLEDGE_SOURCES", "./docs")
    assert main(["index", "./unknown"]) == 2
    assert "not in KNOWLEDGE_SOURCES: ./unknown" in capsys.readouterr().err
    monkeypatch.setenv("KNOWLEDGE_SOURCES", "")
    assert main(["index"]) == 1
    assert "KNOWLEDGE_SOURCES is empty" in capsys.readouterr().err
    assert main(["sources"]) == 1


def settings_for(tmp_path: Path, fake: FakeOllama, sources: str, redis_url: str) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        knowledge_sources=sources,
        knowledge_store=str(tmp_path / "store"),
        ollama_base_url=fake.url,
        embedding_model=MODEL,
        redis_url=redis_url,
    )


async def test_index_while_a_bot_holds_the_embedded_store(
    tmp_path: Path, fake: FakeOllama, redis_url: str, redis_client: Redis
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n", "b.md": "# B\n\nbeta\n"})
    service = KnowledgeService.from_settings(settings_for(tmp_path, fake, str(docs), redis_url))
    assert isinstance(service, KnowledgeService)
    await service.open()  # the running bot holds the folder now
    try:
        # Without Redis: the exact way out is printed, the store is left alone.
        env = environment(tmp_path, fake, str(docs))
        code, out, err = await chatbot(env, tmp_path, "index")
        assert code == 1 and "in use by another process" in err and "REDIS_URL" in err
        # With Redis: the job goes to the bot, the summary comes back.
        jobs = asyncio.create_task(service.serve_jobs(redis_client))
        try:
            code, out, err = await chatbot({**env, "REDIS_URL": redis_url}, tmp_path, "index")
        finally:
            jobs.cancel()
        assert code == 0, err
        assert "handed to it" in out and "documents: 2 added" in out
        # `chatbot sources` reads the status file the bot keeps beside its store.
        code, out, err = await chatbot(env, tmp_path, "sources")
        assert code == 0 and "2 documents, 2 chunks" in out
        assert (await service.retrieve("alpha", scope=[]))[0].document == "a.md"
    finally:
        await service.aclose()


async def test_a_job_the_bot_cannot_run_is_one_line_not_a_traceback(
    tmp_path: Path, fake: FakeOllama, redis_url: str, redis_client: Redis
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    service = KnowledgeService.from_settings(settings_for(tmp_path, fake, str(docs), redis_url))
    assert isinstance(service, KnowledgeService)
    await service.open()  # the running bot holds the (empty) folder
    fake.embed_status_override = 500  # and the embedding model cannot be reached
    jobs = asyncio.create_task(service.serve_jobs(redis_client))
    try:
        env = {**environment(tmp_path, fake, str(docs)), "REDIS_URL": redis_url}
        code, out, err = await chatbot(env, tmp_path, "index")
    finally:
        jobs.cancel()
        await service.aclose()
    assert code == 1
    assert "handed to it" in out
    assert "chatbot: cannot index: cannot embed with" in err and "HTTP 500" in err
    assert "Traceback" not in err + out


async def test_metrics_show_documents_chunks_and_errors_per_source(
    tmp_path: Path, fake: FakeOllama
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n", "b.md": "# B\n\nbeta\n"})
    # A site whose export needs a token in its URL (and a password): it fails here (a
    # private address), and its label must not show either.
    site = "https://reader:pa55word@127.0.0.1:9/export?page=2&access_token=s3cr3t"
    settings = settings_for(tmp_path, fake, f"{docs},{tmp_path / 'gone'},{site}", "redis://x:1/0")
    assert build_knowledge(settings_for(tmp_path, fake, "", "redis://x:1/0")) is None
    service = build_knowledge(settings)
    assert service is not None
    metrics = Metrics(process=False)
    metrics.watch_knowledge(service)
    try:
        await service.index()
    finally:
        await service.aclose()
    rendered = metrics.render().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(rendered)
        for s in family.samples
    }
    assert samples[("chatbot_knowledge_documents", (("source", str(docs)),))] == 2
    assert samples[("chatbot_knowledge_chunks", (("source", str(docs)),))] == 2
    assert samples[("chatbot_knowledge_last_success_timestamp_seconds", (("source", str(docs)),))]
    assert samples[("chatbot_knowledge_index_errors_total", ())] == 2
    shown = "https://127.0.0.1:9/export?page=2&access_token=REDACTED"
    assert samples[("chatbot_knowledge_documents", (("source", shown),))] == 0
    assert "s3cr3t" not in rendered and "pa55word" not in rendered


async def test_doctor_checks_the_store_the_embedding_model_and_each_source(
    tmp_path: Path, fake: FakeOllama
) -> None:
    from adapters.doctor import exit_code
    from adapters.doctor.knowledge import check_knowledge

    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    sources = f"{docs},{tmp_path / 'gone'},git+file://{tmp_path}/none.git"
    settings = settings_for(tmp_path, fake, sources, "redis://x:1/0")
    checks = await check_knowledge(settings)
    lines = [(c.status, c.what) for c in checks]
    assert ("WARN", f"embedded store {tmp_path / 'store'} answers but nothing is indexed yet") in (
        lines
    )
    assert ("OK", f"{MODEL} embeds (64 dimensions)") in lines
    assert ("OK", f"source {docs} is reachable") in lines
    assert any(s == "WARN" and f"{tmp_path / 'gone'} cannot be read" in w for s, w in lines)
    assert any(s == "WARN" and "none.git cannot be read" in w for s, w in lines)
    assert exit_code(checks) == 0

    fake.models = ["codellama:7b"]
    checks = await check_knowledge(settings)
    [missing] = [c for c in checks if c.status == "FAIL"]
    assert f"ollama pull {MODEL}" in missing.fix
    settings = settings.model_copy(update={"knowledge_store": f"http://127.0.0.1:{free_port()}"})
    checks = await check_knowledge(settings)
    assert any(c.status == "FAIL" and "cannot be used" in c.what for c in checks)


async def test_the_background_refresh_runs_on_one_replica_per_interval(
    tmp_path: Path, fake: FakeOllama, redis_url: str, redis_client: Redis
) -> None:
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    replicas = []
    for name in ("one", "two"):
        settings = settings_for(tmp_path / name, fake, str(docs), redis_url)
        service = KnowledgeService.from_settings(settings)
        assert service is not None
        service.refresh_minutes = 0.002  # 0.12 s; the claim lasts at least 1 s
        replicas.append(service)
    loops = [asyncio.create_task(r.refresh_loop(redis_client)) for r in replicas]
    try:
        async with asyncio.timeout(10):  # the claim is held 1 s: time enough for one run
            while not any(r.statuses for r in replicas):  # noqa: ASYNC110 (polled state)
                await asyncio.sleep(0.01)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    try:
        indexed = [bool(r.statuses) for r in replicas]
        assert sorted(indexed) == [False, True]  # one replica indexed, the other skipped
    finally:
        for r in replicas:
            await r.aclose()


async def test_the_summary_says_what_narrowing_the_sources_removed_and_what_was_redacted(
    tmp_path: Path, fake: FakeOllama
) -> None:
    kept = write(tmp_path / "kept", {"a.md": "# A\n\npassword = 'correct-horse-battery'\n"})
    dropped = write(tmp_path / "dropped", {"b.md": "# B\n\nbeta\n", "c.md": "# C\n\ngamma\n"})
    env = environment(tmp_path, fake, f"{kept},{dropped}")
    code, out, err = await chatbot(env, tmp_path, "index")
    assert code == 0, err
    assert "  secrets redacted before indexing in 1 documents (a password)" in out
    env["KNOWLEDGE_SOURCES"] = str(kept)
    code, out, err = await chatbot(env, tmp_path, "index")
    assert code == 0, err
    assert (
        f"{dropped}: no longer in KNOWLEDGE_SOURCES: its 2 documents (2 chunks) were removed "
        "from the index"
    ) in out
    assert "correct-horse-battery" not in "\n".join(fake.embedded_texts)


async def test_an_old_format_store_is_explained_by_doctor_and_rebuilt_by_index(
    tmp_path: Path, fake: FakeOllama
) -> None:
    from qdrant_client import AsyncQdrantClient, models

    from adapters.doctor.knowledge import check_knowledge

    old = AsyncQdrantClient(path=str(tmp_path / "store"))  # the store before Qdrant Edge
    await old.create_collection(
        "knowledge_nomic_embed_text_64",
        vectors_config={"dense": models.VectorParams(size=64, distance=models.Distance.COSINE)},
    )
    await old.close()
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n", "b.md": "# B\n\nbeta\n"})
    settings = settings_for(tmp_path, fake, str(docs), "redis://x:1/0")
    [store, *_] = await check_knowledge(settings)
    assert store.status == "WARN" and "old format" in store.what
    assert "chatbot index" in store.fix

    code, out, err = await chatbot(environment(tmp_path, fake, str(docs)), tmp_path, "index")
    assert code == 0, err
    assert "held an index of the old format" in out and "embedded once more" in out
    assert "documents: 2 added" in out and "Traceback" not in out + err
    [store, *_] = await check_knowledge(settings)
    assert store.status == "OK" and "index was built with" in store.what
    code, out, err = await chatbot(environment(tmp_path, fake, str(docs)), tmp_path, "index")
    assert "old format" not in out and "2 unchanged" in out


async def test_doctor_says_a_store_held_by_a_running_bot_leaves_a_second_one_without_it(
    tmp_path: Path, fake: FakeOllama
) -> None:
    from adapters.doctor.knowledge import check_knowledge

    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    settings = settings_for(tmp_path, fake, str(docs), "redis://x:1/0")
    service = KnowledgeService.from_settings(settings)
    assert service is not None
    await service.open()
    try:
        [store, *_] = await check_knowledge(settings)
    finally:
        await service.aclose()
    assert store.status == "WARN" and "held by a running bot" in store.what
    assert "without team knowledge" in store.what and "KNOWLEDGE_STORE=http" in store.fix
