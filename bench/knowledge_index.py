"""Indexing benchmark (team knowledge, part 1): our own overhead per chunk and per document.

A generated corpus of Markdown documents is indexed into an embedded store (the old backend,
qdrant-client's local mode, and the new one, Qdrant Edge, side by side) by a worker
subprocess (so its time and memory are its own), against an instant fake Ollama
/api/embed in this process. Prints chunks indexed per second (load, split, hash, keyword
vectors, upsert), documents per second for an unchanged re-run (and its embedding calls,
which must be 0), and the worker's peak RSS above its idle RSS (the stack imported and the
store opened, nothing indexed), split at the peak into anonymous and file-backed memory
(sampled from this process). The first run's time includes building the vector index
(HNSW), which Qdrant Edge does not do by itself: the store builds it in steps while it
writes, and the time and CPU of those steps are shown apart.

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
import threading
import time
from pathlib import Path

from tests.fakes.ollama import FakeOllama

WORDS = (
    "deploy rollback service database pool timeout retry queue worker cache token config "
    "cluster node replica shard index query latency error alert metric dashboard runbook "
    "incident owner release branch build test lint schema migration backup restore"
).split()


RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


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
    build = {"build_seconds": 0.0, "build_cpu": 0.0, "builds": 0}
    build_step = getattr(kstore, "_build", None)  # Qdrant Edge: each step of the index build

    def timed_build(collection: str) -> None:
        # In the store's thread, with the GIL held by Edge throughout: the process's CPU
        # time meanwhile is the build's.
        started, cpu = time.perf_counter(), time.process_time()
        assert build_step is not None
        build_step(collection)
        build["build_seconds"] += time.perf_counter() - started
        build["build_cpu"] += time.process_time() - cpu
        build["builds"] += 1

    if build_step is not None:
        kstore._build = timed_build  # type: ignore[attr-defined]
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
        **build,
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
    peak: dict[str, float] = {}
    sampling = threading.Thread(target=sample_peak, args=(process.pid, peak), daemon=True)
    sampling.start()
    out, _ = await process.communicate()
    await asyncio.to_thread(sampling.join)
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    result.update(peak)
    return result


def sample_peak(pid: int, peak: dict[str, float]) -> None:
    """The worker's RSS at its highest, as anonymous and file-backed memory (mmap'ed file
    pages, which the kernel can drop), read from outside: Qdrant Edge holds the GIL for
    the whole index build, so a thread in the worker would not sample during it."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            return
        now = {k: int(fields.get(k, "0 kB").split()[0]) / 1024 for k in RSS_FIELDS}
        if now["VmRSS"] > peak.get("VmRSS", 0):
            peak.update({f"at_peak_{k}": v for k, v in now.items()}, VmRSS=now["VmRSS"])
        time.sleep(0.02)


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
                    f"{first['load']:.1f}); the index build ({first['builds']:.0f} steps): "
                    f"{first['build_seconds']:.1f} s, {first['build_cpu']:.0f} CPU s"
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
                print(
                    f"  at the first run's peak: {first['at_peak_RssAnon']:.0f} MB anonymous, "
                    f"{first['at_peak_RssFile']:.0f} MB file-backed (mmap'ed pages the kernel "
                    f"can drop), of {first['at_peak_VmRSS']:.0f} MB RSS (sampled every 20 ms)"
                )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] in ("--worker", "--null-worker"):
        corpus, store, url, backend = sys.argv[2:]
        asyncio.run(worker(corpus, store, url, backend, null=sys.argv[1] == "--null-worker"))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--documents", type=int, default=10_000)
        parser.add_argument("--backends", default="local,edge", help="local, edge or both")
        args = parser.parse_args()
        asyncio.run(main(args.documents, args.backends.split(",")))
