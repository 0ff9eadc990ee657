"""Indexing benchmark (team knowledge, part 1): our own overhead per chunk and per document.

A generated corpus of Markdown documents is indexed into an embedded store (the old backend,
qdrant-client's local mode, and the new one, Qdrant Edge, side by side) by a worker
subprocess (so its time and memory are its own), against an instant fake Ollama
/api/embed in this process. Prints chunks indexed per second (load, split, hash, keyword
vectors, upsert), documents per second for an unchanged re-run (and its embedding calls,
which must be 0), and the worker's peak RSS above its idle RSS (the stack imported and the
store opened, nothing indexed). The first run's time includes building the vector index
(HNSW) at its end, which Qdrant Edge does not do by itself.

Run: `python -m bench.knowledge_index [--documents 10000]` (docs/benchmarks.md, "Team knowledge").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.fakes.ollama import FakeOllama

WORDS = (
    "deploy rollback service database pool timeout retry queue worker cache token config "
    "cluster node replica shard index query latency error alert metric dashboard runbook "
    "incident owner release branch build test lint schema migration backup restore"
).split()


def generate(root: Path, documents: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(documents):
        folder = root / f"team{i % 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        sections = []
        for s in range(3):
            words = " ".join(rng.choice(WORDS) for _ in range(120))
            sections.append(f"## Section {s}\n\n{words}. ERR_{i:05d}_{s} is logged.\n")
        (folder / f"doc{i:05d}.md").write_text(f"# Document {i}\n\n" + "\n".join(sections))


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def worker(corpus: str, store: str, ollama: str, backend: str, null: bool = False) -> None:
    from bench.knowledge_backends import bench_store
    from bot.redact import redact
    from inference.knowledge.embeddings import OllamaEmbeddings
    from inference.knowledge.indexer import Indexer
    from inference.knowledge.sources import parse_sources
    from inference.knowledge.store.edge import EdgeStore

    if null:  # the pipeline alone: chunks are built and sent to a store that drops them

        async def drop(*args: object, **kwargs: object) -> None:
            return None

        EdgeStore.upsert = drop  # type: ignore[method-assign]

    kstore = bench_store(backend, Path(store))
    embeddings = OllamaEmbeddings(base_urls=[ollama], model="nomic-embed-text")
    indexer = Indexer(
        store=kstore, embeddings=embeddings, git_cache=Path(store).parent / "git", redact=redact
    )
    await kstore.ping()
    idle = rss_mb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    [report] = await indexer.run(parse_sources(corpus))
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "load": os.getloadavg()[0],
        "documents": report.documents_added + report.documents_changed
        + report.documents_unchanged,
        "chunks": report.chunks_added + report.chunks_changed,
        "unchanged": report.documents_unchanged,
        "error": report.error,
        "idle_mb": idle,
        "peak_mb": rss_mb("VmHWM"),
    }  # fmt: skip
    await embeddings.aclose()
    await kstore.aclose()
    print(json.dumps(result))


async def run_worker(
    corpus: Path, store: Path, url: str, backend: str, *, null: bool = False
) -> dict[str, float]:
    mode = "--null-worker" if null else "--worker"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.knowledge_index", mode, str(corpus), str(store), url,
        backend, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def main(documents: int, backends: list[str]) -> None:
    from bench.knowledge_backends import LABELS

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        generate(corpus, documents)
        vectors = [[random.Random(i).uniform(-1, 1) for _ in range(768)] for i in range(16)]
        print(
            f"machine: {os.cpu_count()} cores, {platform.platform()}, "
            f"Python {platform.python_version()}"
        )
        async with FakeOllama(["nomic-embed-text"]) as fake:
            fake.embed_fn = lambda text: vectors[len(text) % 16]
            alone = await run_worker(corpus, Path(tmp) / "null", fake.url, "edge", null=True)
            print(
                f"the pipeline alone (a store that drops the chunks): "
                f"{alone['chunks'] / alone['seconds']:.0f} chunks/s "
                f"({alone['cpu']:.0f} CPU s, load {alone['load']:.1f}), "
                f"peak RSS {alone['peak_mb'] - alone['idle_mb']:.0f} MB above idle"
            )
            for backend in backends:
                store = Path(tmp) / backend
                before = fake.embed_calls
                first = await run_worker(corpus, store, fake.url, backend)
                calls = fake.embed_calls - before
                second = await run_worker(corpus, store, fake.url, backend)
                again = fake.embed_calls - before - calls
                print(
                    f"{LABELS[backend]}: {documents} Markdown documents, {first['chunks']} chunks"
                )
                print(
                    f"  first run: {first['chunks'] / first['seconds']:.0f} chunks/s "
                    f"({first['seconds']:.1f} s, {first['cpu']:.0f} CPU s, index build "
                    f"included; {calls} embedding calls to an instant fake; load "
                    f"{first['load']:.1f})"
                )
                print(
                    f"  unchanged re-run: {second['documents'] / second['seconds']:.0f} "
                    f"documents/s ({second['seconds']:.1f} s, {second['cpu']:.0f} CPU s; {again} "
                    "embedding calls)"
                )
                print(
                    f"  peak RSS above idle: first run {first['peak_mb'] - first['idle_mb']:.0f}"
                    f" MB, re-run {second['peak_mb'] - second['idle_mb']:.0f} MB "
                    f"(idle {first['idle_mb']:.0f} MB)"
                )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] in ("--worker", "--null-worker"):
        asyncio.run(worker(*sys.argv[2:], null=sys.argv[1] == "--null-worker"))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--documents", type=int, default=10_000)
        parser.add_argument("--backends", default="local,edge", help="local, edge or both")
        args = parser.parse_args()
        asyncio.run(main(args.documents, args.backends.split(",")))
